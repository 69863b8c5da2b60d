package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/store"
)

// request sends a request with extra headers and returns the status, the
// body and the headers of the answer.
func request(t *testing.T, r *agenttest.Rig, method, path, role string, body string, header map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.HTTP.ListenAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+r.Tokens[role])
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), resp.Header
}

// A page served under another name (DNS rebinding: evil.example resolving
// to the box) is refused; IP addresses, localhost and the configured names
// pass. Every answer is nosniff.
func TestHostAllowList(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.HTTP.Hosts = []string{"kiosk.example"} })
	for host, want := range map[string]int{
		"evil.example":        http.StatusMisdirectedRequest,
		"evil.example:8765":   http.StatusMisdirectedRequest,
		"127.0.0.1:8765":      200,
		"[::1]:8765":          200,
		"192.168.1.20":        200,
		"localhost:8765":      200,
		"kiosk.example":       200,
		"KIOSK.example.:8443": 200,
	} {
		code, body, hdr := request(t, r, "GET", "/v1/notice", "", "", map[string]string{"Host": host})
		if code != want {
			t.Errorf("Host %s: %d %s, want %d", host, code, body, want)
		}
		if want != 200 {
			agenttest.CheckError(t, host, code, body, want, httpapi.ReasonUnknownHost)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("Host %s: answer without nosniff", host)
		}
	}
	for _, path := range []string{"/healthz", "/v1/audit", "/kiosk/static/none.js", "/nowhere"} {
		if _, _, hdr := request(t, r, "GET", path, httpapi.RoleAuditor, "", nil); hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: answer without nosniff", path)
		}
	}
}

// The routes that write to the log take a burst, then a steady rate, per
// client address: past it, 429 with Retry-After, and nothing is written.
func TestRateLimited(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) {
		r.Agent.Window = time.Hour
		r.HTTP.RateLimit = httpapi.RateLimit{PerMinute: 1, Burst: 3}
	}, agenttest.WithKiosk(kioskKid))
	for i := range 3 {
		if resp, body := r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, nil); resp.StatusCode != 200 {
			t.Fatalf("decline %d: %s %s", i, resp.Status, body)
		}
	}
	before := len(r.Events())
	code, body, hdr := request(t, r, "POST", "/kiosk/api/decline", httpapi.RoleKiosk, "", nil)
	agenttest.CheckError(t, "over the limit", code, body, http.StatusTooManyRequests, httpapi.ReasonRateLimited)
	if hdr.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	resp, body := r.Do("POST", "/v1/visits", httpapi.RoleKiosk, strings.NewReader(r.ConsentToken("v", "s", "channel-attribution")))
	agenttest.CheckError(t, "POST /v1/visits over the limit", resp.StatusCode, body, http.StatusTooManyRequests, httpapi.ReasonRateLimited)
	if evs := r.Events(); len(evs) != before {
		t.Errorf("requests over the limit were logged:\n%s", agenttest.Dump(evs[before:]))
	}
	// Reading is not limited.
	for range 5 {
		if resp, _ := r.Do("GET", "/v1/notice", "", nil); resp.StatusCode != 200 {
			t.Errorf("GET /v1/notice: %s", resp.Status)
		}
	}
}

