// Package agenttest runs the agent for the tests of agent, agent/httpapi
// and agent/mqttbus: the core and both transports on a real bbolt store and,
// when asked, a real Mosquitto, wired as cmd/consentcam wires them.
//
// The camera and the face detector are the two edges these packages must
// not import (capture/opencv): FakeCamera stands in for both. The
// end-to-end tests in cmd/consentcam run the real source and detectors.
package agenttest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/mqttbus"
	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// The box the rig runs.
const (
	Site   = "office-07"
	Camera = "entrance-1"
	Prefix = "consentcam/v1/office-07/entrance-1"
)

// FakeCamera is the V4L2 device (a textured frame every 10 ms) and OpenCV's
// face detector (it "detects" the faces the test put in front of it).
type FakeCamera struct {
	mu      sync.Mutex
	faces   []capture.Face
	down    bool
	frame   *image.RGBA
	Detects atomic.Int64 // calls of Detect
	Reads   atomic.Int64 // frames read
}

// NewFakeCamera returns a camera with nobody in view.
func NewFakeCamera() *FakeCamera {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			v := uint8((x*7 + y*13) % 251)
			img.Set(x, y, color.RGBA{v, v / 2, 255 - v, 255})
		}
	}
	return &FakeCamera{frame: img}
}

// Show puts faces in front of the camera.
func (c *FakeCamera) Show(faces ...capture.Face) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faces = faces
}

// Unplug makes the camera fail to open and to read, until Plug.
func (c *FakeCamera) Unplug() { c.setDown(true) }

// Plug makes the camera work again.
func (c *FakeCamera) Plug() { c.setDown(false) }

func (c *FakeCamera) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
}

var errUnplugged = errors.New("fake camera: unplugged")

func (c *FakeCamera) unplugged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// Face is a square face at x, y.
func Face(x, y, size int, score float64) capture.Face {
	return capture.Face{Box: image.Rect(x, y, x+size, y+size), Score: score}
}

// Open opens the camera as a capture source.
func (c *FakeCamera) Open(ctx context.Context) (capture.Source, error) {
	if c.unplugged() {
		return nil, errUnplugged
	}
	return fakeSource{c}, nil
}

// Detect reports the faces in view.
func (c *FakeCamera) Detect(f capture.Frame) ([]capture.Face, error) {
	c.Detects.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capture.Face(nil), c.faces...), nil
}

// Name is the detector's name in records and events.
func (c *FakeCamera) Name() string { return "scripted" }

type fakeSource struct{ c *FakeCamera }

