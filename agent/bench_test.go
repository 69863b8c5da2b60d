package agent_test

import (
	"testing"
	"time"

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
		r := newRig(b, time.Hour, nil, withBroker)
		r.sub.WaitAudit(r.db.Size(), 15*time.Second)
		r.broker.Stop()
		for done := 0; done < backlog; done += 1000 {
			err := r.db.Update(func(tx *store.Tx) error {
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
		n := r.db.Size()
		b.StartTimer()
		r.broker.Start()
		r.sub.WaitAudit(n, 5*time.Minute)
		b.StopTimer()
		// From the first to the last of the backlog reaching the
		// subscriber: the reconnection backoff is not part of the rate.
		first, last := r.sub.Arrived(n-backlog), r.sub.Arrived(n-1)
		b.ReportMetric(float64(backlog-1)/last.Sub(first).Seconds(), "events/s")
		r.sub.CheckArrivalOrder()
		r.close()
	}
}
