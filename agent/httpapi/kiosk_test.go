package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// kioskKid is the issuer key id of the kiosk the tests turn on.
const kioskKid = "kiosk-tablet"

// Without kiosk options the agent serves no kiosk page and no kiosk API.
func TestKioskOff(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/kiosk/"}, {"GET", "/kiosk/withdraw"}, {"GET", "/kiosk/audit"},
		{"GET", "/kiosk/api/notice"}, {"POST", "/kiosk/api/agree"}, {"POST", "/kiosk/api/withdraw"},
	} {
		if resp, _ := r.Do(c.method, c.path, httpapi.RoleKiosk, strings.NewReader("{}")); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %s, want 404", c.method, c.path, resp.Status)
		}
	}
}

// The pages are served with a policy that allows only the box's own
// scripts, styles and API; the root leads to the kiosk.
func TestKioskPages(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + r.HTTP.ListenAddr() + "/")
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
		resp, body := r.Do("GET", path, "", nil)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET %s: %s, body without %q", path, resp.Status, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, _ := r.Do("GET", "/kiosk/static/missing.js", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing static file: %s", resp.Status)
	}
	resp, body := r.Do("GET", "/kiosk/api/nothing", httpapi.RoleKiosk, nil)
	agenttest.CheckError(t, "unknown kiosk API", resp.StatusCode, body, http.StatusNotFound, "not-found")

	resp, body = r.Do("GET", "/kiosk/api/notice", "", nil)
	var n struct {
		Hash          string `json:"hash"`
		WindowSeconds int    `json:"window_seconds"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &n) != nil {
		t.Fatalf("GET /kiosk/api/notice: %s %s", resp.Status, body)
	}
	if n.Hash != r.Notice.Hash() || n.WindowSeconds != 1 {
		t.Errorf("kiosk notice = %+v", n)
	}
}

// Agreeing with one purpose of two signs a token for that purpose only;
// the visit is followed to its saved capture, tagged with that purpose only.
func TestKioskAgree(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	start := time.Now()
	ag := r.Agree("entry-security")

	if !regexp.MustCompile(`^kiosk-[0-9a-f]{20}$`).MatchString(ag.Subject) || ag.Visit == "" {
		t.Errorf("subject %q, visit %q", ag.Subject, ag.Visit)
	}
	if want := "http://" + r.HTTP.ListenAddr() + "/kiosk/withdraw#code=" + ag.Code; ag.WithdrawURL != want {
		t.Errorf("withdraw_url %q, want %q", ag.WithdrawURL, want)
	}
	if !strings.HasPrefix(ag.QRSVG, "<svg ") || !strings.Contains(ag.QRSVG, `<path fill="#000" d="M`) {
		t.Errorf("qr_svg = %.80q…", ag.QRSVG)
	}
	if ag.Expires.Before(start.Add(4*time.Minute)) || ag.Expires.After(start.Add(consent.MaxLifetime)) {
		t.Errorf("token expires %v, want a few minutes after %v", ag.Expires, start)
	}

	v := r.WaitVisit(ag.Visit, agenttest.InState(agent.VisitSaved))
	if !slices.Equal(v.Purposes, []string{"entry-security"}) {
		t.Errorf("saved for %v", v.Purposes)
	}
	recs := r.Records("subject=" + ag.Subject)
	if len(recs) != 1 || len(recs[0].Purposes) != 1 || recs[0].Purposes[0].Purpose != "entry-security" || recs[0].Visit != ag.Visit {
		t.Fatalf("records = %+v, want one tagged entry-security only", recs)
	}
	accepted := r.WaitEvent("consent.accepted", agenttest.OfVisit(store.EventConsentAccepted, ag.Visit))
	if accepted.Actor != kioskKid || accepted.Subject != ag.Subject || !slices.Equal(accepted.Purposes, []string{"entry-security"}) ||
		accepted.Detail["notice"] != r.Notice.Hash() || accepted.Seq != ag.Seq {
		t.Errorf("consent.accepted = %+v", accepted)
	}

	t.Run("the receipt's link goes where the tablet reached the box", func(t *testing.T) {
		body := `{"purposes":["channel-attribution"],"notice":"` + r.Notice.Hash() + `","origin":"https://kiosk.example:8443"}`
		resp, data := r.Do("POST", "/kiosk/api/agree", httpapi.RoleKiosk, strings.NewReader(body))
		var ag httpapi.KioskAgreement
		if resp.StatusCode != http.StatusAccepted || json.Unmarshal(data, &ag) != nil {
			t.Fatalf("agree: %s %s", resp.Status, data)
		}
		if want := "https://kiosk.example:8443/kiosk/withdraw#code=" + ag.Code; ag.WithdrawURL != want {
			t.Errorf("withdraw_url %q, want %q", ag.WithdrawURL, want)
		}
	})

	t.Run("status needs the kiosk role", func(t *testing.T) {
		resp, body := r.Do("GET", "/kiosk/api/visits/"+ag.Visit, "", nil)
		agenttest.CheckError(t, "no token", resp.StatusCode, body, http.StatusUnauthorized, "unauthorized")
		resp, body = r.Do("GET", "/kiosk/api/visits/no-such-visit", httpapi.RoleKiosk, nil)
		agenttest.CheckError(t, "unknown visit", resp.StatusCode, body, http.StatusNotFound, "not-found")
	})
}

