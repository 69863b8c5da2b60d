package httpapi

import (
	"crypto/ed25519"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	qrcode "github.com/skip2/go-qrcode"
)

// KioskOptions turns on the consent kiosk: the pages under /kiosk/ that a
// tablet at the front desk shows visitors, and their API. The kiosk signs
// the consent token of a visitor who agrees with Key, as the issuer Issuer,
// and submits it like any other token.
type KioskOptions struct {
	// Issuer is the kid of an issuer the agent's verifier trusts; Key is
	// its private key.
	Issuer string
	Key    ed25519.PrivateKey
	// Window is the capture window's length, which the page tells.
	Window time.Duration
}

// Kiosk constants.
const (
	// kioskTokenTTL is the lifetime of the tokens the kiosk signs: time
	// enough to wait for the camera behind a few other visitors.
	kioskTokenTTL = 5 * time.Minute
	// kioskIssuerName is the iss claim of the kiosk's tokens.
	kioskIssuerName = "consentcam-kiosk"
	// withdrawReason is the reason of a withdrawal at the kiosk, and
	// actorVisitor its actor, in the audit log.
	withdrawReason = "withdrawn by the visitor at the kiosk"
	actorVisitor   = "visitor"
	// maxKioskBody bounds the JSON bodies of the kiosk API.
	maxKioskBody = 4 << 10
)

//go:embed web
var webFiles embed.FS

// kiosk is the running kiosk of a server.
type kiosk struct {
	s       *Server
	opts    KioskOptions
	codes   codeKey
	perCode *limiter // withdrawals, by the subject a code names
	notice  kioskNotice
	static  fs.FS
}

func newKiosk(s *Server) (*kiosk, error) {
	o := s.Kiosk
	if o.Issuer == "" || len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("kiosk: needs an issuer kid and its Ed25519 private key")
	}
	if o.Window <= 0 {
		return nil, errors.New("kiosk: needs the capture window's length")
	}
	codes, err := newCodeKey(o.Key)
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		return nil, err
	}
	return &kiosk{s: s, opts: *o, codes: codes, perCode: newLimiter(codePerMinute, codeBurst),
		notice: newKioskNotice(s.noticeHash, o.Window), static: static}, nil
}

// routes adds the kiosk's pages and API. Agreeing, declining and a visit's
// status need the kiosk role (only the tablet may start a capture);
// withdrawing needs only the withdrawal code; the audit page reads the
// auditor endpoints with the auditor's token.
func (k *kiosk) routes(mux *http.ServeMux) {
	s := k.s
	mux.Handle("GET /{$}", http.RedirectHandler("/kiosk/", http.StatusSeeOther))
	mux.Handle("GET /kiosk/{$}", page("kiosk.html"))
	mux.Handle("GET /kiosk/withdraw", page("withdraw.html"))
	mux.Handle("GET /kiosk/audit", page("audit.html"))
	mux.Handle("GET /kiosk/static/{file}", pageHeaders(http.StripPrefix("/kiosk/static/", http.FileServerFS(k.static))))

	mux.Handle("GET /kiosk/api/notice", s.handle(k.handleNotice))
	mux.Handle("POST /kiosk/api/agree", s.require(s.limited(k.handleAgree), RoleKiosk))
	mux.Handle("POST /kiosk/api/decline", s.require(s.limited(k.handleDecline), RoleKiosk))
	mux.Handle("GET /kiosk/api/visits/{visit}", s.require(k.handleVisit, RoleKiosk))
	mux.Handle("POST /kiosk/api/withdraw", s.handle(s.limited(k.handleWithdraw)))
	mux.Handle("/kiosk/api/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Reason: ReasonNotFound, Msg: "no kiosk API " + r.Method + " " + r.URL.Path}
	}))
}

// pageHeaders allows the kiosk's pages only their own scripts, styles and
// API, never a frame or another site.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

func page(name string) http.Handler {
	return pageHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, webFiles, "web/"+name)
	}))
}

func (k *kiosk) handleNotice(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, k.notice)
	return nil
}

