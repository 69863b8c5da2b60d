package consent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/golang-jwt/jwt/v5"
)

type tokenCase struct {
	name  string
	token []byte
	want  consent.Reason // "" for a token that must pass
}

// consentCases builds one case per refusal reason, each as the real attack or
// mistake that leads to it, and the valid tokens that must pass.
func consentCases(t *testing.T) []tokenCase {
	valid := consentClaims()
	sign := func(claims map[string]any) []byte { return edToken(t, issuerKey, consentHeader, claims) }
	header := func(changes map[string]any) map[string]any { return with(consentHeader, changes) }
	good := sign(valid)
	parts := segments(t, good)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's own key, published in the header for a careless verifier to use.
	jwk := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(public(strangerKey))}
	// A field from another token: this visit with a visit id the issuer never signed.
	otherClaims := segments(t, sign(with(valid, map[string]any{"visit": "visit-43"})))[1]

	cases := []tokenCase{
		{"valid", good, ""},
		{"valid/site-wide audience", sign(with(valid, map[string]any{"aud": "consentcam:office-07"})), ""},
		{"valid/audience array naming this camera", sign(with(valid, map[string]any{"aud": []string{"consentcam:office-99", aud}})), ""},
		{"valid/several purposes", sign(with(valid, map[string]any{"purposes": []string{"channel-attribution", "entry-security"}})), ""},
		{"valid/expired within the clock skew", sign(with(valid, map[string]any{"iat": unix(-5 * time.Minute), "nbf": unix(-5 * time.Minute), "exp": unix(-29 * time.Second)})), ""},
		{"valid/issued and valid from within the clock skew ahead", sign(with(valid, map[string]any{"iat": unix(30 * time.Second), "nbf": unix(30 * time.Second), "exp": unix(10 * time.Minute)})), ""},
		{"valid/lifetime of exactly 15 minutes", sign(with(valid, map[string]any{"iat": unix(-time.Minute), "exp": unix(14 * time.Minute)})), ""},
		{"valid/minor with guardian", sign(with(valid, map[string]any{"minor": true, "guardian": true})), ""},
		{"valid/typ with application prefix", edToken(t, issuerKey, header(map[string]any{"typ": "application/consent+jwt"}), valid), ""},
		{"valid/trailing newline from a shell", append(good, '\n'), ""},

		{"too-large/9 KiB payload with a valid signature", sign(with(valid, map[string]any{"pad": strings.Repeat("x", 9<<10)})), consent.ReasonTooLarge},
		{"too-large/one byte over 8 KiB", []byte(strings.Repeat("a", 8<<10+1)), consent.ReasonTooLarge},
		{"malformed/8 KiB that is no token", []byte(strings.Repeat("a", 8<<10)), consent.ReasonMalformed},

		{"malformed/empty", nil, consent.ReasonMalformed},
		{"malformed/two parts", []byte(parts[0] + "." + parts[1]), consent.ReasonMalformed},
		{"malformed/encrypted token of five parts", []byte(parts[0] + ".." + parts[1] + ".." + parts[2]), consent.ReasonMalformed},
		{"malformed/broken base64 in the claims", []byte(parts[0] + "." + parts[1][:10] + "!" + parts[1][11:] + "." + parts[2]), consent.ReasonMalformed},
		{"malformed/padded base64", []byte(parts[0] + "." + base64.URLEncoding.EncodeToString([]byte(`{"a":1}`)) + "." + parts[2]), consent.ReasonMalformed},
		{"malformed/standard base64 signature", []byte(parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+"), consent.ReasonMalformed},
		{"malformed/claims not JSON", rawToken(issuerKey, consentHeaderJSON, `visit=42`), consent.ReasonMalformed},
		{"malformed/claims a JSON array", rawToken(issuerKey, consentHeaderJSON, `[1,2]`), consent.ReasonMalformed},
		{"malformed/claims not UTF-8", rawToken(issuerKey, consentHeaderJSON, "{\"sub\":\"\xff\"}"), consent.ReasonMalformed},
		{"malformed/aud given twice", rawToken(issuerKey, consentHeaderJSON, `{"aud":"consentcam:office-08","aud":"`+aud+`"}`), consent.ReasonMalformed},
		{"malformed/alg given twice", rawToken(issuerKey, `{"alg":"none","alg":"EdDSA","typ":"consent+jwt","kid":"kiosk-1"}`, `{}`), consent.ReasonMalformed},
		{"malformed/exp as a string", sign(with(valid, map[string]any{"exp": fmt.Sprint(unix(time.Minute))})), consent.ReasonMalformed},
		{"malformed/purposes a string", sign(with(valid, map[string]any{"purposes": "channel-attribution"})), consent.ReasonMalformed},
		{"malformed/purpose listed twice", sign(with(valid, map[string]any{"purposes": []string{"entry-security", "entry-security"}})), consent.ReasonMalformed},
		{"malformed/minor as a string", sign(with(valid, map[string]any{"minor": "no"})), consent.ReasonMalformed},
		{"malformed/negative time", sign(with(valid, map[string]any{"nbf": -1})), consent.ReasonMalformed},
		{"malformed/kid a number", edToken(t, issuerKey, header(map[string]any{"kid": 1}), valid), consent.ReasonMalformed},
		{"malformed/critical header extension", edToken(t, issuerKey, header(map[string]any{"crit": []string{"exp"}}), valid), consent.ReasonMalformed},
		{"malformed/JWS in its JSON serialization", []byte(`{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`), consent.ReasonMalformed},
		{"malformed/a signed token nested as the claims", rawToken(issuerKey, consentHeaderJSON, string(good)), consent.ReasonMalformed},
		{"malformed/kid over the size limit", edToken(t, issuerKey, header(map[string]any{"kid": strings.Repeat("k", consent.MaxIDSize+1)}), valid), consent.ReasonMalformed},
		{"malformed/too many purposes", sign(with(valid, map[string]any{"purposes": manyPurposes(consent.MaxPurposes + 1)})), consent.ReasonMalformed},
		{"malformed/visit with a newline", sign(with(valid, map[string]any{"visit": "visit-42\nforged log line"})), consent.ReasonMalformed},
		{"valid/identifiers of the largest size", sign(with(valid, map[string]any{"iss": strings.Repeat("i", consent.MaxIDSize),
			"sub": strings.Repeat("s", consent.MaxIDSize), "jti": strings.Repeat("j", consent.MaxIDSize), "visit": strings.Repeat("v", consent.MaxIDSize)})), ""},

		{"wrong-type/revoke command presented as consent", edToken(t, operatorKey, revokeHeader, revokeClaims()), consent.ReasonWrongType},
		{"wrong-type/typ JWT", edToken(t, issuerKey, header(map[string]any{"typ": "JWT"}), valid), consent.ReasonWrongType},
		{"wrong-type/no typ", edToken(t, issuerKey, header(map[string]any{"typ": absent}), valid), consent.ReasonWrongType},
		{"valid/typ in upper case", edToken(t, issuerKey, header(map[string]any{"typ": "CONSENT+JWT"}), valid), ""},

		{"bad-signature/alg none", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, consentHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/HS256 keyed with the issuer's public key", token(t, jwt.SigningMethodHS256, []byte(public(issuerKey)), consentHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/RS256", token(t, jwt.SigningMethodRS256, rsaKey, consentHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/an untrusted key under a trusted kid", edToken(t, strangerKey, consentHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/the attacker's key embedded as jwk", edToken(t, strangerKey, header(map[string]any{"jwk": jwk}), valid), consent.ReasonBadSignature},
		{"bad-signature/claims swapped after signing", []byte(parts[0] + "." + otherClaims + "." + parts[2]), consent.ReasonBadSignature},
		{"bad-signature/signature cut short", []byte(parts[0] + "." + parts[1] + "." + parts[2][:40]), consent.ReasonBadSignature},

		{"unknown-key/unknown kid", edToken(t, strangerKey, header(map[string]any{"kid": "kiosk-9"}), valid), consent.ReasonUnknownKey},
		{"unknown-key/no kid", edToken(t, issuerKey, header(map[string]any{"kid": absent}), valid), consent.ReasonUnknownKey},
		{"unknown-key/operator key issuing consent", edToken(t, operatorKey, header(map[string]any{"kid": "ops-1"}), valid), consent.ReasonUnknownKey},

		{"missing-claim/empty purposes", sign(with(valid, map[string]any{"purposes": []string{}})), consent.ReasonMissingClaim},
		{"missing-claim/empty visit", sign(with(valid, map[string]any{"visit": ""})), consent.ReasonMissingClaim},
		{"missing-claim/null subject", sign(with(valid, map[string]any{"sub": nil})), consent.ReasonMissingClaim},
		{"missing-claim/empty audience array", sign(with(valid, map[string]any{"aud": []string{}})), consent.ReasonMissingClaim},

		{"wrong-audience/another camera", sign(with(valid, map[string]any{"aud": "consentcam:office-07/entrance-2"})), consent.ReasonWrongAudience},
		{"wrong-audience/another site", sign(with(valid, map[string]any{"aud": "consentcam:office-08"})), consent.ReasonWrongAudience},
		{"wrong-audience/another site's camera of the same name", sign(with(valid, map[string]any{"aud": "consentcam:office-08/entrance-1"})), consent.ReasonWrongAudience},
		{"wrong-audience/a site whose name starts like ours", sign(with(valid, map[string]any{"aud": "consentcam:office-0"})), consent.ReasonWrongAudience},
		{"wrong-audience/array naming other boxes", sign(with(valid, map[string]any{"aud": []string{"consentcam:office-08", "consentcam:office-09"}})), consent.ReasonWrongAudience},

		{"expired", sign(with(valid, map[string]any{"iat": unix(-10 * time.Minute), "nbf": unix(-10 * time.Minute), "exp": unix(-time.Minute)})), consent.ReasonExpired},
		{"expired/at the end of the clock skew", sign(with(valid, map[string]any{"iat": unix(-10 * time.Minute), "nbf": unix(-10 * time.Minute), "exp": unix(-30 * time.Second)})), consent.ReasonExpired},
		{"not-yet-valid/nbf beyond the clock skew", sign(with(valid, map[string]any{"nbf": unix(31 * time.Second)})), consent.ReasonNotYetValid},
		{"not-yet-valid/issued in the future", sign(with(valid, map[string]any{"iat": unix(5 * time.Minute), "exp": unix(10 * time.Minute)})), consent.ReasonNotYetValid},
		{"lifetime-too-long/a second over 15 minutes", sign(with(valid, map[string]any{"iat": unix(-time.Minute), "exp": unix(14*time.Minute + time.Second)})), consent.ReasonLifetimeTooLong},
		{"lifetime-too-long/a year", sign(with(valid, map[string]any{"exp": unix(365 * 24 * time.Hour)})), consent.ReasonLifetimeTooLong},
		{"guardian-required/minor alone", sign(with(valid, map[string]any{"minor": true})), consent.ReasonGuardianRequired},
		{"guardian-required/guardian false", sign(with(valid, map[string]any{"minor": true, "guardian": false})), consent.ReasonGuardianRequired},
		{"unknown-purpose", sign(with(valid, map[string]any{"purposes": []string{"marketing"}})), consent.ReasonUnknownPurpose},
		{"unknown-purpose/one of two", sign(with(valid, map[string]any{"purposes": []string{"entry-security", "resale"}})), consent.ReasonUnknownPurpose},
		{"stale-notice", sign(with(valid, map[string]any{"notice": strings.Repeat("0", 64)})), consent.ReasonStaleNotice},
		{"stale-notice/hash in upper case", sign(with(valid, map[string]any{"notice": strings.ToUpper(noticeHash)})), consent.ReasonStaleNotice},
	}
	for _, claim := range []string{"iss", "sub", "jti", "aud", "iat", "nbf", "exp", "visit", "purposes", "notice"} {
		cases = append(cases, tokenCase{"missing-claim/" + claim, sign(with(valid, map[string]any{claim: absent})), consent.ReasonMissingClaim})
	}
	// One size limit for every identifier, checked before the signature.
	for _, claim := range []string{"iss", "sub", "jti", "visit", "notice"} {
		cases = append(cases, tokenCase{"malformed/" + claim + " over the size limit",
			sign(with(valid, map[string]any{claim: strings.Repeat("x", consent.MaxIDSize+1)})), consent.ReasonMalformed})
	}
	cases = append(cases, tokenCase{"malformed/a purpose id over the size limit",
		sign(with(valid, map[string]any{"purposes": []string{strings.Repeat("p", consent.MaxIDSize+1)}})), consent.ReasonMalformed})
	return cases
}

func TestVerifyConsent(t *testing.T) {
	cases := consentCases(t)
	seen := map[consent.Reason]bool{}
	for _, tt := range cases {
		seen[tt.want] = true
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier()
			c, err := v.VerifyConsent(tt.token)
			checkRefusal(t, err, c != nil, tt.want)
			if c != nil && c.KeyID != "kiosk-1" {
				t.Errorf("KeyID = %q, want kiosk-1", c.KeyID)
			}
		})
	}
	for _, r := range allReasons {
		// replayed is refused where the token id is spent (agent's TestReplay).
		if !seen[r] && r != consent.ReasonReplayed {
			t.Errorf("no case for reason %s", r)
		}
	}
}

