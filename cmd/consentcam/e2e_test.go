package main

// End-to-end tests: the real consentcam binary (this test binary, re-executed
// as `consentcam run`), a real Mosquitto on a loopback port, real keys and
// tokens, real OpenCV with YuNet on generated scenario clips, a real bbolt
// file. Nothing is replaced.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// mainEnv makes the test binary run main() instead of the tests.
const mainEnv = "CONSENTCAM_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const (
	e2eSite   = "office-07"
	e2eCamera = "entrance-1"
)

// box is a consentcam installation: keys, configuration, state directory,
// a broker, and the daemon running as a child process.
type box struct {
	t        testing.TB
	site     string
	camera   string
	dir      string
	keys     string
	config   string
	state    string
	broker   *testenv.Mosquitto
	sub      *testenv.Subscriber
	witness  *testenv.Omniwitness // with boxConfig.witnessed
	httpAddr string
	tokens   map[string]string // role → bearer token

	issuer   ed25519.PrivateKey
	operator ed25519.PrivateKey
	device   ed25519.PublicKey
	notice   string // hash

	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan error
	logs   bytes.Buffer
}

type boxConfig struct {
	scene     string             // scenario clip the camera shows
	window    time.Duration      // capture.window (default 3s)
	detectFPS int                // capture.detect_fps (default 10)
	kiosk     bool               // turn the kiosk on, signing as kiosk-1
	site      string             // the site (default e2eSite)
	camera    string             // the camera (default e2eCamera)
	broker    *testenv.Mosquitto // a broker shared with other boxes (default: one of its own)
	siteKeys  string             // a keys directory whose issuer and operator keys this box uses too, as the cameras of one site do
	sweep     time.Duration      // retention.sweep_interval (default 300ms)
	witnessed bool               // a witness (omniwitness) cosigns the box's checkpoints: box.witness
	// beforeStart, when set, is called with the box's keys and
	// configuration written, before the daemon first starts.
	beforeStart func(*box)
}

