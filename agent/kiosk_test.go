package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// kioskKid is the issuer key id of the kiosk the tests turn on.
const kioskKid = "kiosk-tablet"

// withKiosk tunes a rig's agent to run the kiosk, signing with a key of its
// own that the verifier trusts, after tune (when not nil).
func withKiosk(t testing.TB, tune func(*agent.Agent)) func(*agent.Agent) {
	k := newKey(t, kioskKid)
	return func(a *agent.Agent) {
		a.Verifier.(*consent.Verifier).Issuers[k.kid] = k.pub
		a.Kiosk = &agent.KioskOptions{Issuer: k.kid, Key: k.priv}
		if tune != nil {
			tune(a)
		}
	}
}

// agree ticks purposes at the kiosk and agrees; it fails the test unless
// the visit starts.
func (r *rig) agree(purposes ...string) agent.KioskAgreement {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"purposes": purposes, "notice": r.notice.Hash()})
	resp, data := r.do("POST", "/kiosk/api/agree", agent.RoleKiosk, bytes.NewReader(body))
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("POST /kiosk/api/agree: %s %s", resp.Status, data)
	}
	var ag agent.KioskAgreement
	if err := json.Unmarshal(data, &ag); err != nil {
		r.t.Fatal(err)
	}
	return ag
}

// withdraw sends a withdrawal code; it returns the status and the body.
func (r *rig) withdraw(code string) (int, []byte) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]string{"code": code})
	resp, data := r.do("POST", "/kiosk/api/withdraw", "", bytes.NewReader(body))
	return resp.StatusCode, data
}