func (s fakeSource) Read(ctx context.Context) (capture.Frame, error) {
	select {
	case <-time.After(10 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.c.unplugged() {
		return nil, errUnplugged
	}
	s.c.Reads.Add(1)
	return capture.NewImageFrame(s.c.frame), nil
}

func (s fakeSource) Close() error { return nil }

// KeyPair is an Ed25519 key and its id.
type KeyPair struct {
	KID  string
	Pub  ed25519.PublicKey
	Priv ed25519.PrivateKey
}

// NewKey makes a key pair.
func NewKey(t testing.TB, kid string) KeyPair {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return KeyPair{kid, pub, priv}
}

// Rig is an agent with its HTTP API and MQTT session on a real bbolt store
// and, when asked, a real Mosquitto.
type Rig struct {
	T     testing.TB
	Agent *agent.Agent
	HTTP  *httpapi.Server
	Bus   *mqttbus.Bus
	DB    *store.DB
	// Faults is the store as the agent sees it: DB, with failures on
	// demand.
	Faults   *FaultyStore
	Cam      *FakeCamera
	Broker   *testenv.Mosquitto
	Sub      *testenv.Subscriber
	Issuer   KeyPair
	Operator KeyPair
	Device   KeyPair
	Notice   consent.Notice
	Tokens   map[string]string // role → secret
	Now      func() time.Time
	// Retention is that of the purpose entry-security.
	Retention time.Duration
	// Logger is given to the agent and its transports: by default it
	// logs through the test when it runs verbose (go test -v).
	Logger *slog.Logger
	// StateDir holds the store file: a temporary directory by default.
	StateDir string
	// Tune, when set, changes the parts after they are built with the rig's
	// settings and before they start.
	Tune func(*Rig)
	// Private is what must never be in the log or on the bus; the rig adds
	// the tokens it signs and the withdrawal codes it gets, and
	// CheckPrivacy scans for them.
	Private testenv.Private
}

// Option sets up a rig before it starts.
type Option func(*Rig)

// WithBroker starts a Mosquitto, and a subscriber to everything under the
// prefix before the agent starts, so that it sees every message.
func WithBroker(r *Rig) {
	r.Broker = testenv.StartMosquitto(r.T)
	r.Sub = testenv.Subscribe(r.T, r.Broker, "auditor-sub", Prefix)
}

// WithStateDir keeps the store file in dir.
func WithStateDir(dir string) Option { return func(r *Rig) { r.StateDir = dir } }

// WithLogger gives the agent and its transports a logger.
func WithLogger(l *slog.Logger) Option { return func(r *Rig) { r.Logger = l } }

// WithClock makes the store, the verifier and the agent read time from now.
func WithClock(now func() time.Time) Option { return func(r *Rig) { r.Now = now } }

// WithKiosk turns on the kiosk, signing with a key of its own (kid kid) that
// the verifier trusts.
func WithKiosk(kid string) Option {
	return func(r *Rig) {
		k := NewKey(r.T, kid)
		tune := r.Tune
		r.Tune = func(r *Rig) {
			if tune != nil {
				tune(r)
			}
			r.Agent.Verifier.(*consent.Verifier).Issuers[k.KID] = k.Pub
			r.HTTP.Kiosk = &httpapi.KioskOptions{Issuer: k.KID, Key: k.Priv, Window: r.Agent.Window}
		}
	}
}

// New starts an agent with a window of 1 s and two purposes: channel
// attribution (30 days) and entry security (retention); tune (when not nil)
// changes its parts before they start. The rig stops at the end of the test
// and checks the store's invariants.
func New(t testing.TB, retention time.Duration, tune func(*Rig), opts ...Option) *Rig {
	t.Helper()
	r := &Rig{
		T: t, Cam: NewFakeCamera(),
		Issuer: NewKey(t, "kiosk-1"), Operator: NewKey(t, "ops-1"), Device: NewKey(t, "device"),
		Tokens: map[string]string{
			httpapi.RoleAuditor:  "auditor-secret-0123456789",
			httpapi.RoleOperator: "operator-secret-0123456789",
			httpapi.RoleKiosk:    "kiosk-secret-0123456789",
			httpapi.RoleMetrics:  "metrics-secret-0123456789",
		},
		Now: time.Now, Retention: retention, Tune: tune,
	}
	for _, o := range opts {
		o(r)
	}
	if r.StateDir == "" {
		r.StateDir = t.TempDir()
	}
	r.DB = store.NewDB(filepath.Join(r.StateDir, "consentcam.db"))
	r.DB.MasterKey = bytes.Repeat([]byte{7}, 32)
	r.DB.Site, r.DB.Camera, r.DB.Now = Site, Camera, r.Now
	if err := r.DB.Open(); err != nil {
		t.Fatal(err)
	}
	r.Faults = &FaultyStore{DB: r.DB}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			r.Logger = TestLogger(t)
		}
	}
	r.Notice = consent.NewNotice(Site, Camera, time.Second, "")
	r.Notice.Controller = consent.Text{consent.LangChinese: "示例地产有限公司", consent.LangEnglish: "Example Realty Ltd."}
	r.Notice.Contact = consent.Same("privacy@example.com")
	r.Notice.Withdraw = consent.Text{consent.LangChinese: "请到前台办理。", consent.LangEnglish: "Ask the front desk."}
	r.Notice.Alternative = consent.Text{consent.LangChinese: "请到前台登记。", consent.LangEnglish: "Sign in at the front desk instead."}
	r.Notice.Purposes = []consent.Purpose{
		consent.NewPurpose("channel-attribution", consent.Text{consent.LangChinese: "了解您是通过哪个销售渠道来的", consent.LangEnglish: "Tell which sales channel brought you"}, 720*time.Hour),
		consent.NewPurpose("entry-security", consent.Text{consent.LangChinese: "保障入口安全", consent.LangEnglish: "Keep the entrance safe"}, retention),
	}

	r.Start()
	t.Cleanup(r.Close)
	if r.Sub != nil {
		r.Sub.WaitOnline()
	}
	return r
}

