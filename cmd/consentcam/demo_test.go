package main

// Tests of `consentcam demo`, run in-process through Main.Run as a user
// runs it: its embedded broker, real keys, real OpenCV with YuNet on the
// bundled scene, a real bbolt file. What the demo prints is what the tests
// use: they open its URLs and connect to its broker.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

const demoPrefix = "consentcam/v1/" + demoSite + "/" + demoCamera

// demoRun is a `consentcam demo` running in-process, and what it printed.
type demoRun struct {
	t      *testing.T
	stdout testenv.Buffer
	stderr testenv.Buffer
	stop   context.CancelFunc
	done   chan error

	base    string // http://host:port
	kiosk   string // the kiosk's bearer token, from its URL
	auditor string // the auditor's, from the audit page's URL
	broker  string // tcp://host:port, from the mosquitto_sub line
	user    string // the watcher's user name and password file, from it too
	pwFile  string
}

var (
	kioskURLRE = regexp.MustCompile(`(http://\S+)/kiosk/#token=([0-9a-f]+)`)
	auditURLRE = regexp.MustCompile(`/kiosk/audit#token=([0-9a-f]+)`)
	mqttLineRE = regexp.MustCompile(`mosquitto_sub -V mqttv5 -h (\S+) -p (\d+) -u (\S+) -P "\$\(cat (\S+)\)" -t 'consentcam/#' -v`)
)

// startDemo runs the demo with args until it says how to stop it, and
// reads its URLs and broker address from what it printed. The demo is
// stopped when the test ends, if the test has not stopped it.
func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &demoRun{t: t, stop: cancel, done: make(chan error, 1)}
	m := &Main{Stdin: strings.NewReader(""), Stdout: &r.stdout, Stderr: &r.stderr}
	go func() { r.done <- m.Run(ctx, append([]string{"demo"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("the demo did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", r.stdout.String(), r.stderr.String())
		}
	})

	deadline := time.After(60 * time.Second)
	for !strings.Contains(r.stdout.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("the demo ended before it was ready: %v", err)
		case <-deadline:
			t.Fatal("the demo did not say it was ready within 60s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	out := r.stdout.String()
	k, a, b := kioskURLRE.FindStringSubmatch(out), auditURLRE.FindStringSubmatch(out), mqttLineRE.FindStringSubmatch(out)
	if k == nil || a == nil || b == nil {
		t.Fatalf("the demo did not print the kiosk URL, the audit URL and a mosquitto_sub line:\n%s", out)
	}
	r.base, r.kiosk, r.auditor = k[1], k[2], a[1]
	r.broker = "tcp://" + net.JoinHostPort(b[1], b[2])
	r.user, r.pwFile = b[3], b[4]
	return r
}

// wait stops the demo as Ctrl-C does and returns what Run returned.
func (r *demoRun) wait() error {
	r.t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		r.t.Fatal("the demo did not stop within 30s")
		return nil
	}
}

// get fetches a path of the demo's HTTP server with a bearer token ("" for
// none) and returns the status and the body.
func (r *demoRun) get(path, token string) (int, []byte) {
	r.t.Helper()
	return r.do("GET", path, token, nil)
}

// post sends v as JSON and decodes the answer into out.
func (r *demoRun) post(path, token string, v, out any) int {
	r.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	code, resp := r.do("POST", path, token, body)
	if err := json.Unmarshal(resp, out); err != nil {
		r.t.Fatalf("POST %s: %d %s: %v", path, code, resp, err)
	}
	return code
}

func (r *demoRun) do(method, path, token string, body []byte) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, answer
}

// events pulls the whole audit log as the auditor.
func (r *demoRun) events() ([]store.Event, []byte) {
	r.t.Helper()
	code, body := r.get("/v1/audit?limit=10000", r.auditor)
	if code != http.StatusOK {
		r.t.Fatalf("GET /v1/audit: %d %s", code, body)
	}
	var evs []store.Event
	for _, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var ev store.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			r.t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs, body
}

// listener is an MQTT client of the demo's broker that records what
// arrives under the demo's topic prefix.
type listener struct {
	t  *testing.T
	c  mqtt.Client
	mu sync.Mutex
	by map[string][][]byte // topic below the prefix → payloads
}