// waitVisit polls a kiosk visit's status, as the page does, until want
// holds.
func (r *rig) waitVisit(visit string, want func(agent.KioskVisit) bool) agent.KioskVisit {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, data := r.do("GET", "/kiosk/api/visits/"+visit, agent.RoleKiosk, nil)
		var v agent.KioskVisit
		if resp.StatusCode != 200 || json.Unmarshal(data, &v) != nil {
			r.t.Fatalf("GET /kiosk/api/visits/%s: %s %s", visit, resp.Status, data)
		}
		if want(v) {
			return v
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("visit %s is %+v after 15s; log:\n%s", visit, v, dump(r.events()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inState(state string) func(agent.KioskVisit) bool {
	return func(v agent.KioskVisit) bool { return v.State == state }
}

// decisions is the log without the agent's own bookkeeping.
func decisions(evs []store.Event) []store.Event {
	return slices.DeleteFunc(evs, func(ev store.Event) bool {
		return ev.Type == store.EventCheckpoint || ev.Type == store.EventAgentStarted || ev.Type == store.EventNoticePublished
	})
}

// checkError checks that an answer is the JSON error of SPEC with this
// status and reason.
func checkError(t *testing.T, what string, got int, body []byte, status int, reason string) {
	t.Helper()
	var e struct{ Error, Reason string }
	if got != status || json.Unmarshal(body, &e) != nil || e.Reason != reason || e.Error == "" {
		t.Errorf("%s: %d %s; want %d with a JSON error of reason %q", what, got, body, status, reason)
	}
}

// Without kiosk options the agent serves no kiosk page and no kiosk API.
func TestKioskOff(t *testing.T) {
	r := newRig(t, time.Hour, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/kiosk/"}, {"GET", "/kiosk/withdraw"}, {"GET", "/kiosk/audit"},
		{"GET", "/kiosk/api/notice"}, {"POST", "/kiosk/api/agree"}, {"POST", "/kiosk/api/withdraw"},
	} {
		if resp, _ := r.do(c.method, c.path, agent.RoleKiosk, strings.NewReader("{}")); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %s, want 404", c.method, c.path, resp.Status)
		}
	}
}

// The pages are served with a policy that allows only the box's own
// scripts, styles and API; the root leads to the kiosk.
func TestKioskPages(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, nil))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + r.a.HTTPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/kiosk/" {
		t.Errorf("GET /: %s to %q, want 303 to /kiosk/", resp.Status, resp.Header.Get("Location"))
	}

	for path, want := range map[string]string{
		"/kiosk/":                   `id="agree"`,
		"/kiosk/withdraw":           `id="code"`,
		"/kiosk/audit":              `id="events"`,
		"/kiosk/static/kiosk.js":    "/kiosk/api/agree",
		"/kiosk/static/kiosk.css":   ".choice",
		"/kiosk/static/common.js":   "takeToken",
		"/kiosk/static/audit.js":    "/v1/audit",
		"/kiosk/static/withdraw.js": "/kiosk/api/withdraw",
	} {
		resp, body := r.do("GET", path, "", nil)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET %s: %s, body without %q", path, resp.Status, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, _ := r.do("GET", "/kiosk/static/missing.js", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing static file: %s", resp.Status)
	}
	resp, body := r.do("GET", "/kiosk/api/nothing", agent.RoleKiosk, nil)
	checkError(t, "unknown kiosk API", resp.StatusCode, body, http.StatusNotFound, "not-found")

	resp, body = r.do("GET", "/kiosk/api/notice", "", nil)
	var n struct {
		Hash          string `json:"hash"`
		WindowSeconds int    `json:"window_seconds"`
		ZH            struct {
			Method    string            `json:"method"`
			Retention map[string]string `json:"retention"`
		} `json:"zh"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &n) != nil {
		t.Fatalf("GET /kiosk/api/notice: %s %s", resp.Status, body)
	}
	if n.Hash != r.notice.Hash() || n.WindowSeconds != 1 || !strings.Contains(n.ZH.Method, "1秒") ||
		n.ZH.Retention["channel-attribution"] != "30天" || n.ZH.Retention["entry-security"] != "1小时" {
		t.Errorf("kiosk notice = %+v", n)
	}
}

// Agreeing with one purpose of two signs a token for that purpose only;
// the visit is followed to its saved capture, tagged with that purpose only.
func TestKioskAgree(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, nil))
	r.cam.show(face(240, 120, 160, 0.95))
	start := time.Now()
	ag := r.agree("entry-security")

	if !regexp.MustCompile(`^kiosk-[0-9a-f]{20}$`).MatchString(ag.Subject) || ag.Visit == "" {
		t.Errorf("subject %q, visit %q", ag.Subject, ag.Visit)
	}
	if want := "http://" + r.a.HTTPAddr() + "/kiosk/withdraw#code=" + ag.Code; ag.WithdrawURL != want {
		t.Errorf("withdraw_url %q, want %q", ag.WithdrawURL, want)
	}
	if !strings.HasPrefix(ag.QRSVG, "<svg ") || !strings.Contains(ag.QRSVG, `<path fill="#000" d="M`) {
		t.Errorf("qr_svg = %.80q…", ag.QRSVG)
	}
	if ag.Expires.Before(start.Add(4*time.Minute)) || ag.Expires.After(start.Add(consent.MaxLifetime)) {
		t.Errorf("token expires %v, want a few minutes after %v", ag.Expires, start)
	}

	v := r.waitVisit(ag.Visit, inState(agent.VisitSaved))
	if !slices.Equal(v.Purposes, []string{"entry-security"}) {
		t.Errorf("saved for %v", v.Purposes)
	}
	recs := r.records("subject=" + ag.Subject)
	if len(recs) != 1 || len(recs[0].Purposes) != 1 || recs[0].Purposes[0].Purpose != "entry-security" || recs[0].Visit != ag.Visit {
		t.Fatalf("records = %+v, want one tagged entry-security only", recs)
	}
	accepted := r.waitEvent("consent.accepted", ofVisit(store.EventConsentAccepted, ag.Visit))
	if accepted.Actor != kioskKid || accepted.Subject != ag.Subject || !slices.Equal(accepted.Purposes, []string{"entry-security"}) ||
		accepted.Detail["notice"] != r.notice.Hash() || accepted.Seq != ag.Seq {
		t.Errorf("consent.accepted = %+v", accepted)
	}

	t.Run("the receipt's link goes where the tablet reached the box", func(t *testing.T) {
		body := `{"purposes":["channel-attribution"],"notice":"` + r.notice.Hash() + `","origin":"https://kiosk.example:8443"}`
		resp, data := r.do("POST", "/kiosk/api/agree", agent.RoleKiosk, strings.NewReader(body))
		var ag agent.KioskAgreement
		if resp.StatusCode != http.StatusAccepted || json.Unmarshal(data, &ag) != nil {
			t.Fatalf("agree: %s %s", resp.Status, data)
		}
		if want := "https://kiosk.example:8443/kiosk/withdraw#code=" + ag.Code; ag.WithdrawURL != want {
			t.Errorf("withdraw_url %q, want %q", ag.WithdrawURL, want)
		}
	})

	t.Run("status needs the kiosk role", func(t *testing.T) {
		resp, body := r.do("GET", "/kiosk/api/visits/"+ag.Visit, "", nil)
		checkError(t, "no token", resp.StatusCode, body, http.StatusUnauthorized, "unauthorized")
		resp, body = r.do("GET", "/kiosk/api/visits/no-such-visit", agent.RoleKiosk, nil)
		checkError(t, "unknown visit", resp.StatusCode, body, http.StatusNotFound, "not-found")
	})
}