// decodeJSON reads a small JSON object body into v: a request of the
// box's own pages (same origin, application/json).
func (k *kiosk) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := k.s.sameOrigin(r); err != nil {
		return err
	}
	if err := jsonBody(r); err != nil {
		return err
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxKioskBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return &Error{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge, Msg: fmt.Sprintf("the body is over %d bytes", maxKioskBody)}
	case err != nil:
		return badRequest("the body must be a JSON object: %v", err)
	}
	return nil
}

// KioskAgreement is the answer of POST /kiosk/api/agree: the visit that
// waits for the camera, and the visitor's receipt.
type KioskAgreement struct {
	Visit    string    `json:"visit"`
	Subject  string    `json:"subject"`
	Purposes []string  `json:"purposes"`
	Expires  time.Time `json:"expires"` // the consent token's expiry
	Seq      uint64    `json:"seq"`     // of consent.accepted
	Waiting  int       `json:"waiting"` // visits before this one at the camera
	// Minor and Guardian are the token's: a visitor under 14, for whom a
	// guardian agreed.
	Minor    bool `json:"minor"`
	Guardian bool `json:"guardian"`
	// Code is the withdrawal code; WithdrawURL the withdraw page with the
	// code, and QRSVG that URL as a QR code (an SVG document).
	Code        string `json:"code"`
	WithdrawURL string `json:"withdraw_url"`
	QRSVG       string `json:"qr_svg"`
}

// handleAgree starts the visit of a visitor who ticked purposes and agreed:
// a fresh pseudonymous subject, a consent token signed by the kiosk issuer
// for exactly those purposes and the notice the page showed, submitted as
// POST /v1/visits would.
func (k *kiosk) handleAgree(w http.ResponseWriter, r *http.Request) error {
	s := k.s
	var req struct {
		Purposes []string `json:"purposes"`
		Notice   string   `json:"notice"` // hash of the notice the visitor was shown
		// Origin is where the tablet reached the box, such as
		// https://kiosk.example (behind a proxy); the request's Host
		// otherwise. The receipt's link and QR code point there.
		Origin string `json:"origin"`
		// Minor: the visitor is under 14; Guardian: a parent or guardian
		// confirmed, in person, that they agree for them.
		Minor    bool `json:"minor"`
		Guardian bool `json:"guardian"`
	}
	if err := k.decodeJSON(w, r, &req); err != nil {
		return err
	}
	origin, err := originOf(r, req.Origin)
	if err != nil {
		return err
	}
	if req.Notice != s.noticeHash {
		return &Error{Status: http.StatusConflict, Reason: string(consent.ReasonStaleNotice),
			Msg: "the notice changed since the page was loaded: reload it, so the visitor sees the notice in force"}
	}
	if req.Minor && !req.Guardian {
		return &Error{Status: http.StatusForbidden, Reason: string(consent.ReasonGuardianRequired),
			Msg: "a visitor under 14 needs a parent or guardian to agree, in person: no consent is made without one"}
	}
	if len(req.Purposes) == 0 {
		return &Error{Status: http.StatusBadRequest, Reason: ReasonNoPurpose, Msg: "no purpose ticked: agreeing to nothing is not consent"}
	}
	for i, p := range req.Purposes {
		if !slices.ContainsFunc(s.Notice.Purposes, func(np consent.Purpose) bool { return np.ID == p }) {
			return &Error{Status: http.StatusBadRequest, Reason: string(consent.ReasonUnknownPurpose), Msg: fmt.Sprintf("no purpose %q in the notice", p)}
		}
		if slices.Contains(req.Purposes[:i], p) {
			return badRequest("purpose %q is given twice", p)
		}
	}

	subject, code := k.codes.newSubject()
	visit := store.NewID()
	now := s.Now()
	token, err := consent.SignConsent(k.opts.Key, k.opts.Issuer, consent.Consent{
		Issuer: kioskIssuerName, Subject: subject, Visit: visit, Purposes: req.Purposes, Notice: s.noticeHash,
		Audience: consent.Audience(s.Notice.Site, s.Notice.Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(kioskTokenTTL),
		Minor: req.Minor, Guardian: req.Minor && req.Guardian,
	})
	if err != nil {
		return fmt.Errorf("sign the consent token: %w", err)
	}
	withdrawURL := origin + "/kiosk/withdraw#code=" + code
	qr, err := qrSVG(withdrawURL)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	acc, err := s.Core.Consent(r.Context(), []byte(token))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusAccepted, KioskAgreement{
		Visit: visit, Subject: subject, Purposes: req.Purposes, Expires: acc.Consent.Expires.UTC(),
		Seq: acc.Seq, Waiting: acc.Waiting, Minor: acc.Consent.Minor, Guardian: acc.Consent.Guardian, Code: code, WithdrawURL: withdrawURL, QRSVG: qr,
	})
	return nil
}

