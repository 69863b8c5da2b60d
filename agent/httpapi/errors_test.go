package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// Every error is answered from one table: its status and reason; a failure
// of the box is logged once and answered without the inside of the error.
func TestError(t *testing.T) {
	secret := errors.New("bolt: page 12 of /var/lib/consentcam/consentcam.db")
	for _, c := range []struct {
		name   string
		err    error
		status int
		reason string
		logged bool
	}{
		{"failure", fmt.Errorf("sign: %w", secret), 500, httpapi.ReasonInternal, true},
		{"store failure", fmt.Errorf("%w: %w", agent.ErrUnavailable, secret), 503, httpapi.ReasonUnavailable, true},
		{"queue full", agent.ErrQueueFull, 503, httpapi.ReasonQueueFull, false},
		{"stopping", agent.ErrStopped, 503, httpapi.ReasonStopping, false},
		{"no record", fmt.Errorf("record x: %w", store.ErrNotFound), 404, httpapi.ReasonNotFound, false},
		{"purpose", fmt.Errorf("image: %w", store.ErrPurpose), 403, httpapi.ReasonPurposeNotAllowed, false},
		{"refusal", &consent.Error{Reason: consent.ReasonExpired, Err: errors.New("expired at …")}, 403, "expired", false},
		{"replayed", &consent.Error{Reason: consent.ReasonReplayed}, 409, "replayed", false},
		{"too large", &consent.Error{Reason: consent.ReasonTooLarge}, 413, "too-large", false},
		{"handler's own", &httpapi.Error{Status: 400, Reason: "no-purpose", Msg: "tick one"}, 400, "no-purpose", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs agenttest.LogBuffer
			s := httpapi.NewServer()
			s.Logger = logs.Logger()
			w := httptest.NewRecorder()
			s.Error(w, httptest.NewRequest("GET", "/v1/somewhere", nil), c.err)
			agenttest.CheckError(t, c.name, w.Code, w.Body.Bytes(), c.status, c.reason)
			if bytes.Contains(w.Body.Bytes(), []byte("bolt")) {
				t.Errorf("the answer holds the inside of the error: %s", w.Body)
			}
			if n := strings.Count(logs.String(), "http request failed"); n != map[bool]int{true: 1}[c.logged] {
				t.Errorf("logged %d times: %s", n, logs.String())
			}
			if c.logged && !strings.Contains(logs.String(), "/v1/somewhere") {
				t.Errorf("the log does not name the request: %s", logs.String())
			}
		})
	}
}

// A store that cannot write (a full disk) gets 503 unavailable, never a
// 2xx for something not recorded, and the failure is logged.
func TestStoreFailureUnavailable(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour },
		agenttest.WithKiosk(kioskKid), agenttest.WithLogger(logs.Logger()))
	rec := r.SaveOne("v-0", "s-0", "channel-attribution")
	before := len(r.Events())
	for _, c := range []struct {
		method, path, role, body string
	}{
		{"POST", "/v1/visits", httpapi.RoleKiosk, r.ConsentToken("v-1", "s-1", "channel-attribution")},
		{"POST", "/v1/visits", httpapi.RoleKiosk, "not a token"},
		{"GET", "/v1/records/" + rec + "/image?purpose=channel-attribution", httpapi.RoleOperator, ""},
		{"POST", "/kiosk/api/agree", httpapi.RoleKiosk, `{"purposes":["entry-security"],"notice":"` + r.Notice.Hash() + `"}`},
		{"POST", "/kiosk/api/decline", httpapi.RoleKiosk, ""},
	} {
		start := len(logs.String())
		r.Faults.FailNext(1)
		resp, body := r.Do(c.method, c.path, c.role, strings.NewReader(c.body))
		agenttest.CheckError(t, c.method+" "+c.path, resp.StatusCode, body, http.StatusServiceUnavailable, httpapi.ReasonUnavailable)
		if logged := logs.String()[start:]; !strings.Contains(logged, agenttest.ErrInjected.Error()) {
			t.Errorf("%s %s: the failure is not logged:\n%s", c.method, c.path, logged)
		}
	}
	if evs := r.Events(); len(evs) != before {
		t.Errorf("events recorded by failed requests:\n%s", agenttest.Dump(evs[before:]))
	}
}
