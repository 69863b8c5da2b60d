package consent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Limits and names fixed by the product contract.
const (
	MaxTokenSize = 8 << 10          // bytes; a larger token is refused as too-large before parsing
	MaxLifetime  = 15 * time.Minute // exp - iat, for consent tokens and revoke commands alike
	// DefaultClockSkew is consent.clock_skew's default: allowed on exp, nbf
	// and iat.
	DefaultClockSkew = 30 * time.Second

	// MaxIDSize bounds every identifier of a token or command (iss, sub,
	// jti, visit, notice, kid, each purpose id) in bytes, and MaxPurposes the
	// purposes of a consent: what the verifier accepts, the store can
	// always record, and what it refuses cannot flood a log.
	MaxIDSize   = 128
	MaxPurposes = 16
	// MaxReasonSize bounds a revoke command's reason, in bytes.
	MaxReasonSize = 256

	TypConsent = "consent+jwt" // header typ of a consent token
	TypRevoke  = "revoke+jwt"  // header typ of a revoke command

	algEdDSA = "EdDSA"
)

// Audience returns the aud value that names one camera of a site, or, when
// camera is empty, every camera of the site.
func Audience(site, camera string) string {
	if camera == "" {
		return "consentcam:" + site
	}
	return "consentcam:" + site + "/" + camera
}

// Consent is what a verified consent token says.
type Consent struct {
	Issuer   string
	KeyID    string
	Subject  string
	JTI      string
	Visit    string
	Audience string // the aud value that names this box (the first one, when none does)
	Purposes []string
	Notice   string // hash of the notice the visitor was shown

	IssuedAt, NotBefore, Expires time.Time

	Minor, Guardian bool

	// Token is the compact token as verified (the whitespace around it the
	// verifier ignores left out): the evidence kept of the consent.
	Token string
}

// Revoke is what a verified revoke command says. Exactly one of Subject and
// Visit is set.
type Revoke struct {
	Issuer   string
	KeyID    string
	JTI      string // the request id, echoed in the receipt
	Reason   string
	Subject  string
	Visit    string
	Audience string

	IssuedAt, Expires time.Time

	// Token is the compact command as verified: the evidence kept of who
	// ordered the erasure. Empty for a withdrawal at the kiosk.
	Token string
}

// Verifier checks consent tokens and revoke commands for one camera.
//
// Checks run in a fixed order so that a token with several faults always
// gets the same reason: size; structure, base64 and JSON (malformed); typ
// (wrong-type); alg (bad-signature); kid (unknown-key); signature
// (bad-signature); then the claims: missing-claim, wrong-audience, expired,
// not-yet-valid, lifetime-too-long, guardian-required, unknown-purpose,
// stale-notice. The last check, replayed, is not the Verifier's: it keeps no
// state, and whoever carries out a verified token spends its jti in the same
// transaction as the decision (NewReplayed makes that refusal).
//
// Once its fields are set, a Verifier may be used from several goroutines.
type Verifier struct {
	Site, Camera string
	Issuers      map[string]ed25519.PublicKey // kid → key trusted to issue consent tokens
	Operators    map[string]ed25519.PublicKey // kid → key trusted to issue revoke commands
	Purposes     []string                     // the configured purpose ids
	NoticeHash   string                       // hash of the notice in force
	ClockSkew    time.Duration                // allowed on exp, nbf and iat
	Now          func() time.Time             // time.Now when nil
}

// VerifyConsent checks a consent token. On success it returns the claims and
// nil. A refusal is a *Error; when the refusal was found after the signature
// verified, the claims are returned with it so the audit event can name the
// visit and subject.
func (v *Verifier) VerifyConsent(token []byte) (*Consent, error) {
	j, err := parse(token)
	if err != nil {
		return nil, err
	}
	c, aud, err := decodeConsent(j.claims)
	if err != nil {
		return nil, refuse(ReasonMalformed, err)
	}
	if err := v.authenticate(j, TypConsent, v.Issuers, v.Operators); err != nil {
		return nil, err
	}
	c.KeyID, c.Token = j.kid, j.compact
	if err := v.checkConsent(c, aud); err != nil {
		return c, err
	}
	return c, nil
}

