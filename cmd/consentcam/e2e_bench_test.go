package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// latencyRuns is how many visits BenchmarkLatency times (at least 50 for a
// p99 worth quoting).
const latencyRuns = 100

// BenchmarkLatency times, end to end through a real Mosquitto and a real
// consentcam run on a clip of a lone visitor (YuNet, detect_fps 5, the
// default): from publishing a consent token to capture.saved arriving on
// …/audit, and from publishing a revoke for that visit to its receipt
// arriving on …/revoke/receipt; without a witness, and with one (a real
// omniwitness cosigning every checkpoint, off the capture and revoke
// path). Run it with -benchtime 1x.
func BenchmarkLatency(b *testing.B) {
	for _, witnessed := range []bool{false, true} {
		b.Run(fmt.Sprintf("witness=%v", witnessed), func(b *testing.B) { latency(b, witnessed) })
	}
}

func latency(b *testing.B, witnessed bool) {
	box := newBox(b, boxConfig{scene: "visitor", detectFPS: 5, witnessed: witnessed})
	var toSaved, toReceipt []time.Duration
	seen := 0
	for i := 0; i < max(b.N, latencyRuns); i++ {
		visit := fmt.Sprintf("bench-%d", i)
		tok := box.consentToken(visit, "subj-bench", "channel-attribution")
		start := time.Now()
		box.sub.Publish("consent", tok)
		saved := box.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, visit))
		toSaved = append(toSaved, box.sub.Arrived(saved.Seq).Sub(start))

		box.waitEvent("window.closed", eventOf(store.EventWindowClosed, visit))
		rev := box.revokeToken("visit", visit)
		start = time.Now()
		box.sub.Publish("revoke", rev)
		msgs := box.sub.WaitTopic("revoke/receipt", seen+1)
		times := box.sub.TopicTimes("revoke/receipt")
		var rc struct{ Visit string }
		json.Unmarshal(msgs[seen], &rc)
		if rc.Visit != visit {
			b.Fatalf("receipt for %q, want %q", rc.Visit, visit)
		}
		toReceipt = append(toReceipt, times[seen].Sub(start))
		seen++
	}
	report(b, "consent-to-saved", toSaved)
	report(b, "revoke-to-receipt", toReceipt)
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, name+"-median-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, name+"-p99-ms")
	b.Logf("%s over %d runs: median %v, p99 %v, min %v, max %v", name, len(d), pct(0.5), pct(0.99), d[0], d[len(d)-1])
}
