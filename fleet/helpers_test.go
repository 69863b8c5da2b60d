package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
	"github.com/consentcam/consentcam/fleet/fleettest"
	"github.com/consentcam/consentcam/internal/testenv"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const auditorToken = "fleet-auditor-token-0123456789"

// env is a central Mosquitto, a PostgreSQL, and a monitor on them.
type env struct {
	t       *testing.T
	broker  *testenv.Mosquitto
	pg      *testenv.Postgres
	keys    string
	config  fleet.Config
	mon     *fleet.Monitor
	srv     *httptest.Server
	pub     mqtt.Client
	logMu   sync.Mutex
	logText strings.Builder
}

// newEnv starts the broker and the database, and the monitor with the
// alarms' times short enough for a test.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, broker: testenv.StartMosquitto(t), pg: testenv.StartPostgres(t), keys: filepath.Join(t.TempDir(), "cameras")}
	if err := os.MkdirAll(e.keys, 0o755); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "auditor.token")
	if err := os.WriteFile(tokenFile, []byte(auditorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := fleet.ParseConfig("test", []byte(fmt.Sprintf(`
mqtt: {url: %s, client_id: fleet-test}
postgres: {url: "%s"}
http: {tokens: [{role: auditor, token_file: %s}]}
boxes: {keys_dir: %s, checkpoint_interval: 1s, tolerance: 100ms}
alarms: {gap_after: 1s, silence_intervals: 3, hold: 2s}
`, e.broker.URL(), e.pg.URL(), tokenFile, e.keys)))
	if err != nil {
		t.Fatal(err)
	}
	e.config = cfg
	e.start()
	opts := mqtt.NewClientOptions().AddBroker(e.broker.URL()).SetClientID("boxes").SetAutoReconnect(true)
	e.pub = mqtt.NewClient(opts)
	if tok := e.pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { e.pub.Disconnect(50) })
	return e
}

type logWriter struct{ e *env }

func (w logWriter) Write(p []byte) (int, error) {
	w.e.logMu.Lock()
	defer w.e.logMu.Unlock()
	return w.e.logText.Write(p)
}

// start opens a monitor (again).
func (e *env) start() {
	e.t.Helper()
	m := fleet.New(e.config)
	m.Logger = slog.New(slog.NewTextHandler(logWriter{e}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m.Tick = 50 * time.Millisecond
	if err := m.Open(context.Background()); err != nil {
		e.t.Fatalf("open monitor: %v", err)
	}
	e.mon = m
	e.srv = httptest.NewServer(m.Handler())
	e.t.Cleanup(func() {
		e.stop()
		if e.t.Failed() {
			e.logMu.Lock()
			e.t.Logf("monitor log:\n%s", e.logText.String())
			e.logMu.Unlock()
		}
	})
}

func (e *env) stop() {
	if e.mon == nil {
		return
	}
	e.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.mon.Close(ctx); err != nil {
		e.t.Errorf("close monitor: %v", err)
	}
	e.mon = nil
}

// box makes a simulated box whose key the monitor knows.
func (e *env) box(site, camera string) *fleettest.Box {
	e.t.Helper()
	b := fleettest.NewBox(site, camera)
	if err := b.WriteKey(e.keys); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// publish sends a payload on a box's topic, QoS 1.
func (e *env) publish(b *fleettest.Box, topic string, payload []byte) {
	e.t.Helper()
	e.publishTo(fmt.Sprintf("consentcam/v1/%s/%s/%s", b.Site, b.Camera, topic), payload)
}

func (e *env) publishTo(topic string, payload []byte) {
	e.t.Helper()
	tok := e.pub.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		e.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// run logs and publishes a start, n declined visits and a checkpoint.
func (e *env) run(b *fleettest.Box, n int) {
	e.t.Helper()
	e.publish(b, "available", []byte("online"))
	e.publish(b, "audit", b.Started(fleettest.Settings(time.Second)))
	e.visits(b, n)
}

// visits publishes n declined visits and a checkpoint.
func (e *env) visits(b *fleettest.Box, n int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		e.publish(b, "audit", b.Append(fleettest.Declined(b.Size())))
	}
	e.checkpoint(b)
}

func (e *env) checkpoint(b *fleettest.Box) {
	e.t.Helper()
	cp, ev := b.Checkpoint()
	e.publish(b, "audit", ev)
	e.publish(b, "checkpoint", cp)
}

// get sends a GET to the monitor, as the auditor when auth is true.
func (e *env) get(path string, auth bool) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+auditorToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// boxView returns the monitor's view of a box (nil when it has none).
func (e *env) boxView(site, camera string) *fleet.BoxView {
	e.t.Helper()
	for _, v := range e.mon.Boxes() {
		if v.Site == site && v.Camera == camera {
			return &v
		}
	}
	return nil
}

// waitSize waits until a box's verified log has size events.
func (e *env) waitSize(b *fleettest.Box, size uint64) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%s/%s verified to size %d", b.Site, b.Camera, size), func() bool {
		v := e.boxView(b.Site, b.Camera)
		return v != nil && v.Size >= size
	})
}

// alarm returns the active alarm of a kind of a box, nil if none.
func (e *env) alarm(site, camera, kind string) *fleet.Alarm {
	for _, a := range e.mon.Alarms() {
		if a.Site == site && a.Camera == camera && a.Kind == kind {
			return &a
		}
	}
	return nil
}

func (e *env) waitAlarm(site, camera, kind string) *fleet.Alarm {
	e.t.Helper()
	var a *fleet.Alarm
	e.waitFor(fmt.Sprintf("a %s alarm of %s/%s", kind, site, camera), func() bool {
		a = e.alarm(site, camera, kind)
		return a != nil
	})
	return a
}

func (e *env) waitCleared(site, camera, kind string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("the %s alarm of %s/%s cleared", kind, site, camera), func() bool {
		return e.alarm(site, camera, kind) == nil
	})
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	if !testenv.WaitUntil(20*time.Second, cond) {
		alarms, _ := json.MarshalIndent(e.mon.Alarms(), "", " ")
		boxes, _ := json.MarshalIndent(e.mon.Boxes(), "", " ")
		e.t.Fatalf("waited 20s for %s\nalarms: %s\nboxes: %s", what, alarms, boxes)
	}
}

// metric reads one sample of /metrics ("" when absent).
func (e *env) metric(line string) string {
	e.t.Helper()
	_, body := e.get("/metrics", false)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			return v
		}
	}
	return ""
}