// The kiosk refuses what is not consent, and anyone but the kiosk; none of
// it reaches the log.
func TestKioskAgreeRefusals(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, nil))
	before := len(decisions(r.events()))
	hash := r.notice.Hash()
	for _, c := range []struct {
		name, role, body string
		status           int
		reason           string
	}{
		{"no token", "", `{"purposes":["entry-security"],"notice":"` + hash + `"}`, 401, "unauthorized"},
		{"auditor", agent.RoleAuditor, `{"purposes":["entry-security"],"notice":"` + hash + `"}`, 403, "forbidden"},
		{"no purpose", agent.RoleKiosk, `{"purposes":[],"notice":"` + hash + `"}`, 400, "no-purpose"},
		{"purposes left out", agent.RoleKiosk, `{"notice":"` + hash + `"}`, 400, "no-purpose"},
		{"unknown purpose", agent.RoleKiosk, `{"purposes":["marketing"],"notice":"` + hash + `"}`, 400, "unknown-purpose"},
		{"purpose twice", agent.RoleKiosk, `{"purposes":["entry-security","entry-security"],"notice":"` + hash + `"}`, 400, "bad-request"},
		{"another notice", agent.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + strings.Repeat("ab", 32) + `"}`, 409, "stale-notice"},
		{"not JSON", agent.RoleKiosk, `purposes=entry-security`, 400, "bad-request"},
		{"unknown field", agent.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","subject":"me"}`, 400, "bad-request"},
		{"origin with a path", agent.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","origin":"https://kiosk.example/x"}`, 400, "bad-request"},
		{"origin not http", agent.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","origin":"javascript:alert(1)"}`, 400, "bad-request"},
		{"too large", agent.RoleKiosk, `{"purposes":["` + strings.Repeat("x", 5000) + `"]}`, 413, "too-large"},
	} {
		resp, body := r.do("POST", "/kiosk/api/agree", c.role, strings.NewReader(c.body))
		checkError(t, c.name, resp.StatusCode, body, c.status, c.reason)
	}
	if evs := decisions(r.events()); len(evs) != before {
		t.Errorf("refused requests were logged:\n%s", dump(evs[before:]))
	}
}

// Saying no records one consent.declined naming no one, and nothing else.
func TestKioskDecline(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, nil))
	before := len(decisions(r.events()))
	resp, body := r.do("POST", "/kiosk/api/decline", "", nil)
	checkError(t, "no token", resp.StatusCode, body, http.StatusUnauthorized, "unauthorized")

	resp, body = r.do("POST", "/kiosk/api/decline", agent.RoleKiosk, nil)
	var got struct{ Seq uint64 }
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("decline: %s %s", resp.Status, body)
	}
	evs := decisions(r.events())[before:]
	if len(evs) != 1 {
		t.Fatalf("decline logged %d events:\n%s", len(evs), dump(evs))
	}
	ev := evs[0]
	if ev.Type != store.EventConsentDeclined || ev.Seq != got.Seq || ev.Actor != kioskKid ||
		ev.Subject != "" || ev.Visit != "" || ev.Purposes != nil || ev.Record != "" || ev.Detail["notice"] != r.notice.Hash() {
		t.Errorf("event = %+v", ev)
	}
	if n, _ := r.db.RecordCount(); n != 0 {
		t.Errorf("%d records", n)
	}
}