// Start builds a new agent and its transports on the rig's store and
// starts them.
func (r *Rig) Start() {
	r.T.Helper()
	a := agent.New()
	a.Site, a.Camera = Site, Camera
	a.Store = r.Faults
	a.Verifier = &consent.Verifier{
		Site: Site, Camera: Camera,
		Issuers:    map[string]ed25519.PublicKey{r.Issuer.KID: r.Issuer.Pub},
		Operators:  map[string]ed25519.PublicKey{r.Operator.KID: r.Operator.Pub},
		Purposes:   []string{"channel-attribution", "entry-security"},
		NoticeHash: r.Notice.Hash(),
		ClockSkew:  30 * time.Second,
		Now:        r.Now,
	}
	a.Notice, a.NoticeHash = r.Notice.JSON(), r.Notice.Hash()
	a.Purposes = map[string]time.Duration{"channel-attribution": 720 * time.Hour, "entry-security": r.Retention}
	a.DeviceKey = r.Device.Priv
	a.OpenSource = r.Cam.Open
	a.Detector = r.Cam
	a.Window = time.Second
	a.DetectFPS = 20
	a.Now = r.Now
	logger := r.Logger
	a.Logger = logger

	bus := mqttbus.New()
	bus.Options = mqttbus.Options{URL: "tcp://127.0.0.1:1", ClientID: "consentcam-test", TopicPrefix: Prefix, ReconnectMax: time.Second}
	if r.Broker != nil {
		bus.URL = r.Broker.URL()
	}
	bus.Core, bus.Outbox, bus.Notice = a, r.DB, r.Notice.JSON()
	bus.Registry, bus.Logger = a.Registry, logger

	srv := httpapi.NewServer()
	srv.Addr = "127.0.0.1:0"
	for role, secret := range r.Tokens {
		srv.Tokens = append(srv.Tokens, httpapi.BearerToken{Role: role, Secret: secret})
	}
	srv.Core, srv.Log, srv.Notice = a, r.DB, r.Notice
	srv.Keys = httpapi.AuditKeys{Device: r.Device.Pub,
		Issuers:   map[string]ed25519.PublicKey{r.Issuer.KID: r.Issuer.Pub},
		Operators: map[string]ed25519.PublicKey{r.Operator.KID: r.Operator.Pub}}
	srv.Metrics, srv.Connected = a.Registry, bus.Connected
	srv.Now, srv.Logger = r.Now, logger

	r.Agent, r.HTTP, r.Bus = a, srv, bus
	if r.Tune != nil {
		r.Tune(r)
	}
	if err := srv.Listen(); err != nil {
		r.T.Fatal(err)
	}
	if err := a.Open(); err != nil {
		r.T.Fatal(err)
	}
	if err := bus.Open(); err != nil {
		r.T.Fatal(err)
	}
	srv.Serve()
}

// Stop stops the agent and its transports, as the daemon does, leaving
// the store open.
func (r *Rig) Stop() {
	r.T.Helper()
	if err := r.Halt(); err != nil {
		r.T.Error(err)
	}
}

// Halt stops the agent and its transports as Stop does, and returns what
// failed (a store that cannot write records nothing at shutdown).
func (r *Rig) Halt() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if err := r.HTTP.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close http: %w", err))
	}
	if err := r.Agent.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close agent: %w", err))
	}
	if err := r.Bus.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close mqtt: %w", err))
	}
	return errors.Join(errs...)
}

