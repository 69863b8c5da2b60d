package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

const (
	site   = "office-07"
	camera = "entrance-1"
	prefix = "consentcam/v1/office-07/entrance-1"
)

// camera stands in for the two edges this package must not import: the
// V4L2 device (it yields a textured frame every 10 ms) and OpenCV's face
// detector (it "detects" the faces the test put in front of it). The
// end-to-end tests in cmd/consentcam run the real source and detectors.
type fakeCamera struct {
	mu      sync.Mutex
	faces   []capture.Face
	frame   *image.RGBA
	detects atomic.Int64
	reads   atomic.Int64
}

func newFakeCamera() *fakeCamera {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			v := uint8((x*7 + y*13) % 251)
			img.Set(x, y, color.RGBA{v, v / 2, 255 - v, 255})
		}
	}
	return &fakeCamera{frame: img}
}

// show puts faces in front of the camera.
func (c *fakeCamera) show(faces ...capture.Face) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faces = faces
}

func face(x, y, size int, score float64) capture.Face {
	return capture.Face{Box: image.Rect(x, y, x+size, y+size), Score: score}
}

func (c *fakeCamera) Open(ctx context.Context) (capture.Source, error) { return fakeSource{c}, nil }

func (c *fakeCamera) Detect(f capture.Frame) ([]capture.Face, error) {
	c.detects.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capture.Face(nil), c.faces...), nil
}

func (c *fakeCamera) Name() string { return "scripted" }

type fakeSource struct{ c *fakeCamera }