// originOf checks the origin a kiosk page gives (scheme, host and port
// only) or, when it gives none, makes it from the request.
func originOf(r *http.Request, origin string) (string, error) {
	if origin == "" {
		origin = "http://" + r.Host
		if r.TLS != nil {
			origin = "https://" + r.Host
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", badRequest("origin must be http(s)://host[:port] (got %q)", origin)
	}
	return u.Scheme + "://" + u.Host, nil
}

// handleDecline records that a visitor said no, and nothing else: no
// subject, no visit, no purpose. The body, optional, may give the reason
// guardian-required: a visitor under 14 whom no guardian could agree for.
func (k *kiosk) handleDecline(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := k.decodeJSON(w, r, &req); err != nil {
			return err
		}
	} else if err := k.s.sameOrigin(r); err != nil {
		return err
	}
	if req.Reason != "" && req.Reason != string(consent.ReasonGuardianRequired) {
		return badRequest("reason must be %q or none (got %q)", consent.ReasonGuardianRequired, req.Reason)
	}
	seq, err := k.s.Core.Decline(k.opts.Issuer, req.Reason)
	if err != nil {
		return fmt.Errorf("record the refusal: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"seq": seq})
	return nil
}

// KioskWithdrawal is the answer of POST /kiosk/api/withdraw.
type KioskWithdrawal struct {
	Subject string    `json:"subject"`
	Erased  int       `json:"erased"`        // records erased
	Seq     uint64    `json:"seq,omitempty"` // of consent.revoked
	Time    time.Time `json:"time"`
	// Receipt is the revoke receipt signed by the device key; none when
	// nothing was left to erase (nothing is recorded then).
	Receipt json.RawMessage `json:"receipt,omitempty"`
}

// handleWithdraw erases a subject named by a valid withdrawal code, exactly
// as a revoke command naming the subject would, and returns the receipt. A
// code that does not check out changes nothing.
func (k *kiosk) handleWithdraw(w http.ResponseWriter, r *http.Request) error {
	s := k.s
	var req struct {
		Code string `json:"code"`
	}
	if err := k.decodeJSON(w, r, &req); err != nil {
		return err
	}
	subject, err := k.codes.subjectOf(req.Code)
	if err != nil {
		s.Logger.Info("kiosk withdrawal refused", logKeyReason, err)
		return &Error{Status: http.StatusBadRequest, Reason: ReasonBadCode, Msg: err.Error()}
	}
	if ok, wait := k.perCode.allow(subject, s.Now()); !ok {
		return tooMany(w, wait)
	}
	rc, err := s.Core.Withdraw(r.Context(), subject, actorVisitor, withdrawReason)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, KioskWithdrawal{Subject: subject, Erased: rc.Erased, Seq: rc.Seq, Time: rc.Time, Receipt: rc.Signed})
	return nil
}

// handleVisit answers what has become of a visit.
func (k *kiosk) handleVisit(w http.ResponseWriter, r *http.Request) error {
	v, ok := k.s.Core.VisitStatus(r.PathValue("visit"))
	if !ok {
		return &Error{Status: http.StatusNotFound, Reason: ReasonNotFound,
			Msg: fmt.Sprintf("no visit %q among the last %d", r.PathValue("visit"), agent.MaxTrackedVisits)}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// qrSVG draws text as a QR code: an SVG document of black modules on white,
// with the standard quiet zone.
func qrSVG(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`+
		`<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n, n)
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x, y, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}
