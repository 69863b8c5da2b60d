package mqttbus_test

import (
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/store"
)

// backlog is the number of audit events BenchmarkOutboxDrain queues.
const backlog = 10000

// BenchmarkOutboxDrain measures how fast the agent empties an outbox of
// 10,000 audit events into a real Mosquitto once the broker comes back, up
// to the moment a subscriber has every one of them.
func BenchmarkOutboxDrain(b *testing.B) {
	for range b.N {
		b.StopTimer()
		r := agenttest.New(b, time.Hour, nil, agenttest.WithBroker)
		r.Sub.WaitAudit(r.DB.Size(), 15*time.Second)
		r.Broker.Stop()
		for done := 0; done < backlog; done += 1000 {
			err := r.DB.Update(func(tx *store.Tx) error {
				for range 1000 {
					if err := tx.Append(&store.Event{Type: store.EventConsentRejected, Reason: "malformed"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		n := r.DB.Size()
		b.StartTimer()
		r.Broker.Start()
		r.Sub.WaitAudit(n, 5*time.Minute)
		b.StopTimer()
		// From the first to the last of the backlog reaching the
		// subscriber: the reconnection backoff is not part of the rate.
		first, last := r.Sub.Arrived(n-backlog), r.Sub.Arrived(n-1)
		b.ReportMetric(float64(backlog-1)/last.Sub(first).Seconds(), "events/s")
		r.Sub.CheckArrivalOrder()
		r.Close()
	}
}
