package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	qrcode "github.com/skip2/go-qrcode"
)

// KioskOptions turns on the consent kiosk: the pages under /kiosk/ that a
// tablet at the front desk shows visitors, and their API. The agent signs
// the consent token of a visitor who agrees with Key, as the issuer Issuer,
// and submits it like any other token.
type KioskOptions struct {
	// Issuer is the kid of an issuer the Verifier trusts; Key is its
	// private key.
	Issuer string
	Key    ed25519.PrivateKey
}

// Kiosk constants.
const (
	// kioskTokenTTL is the lifetime of the tokens the kiosk signs: time
	// enough to wait for the camera behind a few other visitors.
	kioskTokenTTL = 5 * time.Minute
	// kioskIssuerName is the iss claim of the kiosk's tokens.
	kioskIssuerName = "consentcam-kiosk"
	// maxKioskVisits is how many kiosk visits the status API remembers.
	maxKioskVisits = 256
	// withdrawReason is the reason of a withdrawal at the kiosk, and
	// actorVisitor its actor, in the audit log.
	withdrawReason = "withdrawn by the visitor at the kiosk"
	actorVisitor   = "visitor"
	// maxKioskBody bounds the JSON bodies of the kiosk API.
	maxKioskBody = 4 << 10
)

// States of a kiosk visit (KioskVisit.State).
const (
	VisitWaiting   = "waiting"
	VisitOpen      = "open"
	VisitSaved     = "saved"
	VisitSkipped   = "skipped"
	VisitWithdrawn = "withdrawn"
)

//go:embed web
var webFiles embed.FS

// kiosk is the running kiosk of an agent.
type kiosk struct {
	a      *Agent
	opts   KioskOptions
	codes  codeKey
	notice kioskNotice
	static fs.FS
	visits visitTracker
}

func newKiosk(a *Agent) (*kiosk, error) {
	o := a.Kiosk
	if o.Issuer == "" || len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("agent: the kiosk needs an issuer kid and its Ed25519 private key")
	}
	codes, err := newCodeKey(o.Key)
	if err != nil {
		return nil, err
	}
	notice, err := newKioskNotice(a)
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		return nil, err
	}
	return &kiosk{a: a, opts: *o, codes: codes, notice: notice, static: static,
		visits: visitTracker{kiosk: map[string]*trackedVisit{}}}, nil
}

// routes adds the kiosk's pages and API. Agreeing, declining and a visit's
// status need the kiosk role (only the tablet may start a capture);
// withdrawing needs only the withdrawal code; the audit page reads the
// auditor endpoints with the auditor's token.
func (k *kiosk) routes(mux *http.ServeMux) {
	a := k.a
	mux.Handle("GET /{$}", http.RedirectHandler("/kiosk/", http.StatusSeeOther))
	mux.Handle("GET /kiosk/{$}", page("kiosk.html"))
	mux.Handle("GET /kiosk/withdraw", page("withdraw.html"))
	mux.Handle("GET /kiosk/audit", page("audit.html"))
	mux.Handle("GET /kiosk/static/{file}", pageHeaders(http.StripPrefix("/kiosk/static/", http.FileServerFS(k.static))))

	mux.HandleFunc("GET /kiosk/api/notice", k.handleNotice)
	mux.Handle("POST /kiosk/api/agree", a.require(RoleKiosk, k.handleAgree))
	mux.Handle("POST /kiosk/api/decline", a.require(RoleKiosk, k.handleDecline))
	mux.Handle("GET /kiosk/api/visits/{visit}", a.require(RoleKiosk, k.handleVisit))
	mux.HandleFunc("POST /kiosk/api/withdraw", k.handleWithdraw)
	mux.HandleFunc("/kiosk/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not-found", "no kiosk API %s %s", r.Method, r.URL.Path)
	})
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

func (k *kiosk) handleNotice(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, k.notice)
}