// newBox writes keys and a configuration for a clip of the scene, starts a
// broker and a subscriber, and starts the daemon.
func newBox(t testing.TB, bc boxConfig) *box {
	t.Helper()
	model := testenv.Model(t, "yunet_320x320.onnx")
	if bc.camera == "" {
		bc.camera = e2eCamera
	}
	if bc.site == "" {
		bc.site = e2eSite
	}
	b := &box{t: t, site: bc.site, camera: bc.camera, dir: t.TempDir(), tokens: map[string]string{
		httpapi.RoleAuditor:  "auditor-token-0123456789abcdef",
		httpapi.RoleOperator: "operator-token-0123456789abcdef",
		httpapi.RoleKiosk:    "kiosk-token-0123456789abcdef",
	}}
	b.keys = filepath.Join(b.dir, "keys")
	b.state = filepath.Join(b.dir, "state")
	if out, err := runMain(t, "keys", "gen", "--dir", b.keys); err != nil {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	if bc.siteKeys != "" {
		for _, name := range []string{"issuer.key", "issuer.pub", "operator.key", "operator.pub"} {
			data, err := os.ReadFile(filepath.Join(bc.siteKeys, name))
			if err == nil {
				err = os.WriteFile(filepath.Join(b.keys, name), data, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var err error
	for _, k := range []struct {
		name string
		dst  *ed25519.PrivateKey
	}{{"issuer.key", &b.issuer}, {"operator.key", &b.operator}} {
		if *k.dst, err = consent.ReadPrivateKey(filepath.Join(b.keys, k.name)); err != nil {
			t.Fatal(err)
		}
	}
	if b.device, err = consent.ReadPublicKey(filepath.Join(b.keys, "device.pub")); err != nil {
		t.Fatal(err)
	}
	var tokenLines []string
	for role, tok := range b.tokens {
		path := filepath.Join(b.keys, role+".token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tokenLines = append(tokenLines, fmt.Sprintf("    - {role: %s, token_file: %s}", role, path))
	}

	scene := opencvtest.SceneNamed(t, bc.scene)
	clip := scene.WriteClip(t, b.dir)
	b.broker = bc.broker
	if b.broker == nil {
		b.broker = testenv.StartMosquitto(t)
	}
	b.httpAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if bc.window == 0 {
		bc.window = 3 * time.Second
	}
	if bc.detectFPS == 0 {
		bc.detectFPS = 10
	}
	if bc.sweep == 0 {
		bc.sweep = 300 * time.Millisecond
	}
	cfg := fmt.Sprintf(`site: %s
camera: %s
state_dir: %s
source: {url: %s, realtime: true, loop: true}
capture: {detector: yunet, model: %s, window: %s, detect_fps: %d}
keys: {master: %s/master.key, device: %s/device.key}
issuers: [{kid: kiosk-1, public_key: %s/issuer.pub}]
operators: [{kid: ops-1, public_key: %s/operator.pub}]
notice:
  controller: {zh-CN: 示例地产有限公司, en: Example Realty Ltd.}
  contact: privacy@example.com
  withdraw: {zh-CN: 请到前台办理。, en: Ask the front desk.}
  alternative: {zh-CN: 不拍照也可以：请到前台用名片登记来访。, en: Register at the front desk with your name card instead.}
purposes:
  - {id: channel-attribution, description: {zh-CN: 了解您是通过哪个销售渠道来的, en: Tell which sales channel brought you}, retention: 720h}
  - {id: entry-security, description: {zh-CN: 保障入口安全, en: Keep the entrance safe}, retention: 2s}
compliance: {pia_reference: PIA-2025-014, pia_date: 2025-05-20, dpo_contact: dpo@example.com}
mqtt: {url: %s}
http:
  listen: %s
  tokens:
%s
retention: {sweep_interval: %s}
audit: {checkpoint_interval: 2s}
store: {compact_interval: 1s}
`, b.site, b.camera, b.state, clip, model, bc.window, bc.detectFPS, b.keys, b.keys, b.keys, b.keys,
		b.broker.URL(), b.httpAddr, strings.Join(tokenLines, "\n"), bc.sweep)
	if bc.kiosk {
		cfg += fmt.Sprintf("kiosk: {issuer: kiosk-1, key: %s/issuer.key}\n", b.keys)
	}
	if bc.witnessed {
		origin := store.Origin(e2eSite, b.camera)
		vkey, err := note.NewEd25519VerifierKey(origin, b.device)
		if err != nil {
			t.Fatal(err)
		}
		w := testenv.StartOmniwitness(t, "witness.example/"+b.camera, testenv.WitnessedLog{Origin: origin, VKey: vkey})
		cfg = strings.Replace(cfg, "audit: {checkpoint_interval: 2s}",
			fmt.Sprintf("audit: {checkpoint_interval: 2s, witnesses: [{name: %q, url: %q, key: %q}]}", w.Name, w.URL(), w.VKey), 1)
		b.witness = w
	}
	b.config = filepath.Join(b.dir, "consentcam.yaml")
	if err := os.WriteFile(b.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runMain(t, "notice", "--config", b.config, "--hash")
	if err != nil {
		t.Fatalf("notice --hash: %v", err)
	}
	b.notice = strings.TrimSpace(out)

	b.sub = testenv.Subscribe(t, b.broker, "auditor-sub-"+b.camera, b.prefix())
	if bc.beforeStart != nil {
		bc.beforeStart(b)
	}
	b.start()
	t.Cleanup(func() {
		b.stop(syscall.SIGTERM)
		if t.Failed() {
			b.mu.Lock()
			t.Logf("consentcam log:\n%s", b.logs.String())
			b.mu.Unlock()
		}
	})
	return b
}

// prefix is the box's MQTT topic prefix.
func (b *box) prefix() string { return "consentcam/v1/" + b.site + "/" + b.camera }

// runMain runs a consentcam command in-process and returns its output.
func runMain(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}
	err := m.Run(context.Background(), args)
	return out.String(), err
}

type lockedBuffer struct{ b *box }

func (w lockedBuffer) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.logs.Write(p)
}

// start runs `consentcam run --config` as a child process and waits until
// its HTTP server answers and it says online over MQTT.
func (b *box) start() {
	b.t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", b.config, "--log-level", "debug")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = lockedBuffer{b}, lockedBuffer{b}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.mu.Lock()
	b.proc, b.exited = cmd, exited
	b.mu.Unlock()

	var exitErr error
	up := testenv.WaitUntil(30*time.Second, func() bool {
		select {
		case exitErr = <-exited:
			return true
		default:
		}
		resp, err := http.Get("http://" + b.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	switch {
	case exitErr != nil:
		b.mu.Lock()
		b.proc = nil
		b.mu.Unlock()
		b.t.Fatalf("consentcam run exited at start: %v\n%s", exitErr, b.logs.String())
	case !up:
		b.t.Fatalf("consentcam not answering on %s after 30s", b.httpAddr)
	}
	b.sub.WaitOnline()
}

// stop sends sig to the daemon and waits for it to exit; it returns the
// exit code.
func (b *box) stop(sig syscall.Signal) int {
	b.t.Helper()
	b.mu.Lock()
	cmd, exited := b.proc, b.exited
	b.proc = nil
	b.mu.Unlock()
	if cmd == nil {
		return -1
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		b.t.Errorf("consentcam did not exit within 30s of %v", sig)
	}
	return cmd.ProcessState.ExitCode()
}

// get sends an HTTP GET with the bearer token of role ("" for none).
func (b *box) get(path, role string) (int, []byte) {
	b.t.Helper()
	req, err := http.NewRequest("GET", "http://"+b.httpAddr+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+b.tokens[role])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, body
}

// records lists, as the operator, the records a query names ("visit=V",
// "subject=S").
func (b *box) records(query string) []store.Record {
	b.t.Helper()
	code, body := b.get("/v1/records?"+query, httpapi.RoleOperator)
	var recs []store.Record
	if code != 200 || json.Unmarshal(body, &recs) != nil {
		b.t.Fatalf("GET /v1/records?%s: %d %s", query, code, body)
	}
	return recs
}

// metric reads one value from /metrics.
func (b *box) metric(name string) float64 {
	b.t.Helper()
	_, body := b.get("/metrics", httpapi.RoleAuditor)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	b.t.Fatalf("metric %s not found", name)
	return 0
}

// consentToken signs a consent token as the kiosk would, through the CLI.
func (b *box) consentToken(visit, subject string, purposes ...string) []byte {
	b.t.Helper()
	args := []string{"token", "consent", "--key", filepath.Join(b.keys, "issuer.key"), "--kid", "kiosk-1",
		"--site", b.site, "--camera", b.camera, "--visit", visit, "--subject", subject, "--notice", b.notice}
	for _, p := range purposes {
		args = append(args, "--purpose", p)
	}
	out, err := runMain(b.t, args...)
	if err != nil {
		b.t.Fatalf("token consent: %v\n%s", err, out)
	}
	return []byte(strings.TrimSpace(out))
}

// revokeToken signs a revoke command through the CLI.
func (b *box) revokeToken(flag, value string) []byte {
	b.t.Helper()
	out, err := runMain(b.t, "token", "revoke", "--key", filepath.Join(b.keys, "operator.key"), "--kid", "ops-1",
		"--site", b.site, "--camera", b.camera, "--"+flag, value, "--reason", "visitor withdrew")
	if err != nil {
		b.t.Fatalf("token revoke: %v\n%s", err, out)
	}
	return []byte(strings.TrimSpace(out))
}

// events pulls the whole log over HTTP, as an auditor.
func (b *box) events() []store.Event {
	b.t.Helper()
	code, body := b.get("/v1/audit?limit=10000", httpapi.RoleAuditor)
	if code != 200 {
		b.t.Fatalf("GET /v1/audit: %d %s", code, body)
	}
	var evs []store.Event
	for _, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var ev store.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			b.t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// waitEvent waits until the bus has delivered an event matching want.
func (b *box) waitEvent(what string, want func(store.Event) bool) store.Event {
	b.t.Helper()
	var found store.Event
	ok := testenv.WaitUntil(30*time.Second, func() bool {
		for _, raw := range b.sub.Received() {
			var ev store.Event
			if err := json.Unmarshal(raw, &ev); err == nil && want(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	if !ok {
		var log strings.Builder
		for _, ev := range b.events() {
			fmt.Fprintf(&log, "  %d %s visit=%s reason=%s\n", ev.Seq, ev.Type, ev.Visit, ev.Reason)
		}
		b.t.Fatalf("no %s on …/audit after 30s (%d events arrived); log:\n%s", what, len(b.sub.Received()), log.String())
	}
	return found
}

func eventOf(typ, visit string) func(store.Event) bool {
	return func(ev store.Event) bool { return ev.Type == typ && (visit == "" || ev.Visit == visit) }
}