// A withdrawal code erases its subject as a revoke command would, with a
// receipt signed by the device; a code that does not check out changes
// nothing.
func TestKioskWithdraw(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, nil))
	r.cam.show(face(240, 120, 160, 0.95))
	ag := r.agree("channel-attribution", "entry-security")
	r.waitVisit(ag.Visit, inState(agent.VisitSaved))
	other := r.saveOne("v-other", "subj-other", "channel-attribution")

	t.Run("bad codes change nothing", func(t *testing.T) {
		before := len(decisions(r.events()))
		plain := strings.ReplaceAll(ag.Code, "-", "")
		flipped := []byte(plain) // in the tag's last character
		flipped[len(flipped)-1] ^= 'A' ^ 'B'
		foreign := newRig(t, time.Hour, withKiosk(t, nil)).agree("entry-security").Code // another issuer key
		for name, code := range map[string]string{
			"changed tag":     string(flipped),
			"another kiosk's": foreign,
			"subject id":      ag.Subject,
			"empty":           "",
			"garbage":         "<script>",
		} {
			status, body := r.withdraw(code)
			checkError(t, name, status, body, http.StatusBadRequest, "bad-code")
		}
		resp, body := r.do("POST", "/kiosk/api/withdraw", "", strings.NewReader("code="+ag.Code))
		checkError(t, "form body", resp.StatusCode, body, http.StatusBadRequest, "bad-request")
		if evs := decisions(r.events()); len(evs) != before {
			t.Errorf("bad codes were acted on:\n%s", dump(evs[before:]))
		}
		if recs := r.records("subject=" + ag.Subject); len(recs) != 1 {
			t.Errorf("subject has %d records after bad codes", len(recs))
		}
	})

	t.Run("the code erases the subject", func(t *testing.T) {
		status, body := r.withdraw(strings.ToLower(ag.Code)) // as typed on a phone
		var w agent.KioskWithdrawal
		if status != 200 || json.Unmarshal(body, &w) != nil {
			t.Fatalf("withdraw: %d %s", status, body)
		}
		rc, err := consent.VerifyReceipt(r.device.pub, w.Receipt)
		if err != nil {
			t.Fatalf("receipt does not verify with the device key: %v", err)
		}
		if w.Subject != ag.Subject || w.Erased != 1 || rc.Subject != ag.Subject || rc.Erased != 1 || rc.Seq != w.Seq || !rc.Time.Equal(w.Time) {
			t.Errorf("withdrawal %+v, receipt %+v", w, rc)
		}
		checkReceiptCheckpoint(t, r, rc)
		if recs := r.records("subject=" + ag.Subject); len(recs) != 0 {
			t.Errorf("subject still has %d records", len(recs))
		}
		if recs := r.records("subject=subj-other"); len(recs) != 1 || recs[0].ID != other {
			t.Errorf("another subject's records changed: %+v", recs)
		}
		revoked := r.waitEvent("consent.revoked", func(ev store.Event) bool {
			return ev.Type == store.EventConsentRevoked && ev.Subject == ag.Subject
		})
		if revoked.Actor != "visitor" || revoked.Reason != "withdrawn by the visitor at the kiosk" || revoked.Seq != w.Seq {
			t.Errorf("consent.revoked = %+v", revoked)
		}
		erased := r.waitEvent("record.erased", func(ev store.Event) bool {
			return ev.Type == store.EventRecordErased && ev.Subject == ag.Subject
		})
		if erased.Actor != "visitor" || !slices.Equal(erased.Purposes, []string{"channel-attribution", "entry-security"}) {
			t.Errorf("record.erased = %+v", erased)
		}
		r.waitVisit(ag.Visit, inState(agent.VisitWithdrawn))
	})

	t.Run("twice is fine", func(t *testing.T) {
		status, body := r.withdraw(ag.Code)
		var w agent.KioskWithdrawal
		if status != 200 || json.Unmarshal(body, &w) != nil || w.Erased != 0 {
			t.Errorf("second withdrawal: %d %s", status, body)
		}
	})
}

// The status follows each kiosk visit through the queue at the camera: how
// many are ahead, when its window opens, and a withdrawal that closes it.
func TestKioskVisitStatus(t *testing.T) {
	r := newRig(t, time.Hour, withKiosk(t, func(a *agent.Agent) { a.Window = time.Hour }))
	// Nobody in view: each window stays open until its visitor withdraws.
	v1 := r.agree("channel-attribution")
	r.waitVisit(v1.Visit, inState(agent.VisitOpen))
	v2 := r.agree("channel-attribution")
	v3 := r.agree("entry-security")
	if v2.Waiting != 1 || v3.Waiting != 2 {
		t.Errorf("waiting %d and %d, want 1 and 2", v2.Waiting, v3.Waiting)
	}
	if s := r.waitVisit(v3.Visit, inState(agent.VisitWaiting)); s.Ahead != 2 {
		t.Errorf("third visit: %d ahead, want 2", s.Ahead)
	}

	if status, body := r.withdraw(v1.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.waitVisit(v1.Visit, inState(agent.VisitWithdrawn))
	r.waitVisit(v2.Visit, inState(agent.VisitOpen))
	if s := r.waitVisit(v3.Visit, inState(agent.VisitWaiting)); s.Ahead != 1 {
		t.Errorf("third visit: %d ahead, want 1", s.Ahead)
	}
	skipped := r.waitEvent("capture.skipped", ofVisit(store.EventCaptureSkipped, v1.Visit))
	if skipped.Reason != "revoked" {
		t.Errorf("first visit skipped as %q", skipped.Reason)
	}

	if status, body := r.withdraw(v2.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.waitVisit(v3.Visit, inState(agent.VisitOpen))
	if status, body := r.withdraw(v3.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.waitVisit(v3.Visit, inState(agent.VisitWithdrawn))
	if slices.ContainsFunc(r.events(), isType(store.EventCaptureSaved)) {
		t.Error("a capture saved with nobody in view")
	}
}