// decodeJSON reads a small JSON object body into v, or answers with an error.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxKioskBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", "the body is over %d bytes", maxKioskBody)
	case err != nil:
		writeError(w, http.StatusBadRequest, "bad-request", "the body must be a JSON object: %v", err)
	default:
		return true
	}
	return false
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
func (k *kiosk) handleAgree(w http.ResponseWriter, r *http.Request) {
	a := k.a
	var req struct {
		Purposes []string `json:"purposes"`
		Notice   string   `json:"notice"` // hash of the notice the visitor was shown
		// Origin is where the tablet reached the box, such as
		// https://kiosk.example (behind a proxy); the request's Host
		// otherwise. The receipt's link and QR code point there.
		Origin string `json:"origin"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	origin, err := originOf(r, req.Origin)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad-request", "%v", err)
		return
	}
	if req.Notice != a.NoticeHash {
		writeError(w, http.StatusConflict, string(consent.ReasonStaleNotice),
			"the notice changed since the page was loaded: reload it, so the visitor sees the notice in force")
		return
	}
	if len(req.Purposes) == 0 {
		writeError(w, http.StatusBadRequest, "no-purpose", "no purpose ticked: agreeing to nothing is not consent")
		return
	}
	for i, p := range req.Purposes {
		if _, ok := a.Purposes[p]; !ok {
			writeError(w, http.StatusBadRequest, string(consent.ReasonUnknownPurpose), "no purpose %q in the notice", p)
			return
		}
		if slices.Contains(req.Purposes[:i], p) {
			writeError(w, http.StatusBadRequest, "bad-request", "purpose %q is given twice", p)
			return
		}
	}

	subject, code := k.codes.newSubject()
	visit := store.NewID()
	now := a.Now()
	token, err := consent.SignConsent(k.opts.Key, k.opts.Issuer, consent.Consent{
		Issuer: kioskIssuerName, Subject: subject, Visit: visit, Purposes: req.Purposes, Notice: a.NoticeHash,
		Audience: consent.Audience(a.Site, a.Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(kioskTokenTTL),
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "sign the consent token: %v", err)
		return
	}
	withdrawURL := origin + "/kiosk/withdraw#code=" + code
	qr, err := qrSVG(withdrawURL)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "QR code: %v", err)
		return
	}

	k.visits.add(visit, subject)
	res, err := a.Consent(r.Context(), []byte(token))
	if err != nil {
		k.visits.forget(visit)
		writeConsentError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusAccepted, KioskAgreement{
		Visit: visit, Subject: subject, Purposes: req.Purposes, Expires: res.consent.Expires.UTC(),
		Seq: res.seq, Waiting: res.queue, Code: code, WithdrawURL: withdrawURL, QRSVG: qr,
	})
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
		return "", fmt.Errorf("origin must be http(s)://host[:port] (got %q)", origin)
	}
	return u.Scheme + "://" + u.Host, nil
}

// handleDecline records that a visitor said no, and nothing else: no
// subject, no visit, no purpose.
func (k *kiosk) handleDecline(w http.ResponseWriter, r *http.Request) {
	ev := &store.Event{Type: store.EventConsentDeclined, Actor: k.opts.Issuer,
		Detail: map[string]any{"notice": k.a.NoticeHash}}
	if err := k.a.append(ev); err != nil {
		writeError(w, http.StatusInternalServerError, "store", "record the refusal: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"seq": ev.Seq})
}

// KioskWithdrawal is the answer of POST /kiosk/api/withdraw.
type KioskWithdrawal struct {
	Subject string    `json:"subject"`
	Erased  int       `json:"erased"` // records erased
	Seq     uint64    `json:"seq"`    // of consent.revoked
	Time    time.Time `json:"time"`
	// Receipt is the revoke receipt signed by the device key.
	Receipt json.RawMessage `json:"receipt"`
}

// handleWithdraw erases a subject named by a valid withdrawal code, exactly
// as a revoke command naming the subject would, and returns the receipt. A
// code that does not check out changes nothing.
func (k *kiosk) handleWithdraw(w http.ResponseWriter, r *http.Request) {
	a := k.a
	var req struct {
		Code string `json:"code"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	subject, err := k.codes.subjectOf(req.Code)
	if err != nil {
		a.Logger.Info("kiosk withdrawal refused", logKeyReason, err)
		writeError(w, http.StatusBadRequest, "bad-code", "%v", err)
		return
	}
	now := a.Now()
	res := a.carryOut(r.Context(), &consent.Revoke{
		Issuer: kioskIssuerName, KeyID: actorVisitor, JTI: rand.Text(), Reason: withdrawReason, Subject: subject,
		Audience: consent.Audience(a.Site, a.Camera), IssuedAt: now, Expires: now,
	})
	if res.err != nil {
		writeConsentError(w, res.err)
		return
	}
	rc := res.receipt
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, KioskWithdrawal{Subject: subject, Erased: rc.Erased, Seq: rc.Seq, Time: rc.Time, Receipt: res.signed})
}