// The kiosk refuses what is not consent, and anyone but the kiosk; none of
// it reaches the log.
func TestKioskAgreeRefusals(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	before := len(agenttest.Decisions(r.Events()))
	hash := r.Notice.Hash()
	for _, c := range []struct {
		name, role, body string
		status           int
		reason           string
	}{
		{"no token", "", `{"purposes":["entry-security"],"notice":"` + hash + `"}`, 401, "unauthorized"},
		{"auditor", httpapi.RoleAuditor, `{"purposes":["entry-security"],"notice":"` + hash + `"}`, 403, "forbidden"},
		{"no purpose", httpapi.RoleKiosk, `{"purposes":[],"notice":"` + hash + `"}`, 400, "no-purpose"},
		{"purposes left out", httpapi.RoleKiosk, `{"notice":"` + hash + `"}`, 400, "no-purpose"},
		{"unknown purpose", httpapi.RoleKiosk, `{"purposes":["marketing"],"notice":"` + hash + `"}`, 400, "unknown-purpose"},
		{"purpose twice", httpapi.RoleKiosk, `{"purposes":["entry-security","entry-security"],"notice":"` + hash + `"}`, 400, "bad-request"},
		{"another notice", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + strings.Repeat("ab", 32) + `"}`, 409, "stale-notice"},
		{"not JSON", httpapi.RoleKiosk, `purposes=entry-security`, 400, "bad-request"},
		{"unknown field", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","subject":"me"}`, 400, "bad-request"},
		{"origin with a path", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","origin":"https://kiosk.example/x"}`, 400, "bad-request"},
		{"origin not http", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","origin":"javascript:alert(1)"}`, 400, "bad-request"},
		{"a minor without a guardian", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","minor":true}`, 403, "guardian-required"},
		{"a minor whose guardian did not agree", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + hash + `","minor":true,"guardian":false}`, 403, "guardian-required"},
		{"too large", httpapi.RoleKiosk, `{"purposes":["` + strings.Repeat("x", 5000) + `"]}`, 413, "too-large"},
	} {
		resp, body := r.Do("POST", "/kiosk/api/agree", c.role, strings.NewReader(c.body))
		agenttest.CheckError(t, c.name, resp.StatusCode, body, c.status, c.reason)
	}
	if evs := agenttest.Decisions(r.Events()); len(evs) != before {
		t.Errorf("refused requests were logged:\n%s", agenttest.Dump(evs[before:]))
	}
}

// A visitor under 14 whose guardian agreed in person: the token the kiosk
// signs, and so consent.accepted and its evidence, say minor and guardian.
func TestKioskAgreeMinor(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	body := `{"purposes":["channel-attribution"],"notice":"` + r.Notice.Hash() + `","minor":true,"guardian":true}`
	resp, data := r.Do("POST", "/kiosk/api/agree", httpapi.RoleKiosk, strings.NewReader(body))
	var ag httpapi.KioskAgreement
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(data, &ag) != nil {
		t.Fatalf("agree: %s %s", resp.Status, data)
	}
	if !ag.Minor || !ag.Guardian {
		t.Errorf("agreement says minor %v, guardian %v", ag.Minor, ag.Guardian)
	}
	accepted := r.WaitEvent("consent.accepted", agenttest.OfVisit(store.EventConsentAccepted, ag.Visit))
	if accepted.Detail["minor"] != true || accepted.Detail["guardian"] != true {
		t.Errorf("consent.accepted detail = %v", accepted.Detail)
	}
	ev, err := r.DB.EvidenceByJTI(fmt.Sprint(accepted.Detail["jti"]))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := r.Agent.Verifier.VerifyConsent([]byte(ev.Token))
	if err != nil || !cl.Minor || !cl.Guardian {
		t.Errorf("the evidence token: %+v, %v; want minor and guardian true", cl, err)
	}
}

// Saying no records one consent.declined naming no one, and nothing else.
func TestKioskDecline(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	before := len(agenttest.Decisions(r.Events()))
	resp, body := r.Do("POST", "/kiosk/api/decline", "", nil)
	agenttest.CheckError(t, "no token", resp.StatusCode, body, http.StatusUnauthorized, "unauthorized")

	resp, body = r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, nil)
	var got struct{ Seq uint64 }
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("decline: %s %s", resp.Status, body)
	}
	evs := agenttest.Decisions(r.Events())[before:]
	if len(evs) != 1 {
		t.Fatalf("decline logged %d events:\n%s", len(evs), agenttest.Dump(evs))
	}
	ev := evs[0]
	if ev.Type != store.EventConsentDeclined || ev.Seq != got.Seq || ev.Actor != kioskKid ||
		ev.Subject != "" || ev.Visit != "" || ev.Purposes != nil || ev.Record != "" || ev.Detail["notice"] != r.Notice.Hash() {
		t.Errorf("event = %+v", ev)
	}
	if n, _ := r.DB.RecordCount(); n != 0 {
		t.Errorf("%d records", n)
	}

	t.Run("a visitor under 14 without a guardian: the reason is recorded", func(t *testing.T) {
		before := len(agenttest.Decisions(r.Events()))
		resp, body := r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, strings.NewReader(`{"reason":"guardian-required"}`))
		if resp.StatusCode != 200 {
			t.Fatalf("decline: %s %s", resp.Status, body)
		}
		evs := agenttest.Decisions(r.Events())[before:]
		if len(evs) != 1 || evs[0].Type != store.EventConsentDeclined || evs[0].Reason != "guardian-required" || evs[0].Subject != "" {
			t.Errorf("logged %s", agenttest.Dump(evs))
		}
		resp, body = r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, strings.NewReader(`{"reason":"bored"}`))
		agenttest.CheckError(t, "another reason", resp.StatusCode, body, http.StatusBadRequest, "bad-request")
	})
}