func (s fakeSource) Read(ctx context.Context) (capture.Frame, error) {
	select {
	case <-time.After(10 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.c.reads.Add(1)
	return capture.NewImageFrame(s.c.frame), nil
}

func (s fakeSource) Close() error { return nil }

// keyPair is an Ed25519 key and its id.
type keyPair struct {
	kid  string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t testing.TB, kid string) keyPair {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{kid, pub, priv}
}

// rig is an agent on a real bbolt store and, when asked, a real Mosquitto.
type rig struct {
	t        testing.TB
	a        *agent.Agent
	db       *store.DB
	cam      *fakeCamera
	broker   *testenv.Mosquitto
	sub      *testenv.Subscriber
	issuer   keyPair
	operator keyPair
	device   keyPair
	notice   consent.Notice
	tokens   map[string]string // role → secret
	now      func() time.Time

	retention time.Duration // of entry-security
	tune      func(*agent.Agent)
}

type rigOption func(*rig)

// withBroker starts a Mosquitto, and a subscriber to everything under the
// prefix before the agent starts, so that it sees every message.
func withBroker(r *rig) {
	r.broker = testenv.StartMosquitto(r.t)
	r.sub = testenv.Subscribe(r.t, r.broker, "auditor-sub", prefix)
}

// withClock makes the store, the verifier and the agent read time from now.
func withClock(now func() time.Time) rigOption { return func(r *rig) { r.now = now } }

// newRig starts an agent with a window of 1 s and two purposes: channel
// attribution (30 days) and entry security (retention), and the fields opts set.
func newRig(t testing.TB, retention time.Duration, tune func(a *agent.Agent), opts ...rigOption) *rig {
	t.Helper()
	r := &rig{
		t: t, cam: newFakeCamera(),
		issuer: newKey(t, "kiosk-1"), operator: newKey(t, "ops-1"), device: newKey(t, "device"),
		tokens: map[string]string{
			agent.RoleAuditor:  "auditor-secret-0123456789",
			agent.RoleOperator: "operator-secret-0123456789",
			agent.RoleKiosk:    "kiosk-secret-0123456789",
		},
		now: time.Now, retention: retention,
	}
	for _, o := range opts {
		o(r)
	}
	r.db = store.NewDB(filepath.Join(t.TempDir(), "consentcam.db"))
	r.db.MasterKey = bytes.Repeat([]byte{7}, 32)
	r.db.Site, r.db.Camera, r.db.Now = site, camera, r.now
	if err := r.db.Open(); err != nil {
		t.Fatal(err)
	}
	r.notice = consent.NewNotice(site, camera, time.Second)
	r.notice.Controller, r.notice.Contact, r.notice.Withdraw = "Example Realty Ltd.", "privacy@example.com", "Ask the front desk."
	r.notice.Purposes = []consent.Purpose{
		consent.NewPurpose("channel-attribution", "Tell which sales channel brought you", 720*time.Hour),
		consent.NewPurpose("entry-security", "Keep the entrance safe", retention),
	}

	r.tune = tune
	r.start()
	t.Cleanup(func() { r.close() })
	if r.sub != nil {
		r.sub.WaitOnline()
	}
	return r
}

// start opens a new agent on the rig's store.
func (r *rig) start() {
	r.t.Helper()
	a := agent.New()
	a.Site, a.Camera = site, camera
	a.Store = r.db
	a.Verifier = &consent.Verifier{
		Site: site, Camera: camera,
		Issuers:    map[string]ed25519.PublicKey{r.issuer.kid: r.issuer.pub},
		Operators:  map[string]ed25519.PublicKey{r.operator.kid: r.operator.pub},
		Purposes:   []string{"channel-attribution", "entry-security"},
		NoticeHash: r.notice.Hash(),
		ClockSkew:  30 * time.Second,
		Now:        r.now,
		Spent:      r.db,
	}
	a.Notice, a.NoticeHash = r.notice.JSON(), r.notice.Hash()
	a.Purposes = map[string]time.Duration{"channel-attribution": 720 * time.Hour, "entry-security": r.retention}
	a.DeviceKey = r.device.priv
	a.OpenSource = r.cam.Open
	a.Detector = r.cam
	a.Window = time.Second
	a.DetectFPS = 20
	a.HTTP.Addr = "127.0.0.1:0"
	for role, secret := range r.tokens {
		a.HTTP.Tokens = append(a.HTTP.Tokens, agent.BearerToken{Role: role, Secret: secret})
	}
	a.MQTT = agent.MQTTOptions{URL: "tcp://127.0.0.1:1", ClientID: "consentcam-test", TopicPrefix: prefix, MaxReconnectInterval: time.Second}
	if r.broker != nil {
		a.MQTT.URL = r.broker.URL()
	}
	a.Now = r.now
	if testing.Verbose() {
		a.Logger = testLogger(r.t)
	}
	if r.tune != nil {
		r.tune(a)
	}
	if err := a.Open(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.a = a
}

// stop closes the agent, leaving the store open.
func (r *rig) stop() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.a.Close(ctx); err != nil {
		r.t.Errorf("close agent: %v", err)
	}
}

// close stops the agent (once) and checks the store's invariants.
func (r *rig) close() {
	if r.a == nil {
		return
	}
	r.stop()
	r.a = nil
	if err := r.db.Check(); err != nil {
		r.t.Errorf("store check: %v", err)
	}
	if err := r.db.Close(); err != nil {
		r.t.Errorf("close store: %v", err)
	}
}

// consentToken signs a consent token for this camera.
func (r *rig) consentToken(visit, subject string, purposes ...string) string {
	r.t.Helper()
	now := r.now()
	tok, err := consent.SignConsent(r.issuer.priv, r.issuer.kid, consent.Consent{
		Issuer: "kiosk", Subject: subject, Visit: visit, Purposes: purposes, Notice: r.notice.Hash(),
		Audience: consent.Audience(site, camera), IssuedAt: now, NotBefore: now, Expires: now.Add(10 * time.Minute),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// revokeToken signs a revoke command for a subject or a visit.
func (r *rig) revokeToken(subject, visit string) string {
	r.t.Helper()
	now := r.now()
	tok, err := consent.SignRevoke(r.operator.priv, r.operator.kid, consent.Revoke{
		Issuer: "front-desk", Subject: subject, Visit: visit, Reason: "consent withdrawn",
		Audience: consent.Audience(site, camera), IssuedAt: now, Expires: now.Add(5 * time.Minute),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// do sends an HTTP request to the agent with the bearer token of role.
func (r *rig) do(method, path, role string, body io.Reader) (*http.Response, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.a.HTTPAddr()+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+r.tokens[role])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, data
}

// visit posts a consent token to /v1/visits and fails the test unless it
// is accepted.
func (r *rig) visit(token string) agent.VisitResponse {
	r.t.Helper()
	resp, body := r.do("POST", "/v1/visits", agent.RoleKiosk, strings.NewReader(token))
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("POST /v1/visits: %s: %s", resp.Status, body)
	}
	var v agent.VisitResponse
	if err := json.Unmarshal(body, &v); err != nil {
		r.t.Fatal(err)
	}
	return v
}

// events reads the whole audit log from the store.
func (r *rig) events() []store.Event {
	r.t.Helper()
	raw, err := r.db.Events(0, 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	evs := make([]store.Event, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &evs[i]); err != nil {
			r.t.Fatal(err)
		}
	}
	return evs
}

// waitEvent waits until an event matching want is in the log and returns it.
func (r *rig) waitEvent(what string, want func(store.Event) bool) store.Event {
	r.t.Helper()
	var found store.Event
	ok := testenv.WaitUntil(15*time.Second, func() bool {
		evs := r.events()
		i := slices.IndexFunc(evs, want)
		if i >= 0 {
			found = evs[i]
		}
		return i >= 0
	})
	if !ok {
		r.t.Fatalf("no %s event after 15s; log:\n%s", what, dump(r.events()))
	}
	return found
}

func isType(typ string) func(store.Event) bool {
	return func(ev store.Event) bool { return ev.Type == typ }
}

func ofVisit(typ, visit string) func(store.Event) bool {
	return func(ev store.Event) bool { return ev.Type == typ && ev.Visit == visit }
}

func dump(evs []store.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %d %s visit=%s subject=%s reason=%s record=%s\n", ev.Seq, ev.Type, ev.Visit, ev.Subject, ev.Reason, ev.Record)
	}
	return b.String()
}