// KioskVisit is the answer of GET /kiosk/api/visits/{visit}: what has
// become of a visit started at the kiosk.
type KioskVisit struct {
	Visit string `json:"visit"`
	State string `json:"state"` // waiting, open, saved, skipped or withdrawn
	// Ahead is, while waiting, how many visits are before this one at the
	// camera (the open window counts).
	Ahead    int      `json:"ahead"`
	Reason   string   `json:"reason,omitempty"`   // skipped: why nothing was saved
	Purposes []string `json:"purposes,omitempty"` // saved: what the picture is kept for
}

func (k *kiosk) handleVisit(w http.ResponseWriter, r *http.Request) {
	v, ok := k.visits.status(r.PathValue("visit"))
	if !ok {
		writeError(w, http.StatusNotFound, "not-found", "no kiosk visit %q among the last %d", r.PathValue("visit"), maxKioskVisits)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// visitTracker follows, from committed audit events, the queue at the camera
// and what became of the last kiosk visits.
type visitTracker struct {
	mu      sync.Mutex
	waiting []string // visits waiting for the camera, in queue order (any visit)
	open    string   // the visit whose window is open
	kiosk   map[string]*trackedVisit
	order   []string // kiosk visits, oldest first
}

type trackedVisit struct {
	subject string
	status  KioskVisit
}

func (t *visitTracker) add(visit, subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.order) >= maxKioskVisits {
		delete(t.kiosk, t.order[0])
		t.order = slices.Delete(t.order, 0, 1)
	}
	t.kiosk[visit] = &trackedVisit{subject: subject, status: KioskVisit{Visit: visit, State: VisitWaiting}}
	t.order = append(t.order, visit)
}

func (t *visitTracker) forget(visit string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.kiosk, visit)
	if i := slices.Index(t.order, visit); i >= 0 {
		t.order = slices.Delete(t.order, i, i+1)
	}
}

func (t *visitTracker) status(visit string) (KioskVisit, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.kiosk[visit]
	if !ok {
		return KioskVisit{}, false
	}
	st := v.status
	if st.State == VisitWaiting {
		st.Ahead = slices.Index(t.waiting, visit)
		if st.Ahead < 0 { // its consent.accepted is not committed yet
			st.Ahead = len(t.waiting)
		}
		if t.open != "" {
			st.Ahead++
		}
	}
	return st, true
}

// observe follows a committed event. Every consent that joins the queue is
// accepted, and leaves it by opening its window or being skipped.
func (t *visitTracker) observe(ev *store.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := func(state string) *KioskVisit {
		v, ok := t.kiosk[ev.Visit]
		if !ok || v.status.State == VisitWithdrawn {
			return &KioskVisit{}
		}
		v.status.State = state
		return &v.status
	}
	switch ev.Type {
	case store.EventConsentAccepted:
		t.waiting = append(t.waiting, ev.Visit)
		if len(t.waiting) > 4*MaxQueue { // cannot happen; bounds the memory if it does
			t.waiting = slices.Delete(t.waiting, 0, 1)
		}
	case store.EventWindowOpened:
		t.leaveQueue(ev.Visit)
		t.open = ev.Visit
		set(VisitOpen)
	case store.EventWindowClosed:
		if t.open == ev.Visit {
			t.open = ""
		}
	case store.EventCaptureSaved:
		set(VisitSaved).Purposes = ev.Purposes
	case store.EventCaptureSkipped:
		if ev.Visit != t.open {
			t.leaveQueue(ev.Visit)
		}
		set(VisitSkipped).Reason = ev.Reason
	case store.EventConsentRevoked:
		for visit, v := range t.kiosk {
			if (ev.Subject != "" && ev.Subject == v.subject) || (ev.Visit != "" && ev.Visit == visit) {
				v.status = KioskVisit{Visit: visit, State: VisitWithdrawn}
			}
		}
	}
}

func (t *visitTracker) leaveQueue(visit string) {
	if i := slices.Index(t.waiting, visit); i >= 0 {
		t.waiting = slices.Delete(t.waiting, i, i+1)
	}
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