// VerifyRevoke checks a revoke command, signed by an operator key. It returns
// like VerifyConsent.
func (v *Verifier) VerifyRevoke(token []byte) (*Revoke, error) {
	j, err := parse(token)
	if err != nil {
		return nil, err
	}
	r, aud, nbf, err := decodeRevoke(j.claims)
	if err != nil {
		return nil, refuse(ReasonMalformed, err)
	}
	if err := v.authenticate(j, TypRevoke, v.Operators, v.Issuers); err != nil {
		return nil, err
	}
	r.KeyID, r.Token = j.kid, j.compact
	if err := v.checkRevoke(r, aud, nbf); err != nil {
		return r, err
	}
	return r, nil
}

func (v *Verifier) checkConsent(c *Consent, aud []string) error {
	if err := requireClaims([]claimCheck{
		{"iss", c.Issuer == ""},
		{"sub", c.Subject == ""},
		{"jti", c.JTI == ""},
		{"aud", len(aud) == 0},
		{"iat", c.IssuedAt.IsZero()},
		{"nbf", c.NotBefore.IsZero()},
		{"exp", c.Expires.IsZero()},
		{"visit", c.Visit == ""},
		{"purposes", len(c.Purposes) == 0},
		{"notice", c.Notice == ""},
	}); err != nil {
		return err
	}
	var err error
	if c.Audience, err = v.checkAudience(aud); err != nil {
		return err
	}
	if err := v.checkTimes(c.IssuedAt, c.NotBefore, c.Expires); err != nil {
		return err
	}
	if c.Minor && !c.Guardian {
		return refuse(ReasonGuardianRequired, errors.New("the visitor is a minor and guardian is not true"))
	}
	for _, p := range c.Purposes {
		if !slices.Contains(v.Purposes, p) {
			return refuse(ReasonUnknownPurpose, fmt.Errorf("purpose %s is not configured here", quote(p)))
		}
	}
	if c.Notice != v.NoticeHash {
		return refuse(ReasonStaleNotice, fmt.Errorf("the visitor was shown notice %s, the notice in force is %s", quote(c.Notice), v.NoticeHash))
	}
	return nil
}

func (v *Verifier) checkRevoke(r *Revoke, aud []string, nbf time.Time) error {
	if err := requireClaims([]claimCheck{
		{"iss", r.Issuer == ""},
		{"jti", r.JTI == ""},
		{"aud", len(aud) == 0},
		{"iat", r.IssuedAt.IsZero()},
		{"exp", r.Expires.IsZero()},
		{"reason", r.Reason == ""},
	}); err != nil {
		return err
	}
	if (r.Subject == "") == (r.Visit == "") {
		return refuse(ReasonMissingClaim, errors.New("a revoke command names exactly one of sub and visit"))
	}
	var err error
	if r.Audience, err = v.checkAudience(aud); err != nil {
		return err
	}
	return v.checkTimes(r.IssuedAt, nbf, r.Expires)
}

type claimCheck struct {
	name    string
	missing bool
}

// requireClaims refuses the first claim, in the order given, that is missing
// or empty.
func requireClaims(checks []claimCheck) error {
	for _, c := range checks {
		if c.missing {
			return refuse(ReasonMissingClaim, fmt.Errorf("claim %s is missing or empty", c.name))
		}
	}
	return nil
}

// checkAudience returns the aud value that names this box.
func (v *Verifier) checkAudience(aud []string) (string, error) {
	camera, site := Audience(v.Site, v.Camera), Audience(v.Site, "")
	if v.Site == "" || v.Camera == "" {
		// A verifier that knows no site must match no audience.
		return aud[0], refuse(ReasonWrongAudience, errors.New("the verifier has no site and camera configured"))
	}
	for _, a := range aud {
		if a == camera || a == site {
			return a, nil
		}
	}
	return aud[0], refuse(ReasonWrongAudience, fmt.Errorf("aud %s names neither %s nor %s", quote(strings.Join(aud, " ")), camera, site))
}

// checkTimes applies the clock skew to exp, nbf (when set) and iat.
func (v *Verifier) checkTimes(iat, nbf, exp time.Time) error {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	skew := v.ClockSkew
	switch {
	case !now.Before(exp.Add(skew)):
		return refuse(ReasonExpired, fmt.Errorf("expired at %s, now %s", stamp(exp), stamp(now)))
	case !nbf.IsZero() && now.Add(skew).Before(nbf):
		return refuse(ReasonNotYetValid, fmt.Errorf("not valid before %s, now %s", stamp(nbf), stamp(now)))
	case now.Add(skew).Before(iat):
		return refuse(ReasonNotYetValid, fmt.Errorf("issued in the future at %s, now %s", stamp(iat), stamp(now)))
	case exp.Sub(iat) > MaxLifetime:
		return refuse(ReasonLifetimeTooLong, fmt.Errorf("valid for %v from iat to exp, at most %v", exp.Sub(iat), MaxLifetime))
	}
	return nil
}