func revokeCases(t *testing.T) []tokenCase {
	valid := revokeClaims()
	sign := func(claims map[string]any) []byte { return edToken(t, operatorKey, revokeHeader, claims) }
	good := sign(valid)
	parts := segments(t, good)
	cases := []tokenCase{
		{"valid/subject", good, ""},
		{"valid/visit", sign(with(valid, map[string]any{"sub": absent, "visit": "visit-42"})), ""},
		{"valid/site-wide audience", sign(with(valid, map[string]any{"aud": "consentcam:office-07"})), ""},
		{"valid/nbf within the clock skew", sign(with(valid, map[string]any{"nbf": unix(20 * time.Second)})), ""},

		{"too-large", sign(with(valid, map[string]any{"pad": strings.Repeat("x", 9<<10)})), consent.ReasonTooLarge},
		{"malformed/broken base64", []byte(parts[0] + "." + parts[1] + "!." + parts[2]), consent.ReasonMalformed},
		{"malformed/reason a number", sign(with(valid, map[string]any{"reason": 7})), consent.ReasonMalformed},
		{"wrong-type/consent token presented as revoke", edToken(t, issuerKey, consentHeader, consentClaims()), consent.ReasonWrongType},
		{"wrong-type/Kelvin sign, k only under Unicode folding", edToken(t, operatorKey, with(revokeHeader, map[string]any{"typ": "revo\u212Ae+jwt"}), valid), consent.ReasonWrongType},
		{"valid/typ in upper case", edToken(t, operatorKey, with(revokeHeader, map[string]any{"typ": "REVOKE+JWT"}), valid), ""},
		{"malformed/reason over the size limit", sign(with(valid, map[string]any{"reason": strings.Repeat("r", consent.MaxReasonSize+1)})), consent.ReasonMalformed},
		{"bad-signature/alg none", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, revokeHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/HS256 keyed with the operator's public key", token(t, jwt.SigningMethodHS256, []byte(public(operatorKey)), revokeHeader, valid), consent.ReasonBadSignature},
		{"bad-signature/an untrusted key under a trusted kid", edToken(t, strangerKey, revokeHeader, valid), consent.ReasonBadSignature},
		{"unknown-key/issuer key revoking", edToken(t, issuerKey, with(revokeHeader, map[string]any{"kid": "kiosk-1"}), valid), consent.ReasonUnknownKey},
		{"missing-claim/neither sub nor visit", sign(with(valid, map[string]any{"sub": absent})), consent.ReasonMissingClaim},
		{"missing-claim/both sub and visit", sign(with(valid, map[string]any{"visit": "visit-42"})), consent.ReasonMissingClaim},
		{"wrong-audience", sign(with(valid, map[string]any{"aud": "consentcam:office-08"})), consent.ReasonWrongAudience},
		{"expired", sign(with(valid, map[string]any{"iat": unix(-10 * time.Minute), "exp": unix(-time.Minute)})), consent.ReasonExpired},
		{"not-yet-valid", sign(with(valid, map[string]any{"nbf": unix(time.Minute)})), consent.ReasonNotYetValid},
		{"lifetime-too-long", sign(with(valid, map[string]any{"exp": unix(time.Hour)})), consent.ReasonLifetimeTooLong},
	}
	for _, claim := range []string{"iss", "jti", "aud", "iat", "exp", "reason"} {
		cases = append(cases, tokenCase{"missing-claim/" + claim, sign(with(valid, map[string]any{claim: absent})), consent.ReasonMissingClaim})
	}
	for _, claim := range []string{"iss", "jti", "sub"} {
		cases = append(cases, tokenCase{"malformed/" + claim + " over the size limit",
			sign(with(valid, map[string]any{claim: strings.Repeat("x", consent.MaxIDSize+1)})), consent.ReasonMalformed})
	}
	return cases
}

func TestVerifyRevoke(t *testing.T) {
	for _, tt := range revokeCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier()
			r, err := v.VerifyRevoke(tt.token)
			checkRefusal(t, err, r != nil, tt.want)
			if r != nil && r.KeyID != "ops-1" {
				t.Errorf("KeyID = %q, want ops-1", r.KeyID)
			}
		})
	}
}