// Reopen closes the store, lets fn change its files (a backup restored,
// say), and opens it again; the agent must be stopped.
func (r *Rig) Reopen(fn func(dir string)) {
	r.T.Helper()
	if err := r.DB.Close(); err != nil {
		r.T.Fatal(err)
	}
	fn(r.StateDir)
	db := store.NewDB(r.DB.Path())
	db.MasterKey, db.Site, db.Camera, db.Now = r.DB.MasterKey, Site, Camera, r.Now
	if err := db.Open(); err != nil {
		r.T.Fatal(err)
	}
	r.DB = db
	r.Faults = &FaultyStore{DB: db}
}

// Close stops the agent (once) and checks the store's invariants.
func (r *Rig) Close() {
	if r.Agent == nil {
		return
	}
	r.Stop()
	r.Agent = nil
	r.CheckPrivacy()
	if err := r.DB.Check(); err != nil {
		r.T.Errorf("store check: %v", err)
	}
	if err := r.DB.Close(); err != nil {
		r.T.Errorf("close store: %v", err)
	}
}

// ConsentToken signs a consent token for this camera.
func (r *Rig) ConsentToken(visit, subject string, purposes ...string) string {
	r.T.Helper()
	now := r.Now()
	tok, err := consent.SignConsent(r.Issuer.Priv, r.Issuer.KID, consent.Consent{
		Issuer: "kiosk", Subject: subject, Visit: visit, Purposes: purposes, Notice: r.Notice.Hash(),
		Audience: consent.Audience(Site, Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(10 * time.Minute),
	})
	if err != nil {
		r.T.Fatal(err)
	}
	r.Private.AddToken(tok)
	return tok
}

// RevokeToken signs a revoke command for a subject or a visit.
func (r *Rig) RevokeToken(subject, visit string) string {
	r.T.Helper()
	now := r.Now()
	tok, err := consent.SignRevoke(r.Operator.Priv, r.Operator.KID, consent.Revoke{
		Issuer: "front-desk", Subject: subject, Visit: visit, Reason: "consent withdrawn",
		Audience: consent.Audience(Site, Camera), IssuedAt: now, Expires: now.Add(5 * time.Minute),
	})
	if err != nil {
		r.T.Fatal(err)
	}
	r.Private.AddToken(tok)
	return tok
}

// Do sends an HTTP request to the agent with the bearer token of role.
func (r *Rig) Do(method, path, role string, body io.Reader) (*http.Response, []byte) {
	r.T.Helper()
	req, err := http.NewRequest(method, "http://"+r.HTTP.ListenAddr()+path, body)
	if err != nil {
		r.T.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+r.Tokens[role])
	}
	if body != nil && strings.HasPrefix(path, "/kiosk/api/") {
		req.Header.Set("Content-Type", "application/json") // as the kiosk's pages send
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		r.T.Fatal(err)
	}
	return resp, data
}

// Visit posts a consent token to /v1/visits and fails the test unless it
// is accepted.
func (r *Rig) Visit(token string) httpapi.VisitResponse {
	r.T.Helper()
	resp, body := r.Do("POST", "/v1/visits", httpapi.RoleKiosk, strings.NewReader(token))
	if resp.StatusCode != http.StatusAccepted {
		r.T.Fatalf("POST /v1/visits: %s: %s", resp.Status, body)
	}
	var v httpapi.VisitResponse
	if err := json.Unmarshal(body, &v); err != nil {
		r.T.Fatal(err)
	}
	return v
}

// SaveOne runs a visit through the camera and returns its record id.
func (r *Rig) SaveOne(visit, subject string, purposes ...string) string {
	r.T.Helper()
	r.Cam.Show(Face(240, 120, 160, 0.95))
	r.Visit(r.ConsentToken(visit, subject, purposes...))
	return r.WaitEvent("capture.saved of "+visit, OfVisit(store.EventCaptureSaved, visit)).Record
}