// TokenSHA256 is the lowercase hex SHA-256 of a compact token: how audit
// events name the evidence they rest on.
func TokenSHA256(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewReplayed is the refusal of a token whose id was already spent: the last
// check, made by whoever spends the id (err says where it was found spent).
func NewReplayed(jti string, err error) *Error {
	return refuse(ReasonReplayed, fmt.Errorf("token id %s was already used: %w", quote(jti), err))
}

// authenticate checks the header (typ, alg, kid) and the signature, with the
// key named by kid in keys. others is the other list of trusted keys, named
// in the error when kid is found there.
func (v *Verifier) authenticate(j *jws, typ string, keys, others map[string]ed25519.PublicKey) error {
	if !typeIs(j.typ, typ) {
		return refuse(ReasonWrongType, fmt.Errorf("typ is %s, want %s", quote(j.typ), typ))
	}
	if j.alg != algEdDSA {
		return refuse(ReasonBadSignature, fmt.Errorf("alg %s is refused: only EdDSA", quote(j.alg)))
	}
	key, ok := keys[j.kid]
	if !ok {
		what := "issuer"
		if typ == TypRevoke {
			what = "operator"
		}
		if _, other := others[j.kid]; other {
			return refuse(ReasonUnknownKey, fmt.Errorf("kid %s is not an %s key (it is trusted for the other kind of token)", quote(j.kid), what))
		}
		return refuse(ReasonUnknownKey, fmt.Errorf("kid %s is not a trusted %s key", quote(j.kid), what))
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{algEdDSA}), jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation())
	_, err := p.Parse(j.compact, func(*jwt.Token) (any, error) { return key, nil })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(ReasonMalformed, err)
	default:
		return refuse(ReasonBadSignature, errors.New("the signature does not verify with the key of kid "+quote(j.kid)))
	}
}

// typeIs compares a typ header with a media type such as consent+jwt as RFC
// 7515 (4.1.9) says: ASCII case-insensitively (media types are ASCII: no
// Unicode folding, under which the Kelvin sign K would match k), with
// "application/" implied.
func typeIs(typ, want string) bool {
	return asciiEqualFold(typ, want) || asciiEqualFold(typ, "application/"+want)
}

// asciiEqualFold reports whether a and b are equal with ASCII letters folded
// to lower case, and nothing else folded.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// jws is a compact JWS taken apart, before its signature is checked.
type jws struct {
	compact       string
	typ, alg, kid string
	claims        map[string]json.RawMessage
}

var b64 = base64.RawURLEncoding.Strict()

// parse refuses a token that is too large, or that is not a compact JWS whose
// header and claims are JSON objects. Leading and trailing whitespace (a
// newline from a shell or a file) is not part of the token and is ignored.
func parse(token []byte) (*jws, error) {
	if len(token) > MaxTokenSize {
		return nil, refuse(ReasonTooLarge, fmt.Errorf("%d bytes, at most %d", len(token), MaxTokenSize))
	}
	malformed := func(format string, args ...any) error {
		return refuse(ReasonMalformed, fmt.Errorf(format, args...))
	}
	compact := string(bytes.Trim(token, " \t\r\n"))
	parts := strings.Split(compact, ".")
	switch {
	case len(parts) == 5:
		return nil, malformed("an encrypted token (JWE) is not accepted: want a signed JWT in compact form")
	case len(parts) != 3:
		return nil, malformed("want a signed JWT in compact form, header.claims.signature; got %d parts", len(parts))
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, malformed("header: not base64url without padding: %v", err)
	}
	header, err := object(hb)
	if err != nil {
		return nil, malformed("header: %v", err)
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, malformed("claims: not base64url without padding: %v", err)
	}
	claims, err := object(cb)
	if err != nil {
		return nil, malformed("claims: %v", err)
	}
	if _, err := b64.DecodeString(parts[2]); err != nil {
		return nil, malformed("signature: not base64url without padding: %v", err)
	}
	if _, ok := header["crit"]; ok {
		return nil, malformed("header: crit names extensions this verifier does not implement")
	}
	j := &jws{compact: compact, claims: claims}
	d := decoder{m: header}
	d.id("typ", &j.typ, MaxIDSize)
	d.id("alg", &j.alg, MaxIDSize)
	d.id("kid", &j.kid, MaxIDSize)
	if d.err != nil {
		return nil, malformed("header: %v", d.err)
	}
	return j, nil
}

