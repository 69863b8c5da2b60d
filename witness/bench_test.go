package witness_test

import (
	"fmt"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// BenchmarkWitness times pushing one checkpoint (10 events after the last
// one) to real omniwitnesses on loopback, in parallel: what witnessing adds
// per checkpoint interval, off the capture and revoke paths. It reports the
// add-checkpoint requests each witness got per push (1: one round trip).
func BenchmarkWitness(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("witnesses=%d", n), func(b *testing.B) {
			var ws []*testenv.Omniwitness
			for i := range n {
				ws = append(ws, startWitness(b, fmt.Sprintf("witness.example/w%d", i)))
			}
			bx := newBox(b)
			c := bx.client(0, ws...)
			push(b, c, bx.checkpoint(10))
			requests := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cp := bx.checkpoint(10)
				b.StartTimer()
				res := push(b, c, cp)
				for _, st := range res.Statuses {
					if st.Err != nil {
						b.Fatal(st.Err)
					}
					requests += st.Requests
				}
			}
			b.ReportMetric(float64(requests)/float64(b.N*n), "requests/witness")
		})
	}
}