// A withdrawal code erases its subject as a revoke command would, with a
// receipt signed by the device; a code that does not check out changes
// nothing.
func TestKioskWithdraw(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	ag := r.Agree("channel-attribution", "entry-security")
	r.WaitVisit(ag.Visit, agenttest.InState(agent.VisitSaved))
	other := r.SaveOne("v-other", "subj-other", "channel-attribution")

	t.Run("bad codes change nothing", func(t *testing.T) {
		before := len(agenttest.Decisions(r.Events()))
		plain := strings.ReplaceAll(ag.Code, "-", "")
		flipped := []byte(plain) // in the tag's last character
		flipped[len(flipped)-1] ^= 'A' ^ 'B'
		foreign := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid)).Agree("entry-security").Code // another issuer key
		for name, code := range map[string]string{
			"changed tag":     string(flipped),
			"another kiosk's": foreign,
			"subject id":      ag.Subject,
			"empty":           "",
			"garbage":         "<script>",
		} {
			status, body := r.WithdrawCode(code)
			agenttest.CheckError(t, name, status, body, http.StatusBadRequest, "bad-code")
		}
		resp, body := r.Do("POST", "/kiosk/api/withdraw", "", strings.NewReader("code="+ag.Code))
		agenttest.CheckError(t, "form body", resp.StatusCode, body, http.StatusBadRequest, "bad-request")
		if evs := agenttest.Decisions(r.Events()); len(evs) != before {
			t.Errorf("bad codes were acted on:\n%s", agenttest.Dump(evs[before:]))
		}
		if recs := r.Records("subject=" + ag.Subject); len(recs) != 1 {
			t.Errorf("subject has %d records after bad codes", len(recs))
		}
	})

	t.Run("the code erases the subject", func(t *testing.T) {
		status, body := r.WithdrawCode(strings.ToLower(ag.Code)) // as typed on a phone
		var w httpapi.KioskWithdrawal
		if status != 200 || json.Unmarshal(body, &w) != nil {
			t.Fatalf("withdraw: %d %s", status, body)
		}
		rc, err := consent.VerifyReceipt(r.Device.Pub, w.Receipt)
		if err != nil {
			t.Fatalf("receipt does not verify with the device key: %v", err)
		}
		if w.Subject != ag.Subject || w.Erased != 1 || rc.Subject != ag.Subject || rc.Erased != 1 || rc.Seq != w.Seq || !rc.Time.Equal(w.Time) {
			t.Errorf("withdrawal %+v, receipt %+v", w, rc)
		}
		agenttest.CheckReceiptCheckpoint(t, r, rc)
		if recs := r.Records("subject=" + ag.Subject); len(recs) != 0 {
			t.Errorf("subject still has %d records", len(recs))
		}
		if recs := r.Records("subject=subj-other"); len(recs) != 1 || recs[0].ID != other {
			t.Errorf("another subject's records changed: %+v", recs)
		}
		revoked := r.WaitEvent("consent.revoked", func(ev store.Event) bool {
			return ev.Type == store.EventConsentRevoked && ev.Subject == ag.Subject
		})
		if revoked.Actor != "visitor" || revoked.Reason != "withdrawn by the visitor at the kiosk" || revoked.Seq != w.Seq {
			t.Errorf("consent.revoked = %+v", revoked)
		}
		erased := r.WaitEvent("record.erased", func(ev store.Event) bool {
			return ev.Type == store.EventRecordErased && ev.Subject == ag.Subject
		})
		if erased.Actor != "visitor" || !slices.Equal(erased.Purposes, []string{"channel-attribution", "entry-security"}) {
			t.Errorf("record.erased = %+v", erased)
		}
		r.WaitVisit(ag.Visit, agenttest.InState(agent.VisitWithdrawn))
	})

	t.Run("twice is fine", func(t *testing.T) {
		status, body := r.WithdrawCode(ag.Code)
		var w httpapi.KioskWithdrawal
		if status != 200 || json.Unmarshal(body, &w) != nil || w.Erased != 0 {
			t.Errorf("second withdrawal: %d %s", status, body)
		}
	})
}