// listen subscribes to the demo's topics as the mosquitto_sub line the
// demo printed does.
func listen(t *testing.T, r *demoRun, id string) *listener {
	t.Helper()
	l := &listener{t: t, by: map[string][][]byte{}}
	pw, err := os.ReadFile(r.pwFile)
	if err != nil {
		t.Fatalf("the watcher's password file: %v", err)
	}
	l.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.broker).SetClientID(id).SetOrderMatters(true).
		SetUsername(r.user).SetPassword(strings.TrimSpace(string(pw))))
	if tok := l.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker %s: %v", r.broker, tok.Error())
	}
	tok := l.c.Subscribe(demoPrefix+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		l.mu.Lock()
		defer l.mu.Unlock()
		topic := strings.TrimPrefix(m.Topic(), demoPrefix+"/")
		l.by[topic] = append(l.by[topic], m.Payload())
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { l.c.Disconnect(100) })
	return l
}

// waitFor waits until cond holds for the payloads of topic.
func (l *listener) waitFor(what, topic string, cond func(msgs [][]byte) bool) [][]byte {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l.mu.Lock()
		msgs := slices.Clone(l.by[topic])
		l.mu.Unlock()
		if cond(msgs) {
			return msgs
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("waited 60s for %s on …/%s; got %q", what, topic, msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLast waits until the last payload on topic is want.
func (l *listener) waitLast(topic, want string) {
	l.t.Helper()
	l.waitFor(want, topic, func(msgs [][]byte) bool {
		return len(msgs) > 0 && string(msgs[len(msgs)-1]) == want
	})
}

// lastWhenClosed waits until the broker has closed the connection (the demo
// stopped) and checks the last payload that came on topic before.
func (l *listener) lastWhenClosed(topic, want string) {
	l.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); l.c.IsConnectionOpen(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.t.Fatal("the demo's broker still open 60s after the demo stopped")
		}
	}
	l.mu.Lock()
	msgs := l.by[topic]
	l.mu.Unlock()
	if len(msgs) == 0 || string(msgs[len(msgs)-1]) != want {
		l.t.Errorf("…/%s: %q when the broker closed, want %q last", topic, msgs, want)
	}
}

// waitEvent waits for an audit event of type typ and visit.
func (l *listener) waitEvent(typ, visit string) store.Event {
	l.t.Helper()
	var got store.Event
	l.waitFor(typ+" for "+visit, "audit", func(msgs [][]byte) bool {
		for _, m := range msgs {
			var ev store.Event
			if json.Unmarshal(m, &ev) == nil && ev.Type == typ && ev.Visit == visit {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDemo runs the demo as a newcomer would, twice in the same directory:
// what it prints works (the HTTP server, the notice, the token files, the
// broker and its retained topics); a consent token signed with the demo's
// issuer key and published to its broker ends in a saved capture; Ctrl-C
// stops it cleanly; and the second run keeps the keys, the tokens and the
// log, which goes on from where it stopped.
func TestDemo(t *testing.T) {
	model := testenv.Model(t, demoModel)
	dir := filepath.Join(t.TempDir(), "demo-state")

	// First run: the bundled scene, the model named on the command line.
	r := startDemo(t, "--dir", dir, "--http", "127.0.0.1:0", "--source", "scene", "--model", model)
	out := r.stdout.String()
	for _, want := range []string{
		"Camera:", filepath.Join(dir, "scene.avi"),
		"Face detector:", "YuNet, " + model,
		r.base + "/kiosk/withdraw",
		"State (keys, tokens, log):", dir,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output does not say %q:\n%s", want, out)
		}
	}

	if code, body := r.get("/healthz", ""); code != http.StatusOK {
		t.Fatalf("GET /healthz: %d %s", code, body)
	}
	code, noticeBody := r.get("/v1/notice", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/notice: %d %s", code, noticeBody)
	}
	var notice struct {
		Controller map[string]string
		Hash       string
		Purposes   []struct{ ID string }
	}
	if err := json.Unmarshal(noticeBody, &notice); err != nil {
		t.Fatalf("notice %s: %v", noticeBody, err)
	}
	var ids []string
	for _, p := range notice.Purposes {
		ids = append(ids, p.ID)
	}
	if want := []string{"channel-attribution", "entry-security"}; !slices.Equal(ids, want) ||
		!strings.Contains(notice.Controller["en"], "demo") || !strings.Contains(notice.Controller["zh-CN"], "演示") {
		t.Errorf("notice: controller %q, purposes %v; want a demo controller, purposes %v", notice.Controller, ids, want)
	}

	// The tokens in the URLs are those of the 0600 token files.
	for role, tok := range map[string]string{RoleKiosk: r.kiosk, RoleAuditor: r.auditor} {
		path := filepath.Join(dir, "tokens", role+".token")
		if got := strings.TrimSpace(string(readFile(t, path))); got != tok {
			t.Errorf("%s holds %q, the printed URL %q", path, got, tok)
		}
	}
	for _, role := range demoRoles {
		fi, err := os.Stat(filepath.Join(dir, "tokens", role+".token"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s token file: mode %v, want 0600", role, got)
		}
	}

	// A second demo in the same directory says the first has it.
	var second bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &second, Stderr: &second}
	err := m.Run(context.Background(), []string{"demo", "--dir", dir, "--http", "127.0.0.1:0", "--source", "scene", "--model", model})
	if err == nil || !strings.Contains(err.Error(), "another consentcam demo has "+dir+" open") {
		t.Errorf("a second demo in the same directory: %v, want a message naming the first\n%s", err, second.String())
	}

	// The broker it printed holds the agent's retained availability and
	// notice.
	sub := listen(t, r, "demo-test-1")
	sub.waitLast("available", "online")
	got := sub.waitFor("the notice", "notice", func(m [][]byte) bool { return len(m) > 0 })
	if !bytes.Equal(bytes.TrimSpace(got[0]), bytes.TrimSpace(noticeBody)) {
		t.Errorf("retained notice %s, /v1/notice %s", got[0], noticeBody)
	}

	// A visitor agrees: a consent token signed with the demo's issuer key,
	// sent as the front desk would, ends in a saved face crop.
	issuer, err := consent.ReadPrivateKey(filepath.Join(dir, "keys", "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := consent.SignConsent(issuer, demoIssuer, consent.Consent{
		Issuer: "demo-test", Subject: "visitor-1", Visit: "visit-1",
		Audience: consent.Audience(demoSite, demoCamera), Purposes: []string{"channel-attribution"},
		Notice: notice.Hash, IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := r.do("POST", "/v1/visits", r.kiosk, []byte(tok)); code != http.StatusAccepted {
		t.Fatalf("POST /v1/visits: %d %s", code, body)
	}
	// The watcher the demo tells of may only read: a retained message it
	// publishes reaches nobody; and nobody else may connect, not with the
	// agent's client id either.
	forger := listen(t, r, "demo-test-forger")
	forger.c.Publish(demoPrefix+"/available", 1, true, "offline").WaitTimeout(5 * time.Second)
	stranger := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.broker).SetClientID("consentcam-" + demoSite + "-" + demoCamera))
	if tok := stranger.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		stranger.Disconnect(0)
		t.Error("a client without credentials connected to the demo's broker with the agent's client id")
	}
	saved := sub.waitEvent("capture.saved", "visit-1")
	if avail := sub.waitFor("…/available", "available", func(m [][]byte) bool { return len(m) > 0 }); string(avail[len(avail)-1]) != "online" {
		t.Errorf("the watcher forged …/available: %q", avail[len(avail)-1])
	}
	if !slices.Equal(saved.Purposes, []string{"channel-attribution"}) || saved.Subject != "visitor-1" {
		t.Errorf("capture.saved %+v: want subject visitor-1, purposes [channel-attribution]", saved)
	}
	operator := strings.TrimSpace(string(readFile(t, filepath.Join(dir, "tokens", "operator.token"))))
	if code, body := r.get("/v1/records?visit=visit-1", operator); code != http.StatusOK || !bytes.Contains(body, []byte(saved.Record)) {
		t.Errorf("GET /v1/records?visit=visit-1 with the operator token: %d %s; want record %s", code, body, saved.Record)
	}

	// The pages it printed are served, and the visitor's path through them
	// works with the printed kiosk token: agree (a face crop kept for the
	// purpose ticked), then withdraw with the code (erased).
	for _, page := range []string{"/kiosk/", "/kiosk/withdraw", "/kiosk/audit"} {
		if code, body := r.get(page, ""); code != http.StatusOK || !bytes.Contains(body, []byte("<html")) {
			t.Errorf("GET %s: %d, want 200 and a page", page, code)
		}
	}
	var agreed struct{ Visit, Code string }
	if code := r.post("/kiosk/api/agree", r.kiosk, map[string]any{"purposes": []string{"entry-security"}, "notice": notice.Hash}, &agreed); code != http.StatusAccepted {
		t.Fatalf("POST /kiosk/api/agree with the printed kiosk token: %d", code)
	}
	if saved := sub.waitEvent("capture.saved", agreed.Visit); !slices.Equal(saved.Purposes, []string{"entry-security"}) {
		t.Errorf("capture.saved %+v: want purposes [entry-security]", saved)
	}
	var withdrawn struct{ Erased int }
	if code := r.post("/kiosk/api/withdraw", "", map[string]string{"code": agreed.Code}, &withdrawn); code != http.StatusOK || withdrawn.Erased != 1 {
		t.Errorf("POST /kiosk/api/withdraw: %d, %d records erased; want 200, 1", code, withdrawn.Erased)
	}

	// Ctrl-C: Run returns nil and the agent says it stopped.
	if err := r.wait(); err != nil {
		t.Fatalf("the demo returned %v on Ctrl-C, want nil", err)
	}
	sub.lastWhenClosed("available", "stopped")
	first := readLog(t, dir)
	if last := first[len(first)-1]; last.Type != "checkpoint" || first[len(first)-2].Type != "agent.stopped" {
		t.Errorf("the first run's log ends with %s, %s; want agent.stopped, checkpoint", first[len(first)-2].Type, last.Type)
	}
	devicePub := readFile(t, filepath.Join(dir, "keys", "device.pub"))

	// Second run in the same directory: the defaults (webcam or scene,
	// model from $CONSENTCAM_MODELS, port 8765) while port 8765 is taken.
	t.Setenv("CONSENTCAM_MODELS", filepath.Dir(model))
	if hold, err := net.Listen("tcp", demoHTTP); err == nil {
		defer hold.Close()
	} // else it is taken already
	r2 := startDemo(t, "--dir", dir)
	out = r2.stdout.String()
	if !strings.Contains(out, "YuNet, "+filepath.Join(filepath.Dir(model), demoModel)) {
		t.Errorf("second run: the model in $CONSENTCAM_MODELS was not used:\n%s", out)
	}
	if _, err := os.Stat(demoWebcam); err != nil && !strings.Contains(out, "(no webcam at "+demoWebcam+")") {
		t.Errorf("second run: no webcam, yet the output does not say so:\n%s", out)
	}
	if strings.HasSuffix(r2.base, ":8765") || !strings.Contains(out, demoHTTP+" is taken") {
		t.Errorf("second run: %s is taken, yet the demo serves on %s:\n%s", demoHTTP, r2.base, out)
	}
	if r2.kiosk != r.kiosk || r2.auditor != r.auditor {
		t.Errorf("second run: new bearer tokens; want those of the first run")
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "keys", "device.pub")), devicePub) {
		t.Errorf("second run: the device key changed")
	}
	sub2 := listen(t, r2, "demo-test-2")
	sub2.waitLast("available", "online")
	evs, raw := r2.events()
	if len(evs) <= len(first) {
		t.Fatalf("second run: %d events, the first run left %d", len(evs), len(first))
	}
	for i, ev := range first {
		if evs[i].Seq != ev.Seq || evs[i].Type != ev.Type {
			t.Fatalf("second run: event %d is %d %s, the first run wrote %d %s", i, evs[i].Seq, evs[i].Type, ev.Seq, ev.Type)
		}
	}
	if ev := evs[len(first)]; ev.Type != "agent.started" || ev.Seq != first[len(first)-1].Seq+1 {
		t.Errorf("second run: the log goes on with %d %s, want agent.started at seq %d", ev.Seq, ev.Type, first[len(first)-1].Seq+1)
	}
	pub, err := consent.ReadPublicKey(filepath.Join(dir, "keys", "device.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyLog(bytes.NewReader(raw), nil, pub); err != nil {
		t.Errorf("the log of both runs does not verify with the device key: %v", err)
	}
	if err := r2.wait(); err != nil {
		t.Fatalf("second run returned %v on Ctrl-C, want nil", err)
	}
	sub2.lastWhenClosed("available", "stopped")
}

// readLog reads the audit log the demo left in dir's store, as an auditor
// would after it stopped.
func readLog(t *testing.T, dir string) []store.Event {
	t.Helper()
	master, err := consent.ReadMasterKey(filepath.Join(dir, "keys", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	db := store.NewDB(filepath.Join(dir, "state", StoreFile))
	db.MasterKey, db.Site, db.Camera = master, demoSite, demoCamera
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := db.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]store.Event, len(raw))
	for i, line := range raw {
		if err := json.Unmarshal(line, &evs[i]); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
	}
	return evs
}

// TestDemoUsage checks the command line: -h exits 0, mistakes exit 2, a
// missing model file exits 1 before anything is made.
func TestDemoUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo-state")
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"-h"}, 0},
		{"unknown flag", []string{"--nope"}, 2},
		{"argument", []string{"now"}, 2},
		{"bad log level", []string{"--log-level", "loud"}, 2},
		{"missing model", []string{"--dir", dir, "--model", filepath.Join(dir, "none.onnx")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}
			err := m.Run(context.Background(), append([]string{"demo"}, tc.args...))
			if got := m.ExitCode(err); got != tc.code {
				t.Errorf("exit %d (%v), want %d\n%s", got, err, tc.code, out.String())
			}
			if tc.code == 0 && (!errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "consentcam demo [--dir DIR]")) {
				t.Errorf("-h: %v, printed:\n%s", err, out.String())
			}
		})
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed start left %s behind (%v)", dir, err)
	}
}