// object decodes a JSON object into its members. It refuses invalid UTF-8
// and a member name given twice, which two JSON parsers might read
// differently (RFC 7519, section 4).
func object(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		name := t.(string) // the decoder yields only strings for member names
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("member %s is given twice", quote(name))
		}
		m[name] = value
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

func decodeConsent(m map[string]json.RawMessage) (c *Consent, aud []string, err error) {
	c = &Consent{}
	d := decoder{m: m}
	d.id("iss", &c.Issuer, MaxIDSize)
	d.id("sub", &c.Subject, MaxIDSize)
	d.id("jti", &c.JTI, MaxIDSize)
	d.audience(&aud)
	d.time("iat", &c.IssuedAt)
	d.time("nbf", &c.NotBefore)
	d.time("exp", &c.Expires)
	d.id("visit", &c.Visit, MaxIDSize)
	d.purposes(&c.Purposes)
	d.id("notice", &c.Notice, MaxIDSize)
	d.bool("minor", &c.Minor)
	d.bool("guardian", &c.Guardian)
	return c, aud, d.err
}

func decodeRevoke(m map[string]json.RawMessage) (r *Revoke, aud []string, nbf time.Time, err error) {
	r = &Revoke{}
	d := decoder{m: m}
	d.id("iss", &r.Issuer, MaxIDSize)
	d.id("jti", &r.JTI, MaxIDSize)
	d.audience(&aud)
	d.time("iat", &r.IssuedAt)
	d.time("nbf", &nbf)
	d.time("exp", &r.Expires)
	d.id("reason", &r.Reason, MaxReasonSize)
	d.id("sub", &r.Subject, MaxIDSize)
	d.id("visit", &r.Visit, MaxIDSize)
	return r, aud, nbf, d.err
}

// decoder reads members of a JSON object by their exact names (encoding/json
// alone would also match "SUB" to sub) and keeps the first type error. An
// absent member, or null, leaves the value empty.
type decoder struct {
	m   map[string]json.RawMessage
	err error
}

func (d *decoder) get(name string, v any) bool {
	raw, ok := d.m[name]
	if d.err != nil || !ok || string(raw) == "null" {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		d.err = fmt.Errorf("%s: %v", name, err)
		return false
	}
	return true
}

func (d *decoder) bool(name string, b *bool) { d.get(name, b) }

// id reads a string of at most max bytes without control characters: an
// identifier, or a revoke's reason.
func (d *decoder) id(name string, s *string, max int) {
	if d.get(name, s) {
		d.err = checkID(name, *s, max)
	}
}

// checkID refuses an identifier over max bytes or holding a control
// character (which a log or a terminal would act on).
func checkID(name, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, at most %d", name, len(s), max)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s holds a control character", name)
	}
	return nil
}

// time reads a NumericDate (RFC 7519): seconds since the epoch, possibly
// with a fraction, from 1970 to 9999.
func (d *decoder) time(name string, t *time.Time) {
	var f float64
	if !d.get(name, &f) {
		return
	}
	if f < 0 || f > 253402300799 {
		d.err = fmt.Errorf("%s: %v is not a date between 1970 and 9999", name, f)
		return
	}
	sec, frac := math.Modf(f)
	*t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// audience reads aud: one string, or an array of strings (RFC 7519).
func (d *decoder) audience(aud *[]string) {
	raw := bytes.TrimSpace(d.m["aud"])
	if len(raw) > 0 && raw[0] == '[' {
		d.get("aud", aud)
		return
	}
	var s string
	if d.get("aud", &s) && s != "" {
		*aud = []string{s}
	}
}

// purposes reads a list of purpose ids, each given once.
func (d *decoder) purposes(p *[]string) {
	if !d.get("purposes", p) {
		return
	}
	if len(*p) > MaxPurposes {
		d.err = fmt.Errorf("purposes: %d, at most %d", len(*p), MaxPurposes)
		return
	}
	for i, id := range *p {
		if err := checkID("purposes", id, MaxIDSize); err != nil {
			d.err = err
			return
		}
		if slices.Contains((*p)[:i], id) {
			d.err = fmt.Errorf("purposes: %s is listed twice", quote(id))
			return
		}
	}
}

// quote quotes a value taken from a token for an error message, cut short so
// that a hostile token cannot flood a log.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