// Records lists records through GET /v1/records?query.
func (r *Rig) Records(query string) []store.Record {
	r.T.Helper()
	resp, body := r.Do("GET", "/v1/records?"+query, httpapi.RoleOperator, nil)
	var recs []store.Record
	if resp.StatusCode != 200 || json.Unmarshal(body, &recs) != nil {
		r.T.Fatalf("GET /v1/records?%s: %s %s", query, resp.Status, body)
	}
	return recs
}

// Events reads the whole audit log from the store.
func (r *Rig) Events() []store.Event {
	r.T.Helper()
	raw, err := r.DB.Events(0, 1<<20)
	if err != nil {
		r.T.Fatal(err)
	}
	evs := make([]store.Event, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &evs[i]); err != nil {
			r.T.Fatal(err)
		}
	}
	return evs
}

// WaitEvent waits until an event matching want is in the log and returns it.
func (r *Rig) WaitEvent(what string, want func(store.Event) bool) store.Event {
	r.T.Helper()
	var found store.Event
	ok := testenv.WaitUntil(15*time.Second, func() bool {
		evs := r.Events()
		i := slices.IndexFunc(evs, want)
		if i >= 0 {
			found = evs[i]
		}
		return i >= 0
	})
	if !ok {
		r.T.Fatalf("no %s event after 15s; log:\n%s", what, Dump(r.Events()))
	}
	return found
}

// IsType matches events of a type.
func IsType(typ string) func(store.Event) bool {
	return func(ev store.Event) bool { return ev.Type == typ }
}

// OfVisit matches events of a type and a visit.
func OfVisit(typ, visit string) func(store.Event) bool {
	return func(ev store.Event) bool { return ev.Type == typ && ev.Visit == visit }
}

// Decisions is the log without the agent's own bookkeeping.
func Decisions(evs []store.Event) []store.Event {
	return slices.DeleteFunc(evs, func(ev store.Event) bool {
		return ev.Type == store.EventCheckpoint || ev.Type == store.EventAgentStarted || ev.Type == store.EventNoticePublished
	})
}

// Dump writes events one a line, for failure messages.
func Dump(evs []store.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %d %s visit=%s subject=%s reason=%s record=%s\n", ev.Seq, ev.Type, ev.Visit, ev.Subject, ev.Reason, ev.Record)
	}
	return b.String()
}