// The status follows each kiosk visit through the queue at the camera: how
// many are ahead, when its window opens, and a withdrawal that closes it.
func TestKioskVisitStatus(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour }, agenttest.WithKiosk(kioskKid))
	// Nobody in view: each window stays open until its visitor withdraws.
	v1 := r.Agree("channel-attribution")
	r.WaitVisit(v1.Visit, agenttest.InState(agent.VisitOpen))
	v2 := r.Agree("channel-attribution")
	v3 := r.Agree("entry-security")
	if v2.Waiting != 1 || v3.Waiting != 2 {
		t.Errorf("waiting %d and %d, want 1 and 2", v2.Waiting, v3.Waiting)
	}
	if s := r.WaitVisit(v3.Visit, agenttest.InState(agent.VisitWaiting)); s.Ahead != 2 {
		t.Errorf("third visit: %d ahead, want 2", s.Ahead)
	}

	if status, body := r.WithdrawCode(v1.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.WaitVisit(v1.Visit, agenttest.InState(agent.VisitWithdrawn))
	r.WaitVisit(v2.Visit, agenttest.InState(agent.VisitOpen))
	if s := r.WaitVisit(v3.Visit, agenttest.InState(agent.VisitWaiting)); s.Ahead != 1 {
		t.Errorf("third visit: %d ahead, want 1", s.Ahead)
	}
	skipped := r.WaitEvent("capture.skipped", agenttest.OfVisit(store.EventCaptureSkipped, v1.Visit))
	if skipped.Reason != "revoked" {
		t.Errorf("first visit skipped as %q", skipped.Reason)
	}

	if status, body := r.WithdrawCode(v2.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.WaitVisit(v3.Visit, agenttest.InState(agent.VisitOpen))
	if status, body := r.WithdrawCode(v3.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.WaitVisit(v3.Visit, agenttest.InState(agent.VisitWithdrawn))
	if slices.ContainsFunc(r.Events(), agenttest.IsType(store.EventCaptureSaved)) {
		t.Error("a capture saved with nobody in view")
	}
}
