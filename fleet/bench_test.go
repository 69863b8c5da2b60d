package fleet_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
	"github.com/consentcam/consentcam/fleet/fleettest"
	"github.com/consentcam/consentcam/internal/testenv"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

var (
	benchBoxes    = flag.Int("fleet.boxes", 1000, "boxes the load generator plays")
	benchRate     = flag.Int("fleet.rate", 6000, "events a second the load generator publishes")
	benchDuration = flag.Duration("fleet.duration", time.Minute, "how long the load generator publishes")
)

// perRound is how many events a simulated box logs before it signs a
// checkpoint: nine visits, then the checkpoint event.
const perRound = 9

// BenchmarkFleet plays -fleet.boxes boxes (each its own device key, valid
// events, signed checkpoints) into a real Mosquitto at -fleet.rate events a
// second for -fleet.duration, with the monitor on a real PostgreSQL, and
// reports the rate the monitor verified at, the p99 from an event's publish
// to its verification (for the events the checkpoint after them covers;
// a checkpoint event waits for the box's next checkpoint) and PostgreSQL's
// size per million events. Run it once: -benchtime 1x (docs/BENCHMARKS.md).
func BenchmarkFleet(b *testing.B) {
	for range b.N {
		benchFleet(b)
	}
}

func benchFleet(b *testing.B) {
	broker := testenv.StartMosquitto(b)
	pg := testenv.StartPostgres(b)
	keys := filepath.Join(b.TempDir(), "cameras")
	boxes := make([]*fleettest.Box, *benchBoxes)
	published := make([][]time.Time, len(boxes)) // by box, by seq
	index := map[string]int{}
	for i := range boxes {
		boxes[i] = fleettest.NewBox(fmt.Sprintf("site-%03d", i/4), fmt.Sprintf("camera-%d", i%4))
		if err := boxes[i].WriteKey(keys); err != nil {
			b.Fatal(err)
		}
		index[boxes[i].Site+"/"+boxes[i].Camera] = i
	}
	cfg, err := fleet.ParseConfig("bench", []byte(fmt.Sprintf(`
mqtt: {url: %s, client_id: fleet-bench}
postgres: {url: "%s"}
boxes: {keys_dir: %s, checkpoint_interval: 1m}
`, broker.URL(), pg.URL(), keys)))
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var delays []time.Duration
	verified := 0
	var lastVerified time.Time
	m := fleet.New(cfg)
	m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m.OnVerified = func(site, camera string, from, to uint64) {
		now := time.Now()
		i := index[site+"/"+camera]
		mu.Lock()
		defer mu.Unlock()
		for seq := from; seq < to; seq++ {
			// seq 0 is agent.started; every perRound+1 after it, a checkpoint.
			if seq > 0 && seq%(perRound+1) == 0 {
				continue
			}
			delays = append(delays, now.Sub(published[i][seq]))
		}
		verified += int(to - from)
		lastVerified = now
	}
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	sizeBefore := pg.DatabaseSize()
	b.Logf("load average before: %s", loadAverage())

	const publishers = 4
	var wg sync.WaitGroup
	var sent sync.Map
	start := time.Now()
	deadline := start.Add(*benchDuration)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(fmt.Sprintf("load-%d", p)).
				SetMaxResumePubInFlight(1000))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Errorf("load generator: connect: %v", tok.Error())
				return
			}
			defer c.Disconnect(100)
			var mine []int
			for i := p; i < len(boxes); i += publishers {
				mine = append(mine, i)
			}
			var toks []mqtt.Token
			pub := func(i int, topic string, payload []byte) {
				toks = append(toks, c.Publish(fmt.Sprintf("consentcam/v1/%s/%s/%s", boxes[i].Site, boxes[i].Camera, topic), 1, false, payload))
			}
			// Each box starts, then logs rounds of visits and a checkpoint,
			// at the rate asked for.
			events, next := 0, 0
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for now := range tick.C {
				if now.After(deadline) {
					break
				}
				due := int(now.Sub(start).Seconds() * float64(*benchRate) / publishers)
				for events < due {
					i := mine[next%len(mine)]
					next++
					bx := boxes[i]
					mu.Lock()
					if bx.Size() == 0 {
						published[i] = append(published[i], time.Now())
						mu.Unlock()
						pub(i, "available", []byte("online"))
						pub(i, "audit", bx.Started(fleettest.Settings(time.Minute)))
						events++
						mu.Lock()
					}
					mu.Unlock()
					for range perRound {
						ev := bx.Append(fleettest.Declined(bx.Size()))
						mu.Lock()
						published[i] = append(published[i], time.Now())
						mu.Unlock()
						pub(i, "audit", ev)
					}
					cp, ev := bx.Checkpoint()
					mu.Lock()
					published[i] = append(published[i], time.Now())
					mu.Unlock()
					pub(i, "audit", ev)
					pub(i, "checkpoint", cp)
					events += perRound + 1
				}
				for _, t := range toks {
					t.Wait()
				}
				toks = toks[:0]
			}
			sent.Store(p, events)
		}()
	}
	wg.Wait()
	total := 0
	sent.Range(func(_, v any) bool { total += v.(int); return true })
	publishedFor := time.Since(start)
	// The last checkpoint event of each box is covered by none.
	want := total - len(boxes)
	if !testenv.WaitUntil(5*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return verified >= want
	}) {
		b.Fatalf("verified %d of %d events", verified, want)
	}
	mu.Lock()
	elapsed := lastVerified.Sub(start)
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[len(delays)*99/100]
	mu.Unlock()
	sizeAfter := pg.DatabaseSize()
	b.Logf("load average after: %s", loadAverage())
	b.Logf("%d boxes, %d events published in %v, all verified after %v; p50 %v, p99 %v; PostgreSQL grew %d MB",
		len(boxes), total, publishedFor.Round(time.Millisecond), elapsed.Round(time.Millisecond), p50, p99, (sizeAfter-sizeBefore)>>20)
	b.ReportMetric(float64(verified)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
	b.ReportMetric(float64(sizeAfter-sizeBefore)/float64(total)*1e6/(1<<20), "pg-MB/Mevents")
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return string(data[:len(data)-1])
}