// CheckError checks that an answer is the JSON error of SPEC with this
// status and reason.
func CheckError(t testing.TB, what string, got int, body []byte, status int, reason string) {
	t.Helper()
	var e struct{ Error, Reason string }
	if got != status || json.Unmarshal(body, &e) != nil || e.Reason != reason || e.Error == "" {
		t.Errorf("%s: %d %s; want %d with a JSON error of reason %q", what, got, body, status, reason)
	}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestLogger logs through t, at debug level.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Agree ticks purposes at the kiosk and agrees; it fails the test unless
// the visit starts.
func (r *Rig) Agree(purposes ...string) httpapi.KioskAgreement {
	r.T.Helper()
	body, _ := json.Marshal(map[string]any{"purposes": purposes, "notice": r.Notice.Hash()})
	resp, data := r.Do("POST", "/kiosk/api/agree", httpapi.RoleKiosk, bytes.NewReader(body))
	if resp.StatusCode != http.StatusAccepted {
		r.T.Fatalf("POST /kiosk/api/agree: %s %s", resp.Status, data)
	}
	var ag httpapi.KioskAgreement
	if err := json.Unmarshal(data, &ag); err != nil {
		r.T.Fatal(err)
	}
	r.Private.AddCode(ag.Code)
	return ag
}

// WithdrawCode sends a withdrawal code to the kiosk; it returns the status
// and the body.
func (r *Rig) WithdrawCode(code string) (int, []byte) {
	r.T.Helper()
	body, _ := json.Marshal(map[string]string{"code": code})
	resp, data := r.Do("POST", "/kiosk/api/withdraw", "", bytes.NewReader(body))
	return resp.StatusCode, data
}

// WaitVisit polls a kiosk visit's status, as the page does, until want
// holds.
func (r *Rig) WaitVisit(visit string, want func(agent.VisitStatus) bool) agent.VisitStatus {
	r.T.Helper()
	var v agent.VisitStatus
	ok := testenv.WaitUntil(15*time.Second, func() bool {
		resp, data := r.Do("GET", "/kiosk/api/visits/"+visit, httpapi.RoleKiosk, nil)
		if resp.StatusCode != 200 || json.Unmarshal(data, &v) != nil {
			r.T.Fatalf("GET /kiosk/api/visits/%s: %s %s", visit, resp.Status, data)
		}
		return want(v)
	})
	if !ok {
		r.T.Fatalf("visit %s is %+v after 15s; log:\n%s", visit, v, Dump(r.Events()))
	}
	return v
}

// InState matches a visit in a state.
func InState(state string) func(agent.VisitStatus) bool {
	return func(v agent.VisitStatus) bool { return v.State == state }
}

// CheckReceiptCheckpoint checks that the receipt's checkpoint is signed by
// the device key and that the consent.revoked event it names is provably
// in that tree.
func CheckReceiptCheckpoint(t testing.TB, r *Rig, rc *consent.Receipt) {
	t.Helper()
	v, err := store.NewCheckpointVerifier(store.Origin(Site, Camera), r.Device.Pub)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(rc.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("receipt checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	var size uint64
	fmt.Sscan(lines[1], &size)
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	if rc.Seq >= size {
		t.Fatalf("receipt seq %d not covered by its checkpoint of size %d", rc.Seq, size)
	}
	hashes, err := r.DB.InclusionProof(rc.Seq, size)
	if err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	evs, _ := r.DB.Events(rc.Seq, 1)
	var ev store.Event
	json.Unmarshal(evs[0], &ev)
	if ev.Type != store.EventConsentRevoked {
		t.Errorf("receipt seq %d is a %s event, want consent.revoked", rc.Seq, ev.Type)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, rc.Seq, size, rfc6962.DefaultHasher.HashLeaf(evs[0]), hashes, root); err != nil {
		t.Errorf("consent.revoked not provably in the receipt's checkpoint: %v", err)
	}
}

// ErrInjected is the failure FaultyStore injects.
var ErrInjected = errors.New("injected store failure")

// FaultyStore is a store that fails write transactions on demand: a
// transaction it fails has run in full, and is rolled back, as when the
// disk fails at commit.
type FaultyStore struct {
	*store.DB
	mu     sync.Mutex
	fail   func(n int, events []store.Event) bool
	writes int
}

// FailWhen makes the store fail each write transaction for which fail
// holds, given the events it appended; n counts write transactions from
// the call on, from 1. nil stops the failures.
func (s *FaultyStore) FailWhen(fail func(n int, events []store.Event) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.writes = fail, 0
}

// FailNext fails the next n write transactions.
func (s *FaultyStore) FailNext(n int) {
	s.FailWhen(func(i int, _ []store.Event) bool { return i <= n })
}

// Always fails every write transaction.
func Always(int, []store.Event) bool { return true }

// Update runs fn in a transaction of the store, and rolls it back when a
// failure is due.
func (s *FaultyStore) Update(fn func(tx *store.Tx) error) error {
	return s.DB.Update(func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.writes++
		if s.fail != nil && s.fail(s.writes, tx.Appended()) {
			return ErrInjected
		}
		return nil
	})
}

// LogBuffer keeps what a logger writes, for tests of what is logged.
type LogBuffer struct{ testenv.Buffer }

// Logger is a text logger writing into b.
func (b *LogBuffer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// WaitFor waits until the log holds msg at least n times, and reports
// whether it does.
func (b *LogBuffer) WaitFor(msg string, n int) bool {
	return testenv.WaitUntil(20*time.Second, func() bool { return strings.Count(b.String(), msg) >= n })
}