// A withdrawal code sent again and again writes nothing once nothing is
// left to erase, and is limited per code.
func TestWithdrawAgainWritesNothing(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	ag := r.Agree("channel-attribution")
	r.WaitVisit(ag.Visit, agenttest.InState("saved"))
	if status, body := r.WithdrawCode(ag.Code); status != 200 {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	r.WaitEvent("consent.revoked", agenttest.IsType(store.EventConsentRevoked))
	before := len(r.Events())
	for i := range 5 {
		status, body := r.WithdrawCode(ag.Code)
		var w httpapi.KioskWithdrawal
		if status != 200 || json.Unmarshal(body, &w) != nil || w.Erased != 0 || w.Receipt != nil || w.Subject != ag.Subject {
			t.Fatalf("withdrawal %d again: %d %s; want 200, nothing erased, no receipt", i+2, status, body)
		}
	}
	if evs := r.Events(); len(evs) != before {
		t.Errorf("withdrawing again wrote:\n%s", agenttest.Dump(evs[before:]))
	}
	status, body := r.WithdrawCode(ag.Code) // the 7th in a minute
	agenttest.CheckError(t, "the code again and again", status, body, http.StatusTooManyRequests, httpapi.ReasonRateLimited)
}

// The kiosk's POSTs take JSON only, and no page of another site may send
// them: a cross-site form posting a known withdrawal code changes nothing.
func TestKioskCrossSite(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	ag := r.Agree("channel-attribution")
	r.WaitVisit(ag.Visit, agenttest.InState("saved"))
	before := len(r.Events())
	body := `{"code":"` + ag.Code + `"}`
	for name, c := range map[string]struct {
		header map[string]string
		status int
		reason string
	}{
		"a form's text/plain":         {map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType, httpapi.ReasonBadRequest},
		"no content type":             {nil, http.StatusUnsupportedMediaType, httpapi.ReasonBadRequest},
		"JSON from another site":      {map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, http.StatusForbidden, httpapi.ReasonCrossOrigin},
		"JSON from a look-alike":      {map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1.evil.example"}, http.StatusForbidden, httpapi.ReasonCrossOrigin},
		"an unparsable Origin (null)": {map[string]string{"Content-Type": "application/json", "Origin": "null"}, http.StatusForbidden, httpapi.ReasonCrossOrigin},
	} {
		code, got, _ := request(t, r, "POST", "/kiosk/api/withdraw", "", body, c.header)
		agenttest.CheckError(t, name, code, got, c.status, c.reason)
	}
	code, got, _ := request(t, r, "POST", "/kiosk/api/decline", httpapi.RoleKiosk, "", map[string]string{"Origin": "https://evil.example"})
	agenttest.CheckError(t, "decline from another site", code, got, http.StatusForbidden, httpapi.ReasonCrossOrigin)
	if evs := r.Events(); len(evs) != before {
		t.Errorf("cross-site requests changed the log:\n%s", agenttest.Dump(evs[before:]))
	}
	// The box's own page: the Origin is the box.
	code, got, _ = request(t, r, "POST", "/kiosk/api/withdraw", "", body,
		map[string]string{"Content-Type": "application/json", "Origin": "http://" + r.HTTP.ListenAddr()})
	if code != 200 {
		t.Errorf("withdraw from the box's own page: %d %s", code, got)
	}
}

// after=2^64-1 does not wrap around to the start of the log.
func TestAuditAfterLast(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	resp, body := r.Do("GET", "/v1/audit?after=18446744073709551615", httpapi.RoleAuditor, nil)
	agenttest.CheckError(t, "after=max", resp.StatusCode, body, http.StatusBadRequest, httpapi.ReasonBadRequest)
	resp, body = r.Do("GET", "/v1/audit?after=18446744073709551614", httpapi.RoleAuditor, nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("after=max-1: %s %q, want nothing", resp.Status, body)
	}
}

// /metrics tells whether someone is in front of the camera now: only a
// bearer token of role metrics, auditor or operator reads it.
func TestMetricsNeedRole(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	resp, body := r.Do("GET", "/metrics", "", nil)
	agenttest.CheckError(t, "no token", resp.StatusCode, body, http.StatusUnauthorized, httpapi.ReasonUnauthorized)
	resp, body = r.Do("GET", "/metrics", httpapi.RoleKiosk, nil)
	agenttest.CheckError(t, "kiosk", resp.StatusCode, body, http.StatusForbidden, httpapi.ReasonForbidden)
	for _, role := range []string{httpapi.RoleMetrics, httpapi.RoleAuditor, httpapi.RoleOperator} {
		if resp, body := r.Do("GET", "/metrics", role, nil); resp.StatusCode != 200 || !bytes.Contains(body, []byte("consentcam_windows_open")) {
			t.Errorf("role %s: %s", role, resp.Status)
		}
	}
}