func TestVerifyConsent_Claims(t *testing.T) {
	v := newVerifier()
	claims := with(consentClaims(), map[string]any{
		"aud":      []string{"consentcam:office-99", "consentcam:office-07"},
		"purposes": []string{"entry-security", "channel-attribution"},
		"minor":    true,
		"guardian": true,
		"extra":    "claims the contract does not name are ignored",
	})
	tok := edToken(t, issuerKey, consentHeader, claims)
	got, err := v.VerifyConsent(append(append([]byte(" "), tok...), '\n'))
	if err != nil {
		t.Fatal(err)
	}
	want := &consent.Consent{
		Token:     string(tok), // without the whitespace around it
		Issuer:    "kiosk.office-07",
		KeyID:     "kiosk-1",
		Subject:   "v-7f3a9c",
		JTI:       "jti-1",
		Visit:     "visit-42",
		Audience:  "consentcam:office-07",
		Purposes:  []string{"entry-security", "channel-attribution"},
		Notice:    noticeHash,
		IssuedAt:  now.Add(-time.Minute),
		NotBefore: now.Add(-time.Minute),
		Expires:   now.Add(9 * time.Minute),
		Minor:     true,
		Guardian:  true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestVerifyRevoke_Claims(t *testing.T) {
	v := newVerifier()
	tok := edToken(t, operatorKey, revokeHeader, with(revokeClaims(), map[string]any{"sub": absent, "visit": "visit-42"}))
	got, err := v.VerifyRevoke(tok)
	if err != nil {
		t.Fatal(err)
	}
	want := &consent.Revoke{
		Token:    string(tok),
		Issuer:   "front-desk",
		KeyID:    "ops-1",
		JTI:      "req-1",
		Reason:   "consent withdrawn",
		Visit:    "visit-42",
		Audience: aud,
		IssuedAt: now.Add(-time.Minute),
		Expires:  now.Add(4 * time.Minute),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// The verifier keeps no state: the same token verifies twice. Replay is
// refused where the token id is spent, in the transaction that carries the
// token out (agent).
func TestVerify_KeepsNoState(t *testing.T) {
	v := newVerifier()
	tok := edToken(t, issuerKey, consentHeader, consentClaims())
	for i := range 2 {
		if _, err := v.VerifyConsent(tok); err != nil {
			t.Fatalf("verification %d: %v", i+1, err)
		}
	}
	rtok := edToken(t, operatorKey, revokeHeader, revokeClaims())
	for i := range 2 {
		if _, err := v.VerifyRevoke(rtok); err != nil {
			t.Fatalf("revoke verification %d: %v", i+1, err)
		}
	}
}

// A verifier that was not told its site must not accept the audience
// "consentcam:" that an empty site would make.
func TestVerify_NoSite(t *testing.T) {
	v := newVerifier()
	v.Site, v.Camera = "", ""
	_, err := v.VerifyConsent(edToken(t, issuerKey, consentHeader, with(consentClaims(), map[string]any{"aud": "consentcam:"})))
	if got, want := consent.ReasonOf(err), consent.ReasonWrongAudience; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}
}

// Error messages help the installer but never echo the token.
func TestError_NoToken(t *testing.T) {
	v := newVerifier()
	tok := edToken(t, strangerKey, consentHeader, consentClaims())
	_, err := v.VerifyConsent(tok)
	if err == nil {
		t.Fatal("accepted a token signed by a stranger")
	}
	for _, part := range segments(t, tok) {
		if strings.Contains(err.Error(), part) {
			t.Errorf("error %q contains a part of the token", err)
		}
	}
	if got, want := err.Error(), "bad-signature: "; !strings.HasPrefix(got, want) {
		t.Errorf("error = %q, want it to start with %q", got, want)
	}
}

func TestReasonOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want consent.Reason
	}{
		{"nil", nil, ""},
		{"other error", errors.New("disk full"), ""},
		{"refusal", &consent.Error{Reason: consent.ReasonExpired}, consent.ReasonExpired},
		{"wrapped refusal", fmt.Errorf("consent: %w", &consent.Error{Reason: consent.ReasonReplayed}), consent.ReasonReplayed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := consent.ReasonOf(tt.err); got != tt.want {
				t.Errorf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSignConsent_RoundTrip(t *testing.T) {
	v := newVerifier()
	in := consent.Consent{
		Issuer:    "kiosk.office-07",
		Subject:   "v-7f3a9c",
		Visit:     "visit-42",
		Audience:  aud,
		Purposes:  []string{"channel-attribution", "entry-security"},
		Notice:    noticeHash,
		IssuedAt:  now,
		NotBefore: now,
		Expires:   now.Add(10 * time.Minute),
	}
	tok1, err := consent.SignConsent(issuerKey, "kiosk-1", in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyConsent([]byte(tok1))
	if err != nil {
		t.Fatal(err)
	}
	if got.JTI == "" {
		t.Fatal("SignConsent left the jti empty")
	}
	want := in
	want.KeyID, want.JTI, want.Token = "kiosk-1", got.JTI, tok1
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
	tok2, err := consent.SignConsent(issuerKey, "kiosk-1", in)
	if err != nil {
		t.Fatal(err)
	}
	got2, err := v.VerifyConsent([]byte(tok2))
	if err != nil {
		t.Fatal(err)
	}
	if got2.JTI == got.JTI {
		t.Errorf("two tokens got the same random jti %q", got.JTI)
	}
}

func TestSignRevoke_RoundTrip(t *testing.T) {
	v := newVerifier()
	in := consent.Revoke{
		Issuer:   "front-desk",
		JTI:      "req-7",
		Reason:   "consent withdrawn",
		Subject:  "v-7f3a9c",
		Audience: "consentcam:office-07",
		IssuedAt: now,
		Expires:  now.Add(5 * time.Minute),
	}
	tok, err := consent.SignRevoke(operatorKey, "ops-1", in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyRevoke([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.KeyID, want.Token = "ops-1", tok
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
}

// What the signer leaves out, the verifier reports as missing.
func TestSignConsent_EmptyFieldsLeftOut(t *testing.T) {
	v := newVerifier()
	tok, err := consent.SignConsent(issuerKey, "kiosk-1", consent.Consent{Issuer: "kiosk"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyConsent([]byte(tok))
	if got, want := consent.ReasonOf(err), consent.ReasonMissingClaim; got != want {
		t.Errorf("reason = %q, want %q (%v)", got, want, err)
	}
}

func TestSign_Errors(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  ed25519.PrivateKey
		kid  string
	}{
		{"no key", nil, "kiosk-1"},
		{"seed instead of key", issuerKey.Seed(), "kiosk-1"},
		{"no kid", issuerKey, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := consent.SignConsent(tt.key, tt.kid, consent.Consent{}); err == nil {
				t.Error("SignConsent: no error")
			}
			if _, err := consent.SignRevoke(tt.key, tt.kid, consent.Revoke{}); err == nil {
				t.Error("SignRevoke: no error")
			}
		})
	}
}

func TestAudience(t *testing.T) {
	if got, want := consent.Audience("office-07", "entrance-1"), "consentcam:office-07/entrance-1"; got != want {
		t.Errorf("camera audience = %q, want %q", got, want)
	}
	if got, want := consent.Audience("office-07", ""), "consentcam:office-07"; got != want {
		t.Errorf("site audience = %q, want %q", got, want)
	}
}

// manyPurposes returns n distinct purpose ids.
func manyPurposes(n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("purpose-%d", i)
	}
	return ps
}
