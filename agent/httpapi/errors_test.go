package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
)

// A failure of the box is answered 500 with a generic message, never the
// inside of the error, and logged once with the request it broke.
func TestInternalErrorIsGeneric(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour }, agenttest.WithLogger(logs.Logger()))
	rec := r.SaveOne("v-0", "s-0", "channel-attribution")
	for _, c := range []struct {
		method, path, role, body string
	}{
		{"POST", "/v1/visits", httpapi.RoleKiosk, r.ConsentToken("v-1", "s-1", "channel-attribution")},
		{"GET", "/v1/records/" + rec + "/image?purpose=channel-attribution", httpapi.RoleOperator, ""},
	} {
		start := len(logs.String())
		r.Faults.FailNext(1)
		resp, body := r.Do(c.method, c.path, c.role, strings.NewReader(c.body))
		agenttest.CheckError(t, c.path, resp.StatusCode, body, http.StatusInternalServerError, httpapi.ReasonInternal)
		if bytes.Contains(body, []byte(agenttest.ErrInjected.Error())) {
			t.Errorf("%s %s: the answer holds the inside of the error: %s", c.method, c.path, body)
		}
		logged := logs.String()[start:]
		if n := strings.Count(logged, "http request failed"); n != 1 || !strings.Contains(logged, strings.Split(c.path, "?")[0]) ||
			!strings.Contains(logged, agenttest.ErrInjected.Error()) {
			t.Errorf("%s %s: logged %d times; log:\n%s", c.method, c.path, n, logged)
		}
	}
}
