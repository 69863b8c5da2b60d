package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
)

// logBytes is the size of the log: its events' JSON.
func logBytes(tb testing.TB, r *agenttest.Rig) (events, bytes int) {
	raw, err := r.DB.Events(0, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ev := range raw {
		bytes += len(ev)
	}
	return len(raw), bytes
}

// BenchmarkLogGrowth measures what one request of each kind an attacker
// can send writes to the log (events and bytes), with the rate limit off;
// docs/SECURITY.md turns these into the worst growth an hour under the
// limits. Refusals of unverified tokens are counted per interval: their
// figure is per interval, whatever the number sent.
func BenchmarkLogGrowth(b *testing.B) {
	open := func(b *testing.B) *agenttest.Rig {
		return agenttest.New(b, time.Hour, func(r *agenttest.Rig) {
			r.HTTP.RateLimit = httpapi.RateLimit{PerMinute: 1 << 20, Burst: 1 << 20}
			r.Agent.RefusalInterval = time.Hour // flushed at Stop
		}, agenttest.WithKiosk(kioskKid))
	}
	measure := func(b *testing.B, r *agenttest.Rig, send func(i int)) {
		e0, b0 := logBytes(b, r)
		b.ResetTimer()
		for i := range b.N {
			send(i)
		}
		b.StopTimer()
		r.Stop() // the counted refusals and agent.stopped, then the final checkpoint
		e1, b1 := logBytes(b, r)
		e1, b1 = e1-2, b1-stopBytes(b, r) // not the stop's own events
		b.ReportMetric(float64(e1-e0)/float64(b.N), "events/req")
		b.ReportMetric(float64(b1-b0)/float64(b.N), "log-B/req")
		r.Start() // for the rig's own close
	}
	b.Run("kiosk-agree", func(b *testing.B) {
		r := open(b)
		body := fmt.Sprintf(`{"purposes":["channel-attribution","entry-security"],"notice":%q}`, r.Notice.Hash())
		measure(b, r, func(int) {
			// Accepted, and queued or (the queue full) skipped at once.
			if resp, data := r.Do("POST", "/kiosk/api/agree", httpapi.RoleKiosk, strings.NewReader(body)); resp.StatusCode != 202 && resp.StatusCode != 503 {
				b.Fatalf("agree: %s %s", resp.Status, data)
			}
		})
	})
	b.Run("kiosk-decline", func(b *testing.B) {
		r := open(b)
		measure(b, r, func(int) { r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, nil) })
	})
	b.Run("kiosk-garbage-token", func(b *testing.B) {
		r := open(b)
		measure(b, r, func(i int) {
			r.Do("POST", "/v1/visits", httpapi.RoleKiosk, strings.NewReader(fmt.Sprintf("garbage-%d", i)))
		})
	})
	b.Run("withdraw-bad-code", func(b *testing.B) {
		r := open(b)
		measure(b, r, func(i int) {
			r.WithdrawCode(fmt.Sprintf("%032d", i))
		})
	})
	b.Run("withdraw-code-again", func(b *testing.B) {
		r := open(b)
		r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
		ag := r.Agree("channel-attribution")
		r.WaitVisit(ag.Visit, agenttest.InState("saved"))
		r.WithdrawCode(ag.Code)
		measure(b, r, func(int) { r.WithdrawCode(ag.Code) })
	})
	b.Run("operator-image-read", func(b *testing.B) {
		r := open(b)
		rec := r.SaveOne("v-1", "s-1", "channel-attribution")
		measure(b, r, func(int) {
			r.Do("GET", "/v1/records/"+rec+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
		})
	})
}

// stopBytes is the size of the log's last two events (agent.stopped and
// the final checkpoint).
func stopBytes(tb testing.TB, r *agenttest.Rig) int {
	raw, err := r.DB.Events(r.DB.Size()-2, 2)
	if err != nil {
		tb.Fatal(err)
	}
	var ev struct{ Type string }
	json.Unmarshal(raw[0], &ev)
	if ev.Type != "agent.stopped" {
		tb.Fatalf("the log ends with %s, not agent.stopped", ev.Type)
	}
	return len(raw[0]) + len(raw[1])
}
