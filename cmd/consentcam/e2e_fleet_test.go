package main

// The fleet end to end: real site Mosquittos bridged (deploy/
// mosquitto-bridge.conf, TLS and a password) to a real central Mosquitto
// (deploy/mosquitto-central.conf and its ACL), real agents on the site
// brokers, the monitor (`consentcam fleet`, this test binary re-executed)
// on a real PostgreSQL.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
	"github.com/consentcam/consentcam/fleet/fleettest"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// pki is a CA and the central broker's certificate for 127.0.0.1.
type pki struct{ ca, cert, key string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "consentcam test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := pki{ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "central.crt"), key: filepath.Join(dir, "central.key")}
	for path, block := range map[string]*pem.Block{
		p.ca: {Type: "CERTIFICATE", Bytes: caDER}, p.cert: {Type: "CERTIFICATE", Bytes: der}, p.key: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// central is the head office's broker, configured as deploy/ ships it.
type central struct {
	*testenv.Mosquitto
	pki       pki
	passwords map[string]string // user → password
}

// URL is the central broker's TLS address.
func (c *central) URL() string { return "ssl://" + c.Addr() }

// deployConf reads a file of deploy/ and applies replacements, each of
// which must match.
func deployConf(t *testing.T, name string, repl [][2]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.Root(), "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range repl {
		re := regexp.MustCompile(r[0])
		if !re.MatchString(text) {
			t.Fatalf("deploy/%s has no line matching %s", name, r[0])
		}
		text = re.ReplaceAllString(text, r[1])
	}
	return text
}

func startCentral(t *testing.T, sites ...string) *central {
	t.Helper()
	c := &central{pki: newPKI(t), passwords: map[string]string{}}
	users := append([]string{"consentcam-fleet", "operator", "auditor"}, sites...)
	for _, u := range users {
		c.passwords[u] = "pw-" + u
	}
	passwd := testenv.Program(t, "mosquitto_passwd")
	c.Mosquitto = testenv.StartMosquittoConfig(t, func(port int, dir string) string {
		pw := filepath.Join(dir, "passwd")
		for i, u := range users {
			args := []string{"-b", pw, u, c.passwords[u]}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		acl, err := os.ReadFile(filepath.Join(testenv.Root(), "deploy", "consentcam-central.acl"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "central.acl"), acl, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		return deployConf(t, "mosquitto-central.conf", [][2]string{
			{`(?m)^listener 8883$`, fmt.Sprintf("listener %d 127.0.0.1", port)},
			{`(?m)^certfile .*$`, "certfile " + c.pki.cert},
			{`(?m)^keyfile .*$`, "keyfile " + c.pki.key},
			{`(?m)^cafile .*$`, "cafile " + c.pki.ca},
			{`(?m)^password_file .*$`, "password_file " + pw},
			{`(?m)^acl_file .*$`, "acl_file " + filepath.Join(dir, "central.acl")},
		}) + "persistence_location " + dir + "/\n"
	})
	return c
}

// secret writes a file holding a secret, mode 0600.
func secret(t *testing.T, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSite starts a site broker (anonymous on loopback, as the e2e boxes
// connect) with the bridge of deploy/mosquitto-bridge.conf to the centre,
// and waits until the bridge is connected (its notification says 1): the
// bridge subscribes at the site on its first connection, so what a box
// publishes before that does not cross (docs/FLEET.md).
func startSite(t *testing.T, c *central, site string) *testenv.Mosquitto {
	t.Helper()
	m := testenv.StartMosquittoConfig(t, func(port int, dir string) string {
		bridge := deployConf(t, "mosquitto-bridge.conf", [][2]string{
			{`(?m)^address .*$`, "address " + c.Addr()},
			{`(?m)^bridge_cafile .*$`, "bridge_cafile " + c.pki.ca},
			{`(?m)^remote_password .*$`, "remote_password " + c.passwords[site]},
			{`office-07`, site},
		})
		return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 0
set_tcp_nodelay true
`, port, dir) + bridge
	})
	up := make(chan struct{})
	var once sync.Once
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("bridge-watch-" + site))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the site broker: %v", tok.Error())
	}
	defer cl.Disconnect(50)
	cl.Subscribe("consentcam/v1/"+site+"/bridge", 1, func(_ mqtt.Client, msg mqtt.Message) {
		if string(msg.Payload()) == "1" {
			once.Do(func() { close(up) })
		}
	})
	select {
	case <-up:
	case <-time.After(30 * time.Second):
		t.Fatalf("the bridge of %s did not connect in 30s:\n%s", site, m.Log())
	}
	return m
}

// centralClient connects to the central broker as a user, over TLS, with a
// persistent session, and records what arrives on the filters it
// subscribes to.
type centralClient struct {
	t  *testing.T
	c  mqtt.Client
	mu sync.Mutex
	// got are the payloads by topic; audit, the …/audit payloads by
	// topic prefix and seq.
	got   map[string][][]byte
	audit map[string]map[uint64][]byte
	order map[string][]uint64
}

func connectCentral(t *testing.T, c *central, user string, filters ...string) *centralClient {
	t.Helper()
	cc := &centralClient{t: t, got: map[string][][]byte{}, audit: map[string]map[uint64][]byte{}, order: map[string][]uint64{}}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(c.pki.ca)
	pool.AppendCertsFromPEM(ca)
	handle := func(_ mqtt.Client, m mqtt.Message) {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		cc.got[m.Topic()] = append(cc.got[m.Topic()], m.Payload())
		if prefix, ok := strings.CutSuffix(m.Topic(), "/audit"); ok {
			var ev store.Event
			if json.Unmarshal(m.Payload(), &ev) == nil {
				if cc.audit[prefix] == nil {
					cc.audit[prefix] = map[uint64][]byte{}
				}
				if _, dup := cc.audit[prefix][ev.Seq]; !dup {
					cc.audit[prefix][ev.Seq] = m.Payload()
				}
				cc.order[prefix] = append(cc.order[prefix], ev.Seq)
			}
		}
	}
	opts := mqtt.NewClientOptions().AddBroker(c.URL()).SetClientID(user).SetUsername(user).SetPassword(c.passwords[user]).
		SetTLSConfig(&tls.Config{RootCAs: pool}).SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).SetOrderMatters(true).
		SetDefaultPublishHandler(handle)
	cc.c = mqtt.NewClient(opts)
	if tok := cc.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the central broker as %s: %v", user, tok.Error())
	}
	for _, f := range filters {
		if tok := cc.c.Subscribe(f, 1, handle); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	t.Cleanup(func() { cc.c.Disconnect(50) })
	return cc
}

// seqs returns the seqs of a box's events that arrived, in seq order, and
// the arrival order, duplicates included.
func (cc *centralClient) seqs(prefix string) (have []uint64, order []uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for s := range cc.audit[prefix] {
		have = append(have, s)
	}
	slices.Sort(have)
	return have, slices.Clone(cc.order[prefix])
}

// waitAudit waits until seqs 0 to n-1 of a box arrived at the centre.
func (cc *centralClient) waitAudit(prefix string, n uint64) {
	cc.t.Helper()
	ok := testenv.WaitUntil(30*time.Second, func() bool {
		have, _ := cc.seqs(prefix)
		return uint64(len(have)) >= n && have[n-1] == n-1
	})
	if !ok {
		have, _ := cc.seqs(prefix)
		cc.t.Fatalf("waited 30s for seqs 0..%d of %s at the central broker; have %v", n-1, prefix, have)
	}
}

// TestBridge: a site broker bridged to the central broker as deploy/ ships
// them (TLS, a password, the ACL): an agent's events reach the centre in
// order, and survive a restart of the link; a revoke published at the
// centre is carried out at the box, and its receipt comes back.
func TestBridge(t *testing.T) {
	c := startCentral(t, e2eSite)
	site := startSite(t, c, e2eSite)
	at := connectCentral(t, c, "auditor", "consentcam/v1/"+e2eSite+"/"+e2eCamera+"/#")
	b := newBox(t, boxConfig{scene: "visitor", broker: site})

	b.sub.Publish("consent", b.consentToken("v1", "s1", "channel-attribution"))
	saved := b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "v1"))
	at.waitAudit(b.prefix(), saved.Seq+1)

	// The link goes down (the central broker restarts): what the box
	// publishes meanwhile waits at the site and arrives after.
	c.Stop()
	b.sub.Publish("consent", b.consentToken("v2", "s1", "channel-attribution"))
	saved = b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "v2"))
	c.Start()
	at.waitAudit(b.prefix(), saved.Seq+1)
	have, order := at.seqs(b.prefix())
	next := uint64(0)
	for _, s := range order {
		if s > next {
			t.Fatalf("seq %d arrived at the centre before seq %d (arrival order %v)", s, next, order)
		}
		if s == next {
			next++
		}
	}
	for i, s := range have {
		if !bytes.Equal(at.audit[b.prefix()][s], b.sub.Received()[i]) {
			t.Fatalf("seq %d differs at the centre", s)
		}
	}
	// Retained messages cross too: the centre knows the camera is online.
	at.mu.Lock()
	avail := at.got[b.prefix()+"/available"]
	at.mu.Unlock()
	if len(avail) == 0 || string(avail[len(avail)-1]) != "online" {
		t.Errorf("…/available at the centre: %q", avail)
	}

	// A revoke published at the centre, by the operator's tool.
	keysDir := t.TempDir()
	pub, _ := os.ReadFile(filepath.Join(b.keys, "device.pub"))
	os.MkdirAll(filepath.Join(keysDir, e2eSite), 0o755)
	os.WriteFile(filepath.Join(keysDir, e2eSite, b.camera+".pub"), pub, 0o644)
	stdout, stderr, code := runArgs(t, "revoke", "--broker", c.URL(), "--ca-file", c.pki.ca,
		"--username", "operator", "--password-file", secret(t, c.passwords["operator"]),
		"--site", e2eSite, "--subject", "s1", "--key", filepath.Join(b.keys, "operator.key"), "--kid", "ops-1",
		"--keys-dir", keysDir, "--timeout", "15s")
	if code != 0 {
		t.Fatalf("consentcam revoke at the centre: exit %d\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`(?m)^entrance-1\s+online\s+2\s+\d+\s+yes`).MatchString(stdout) {
		t.Errorf("revoke's table:\n%s", stdout)
	}
	if recs := b.records("subject=s1"); len(recs) != 0 {
		t.Errorf("records left after the revoke: %d", len(recs))
	}
}

// fleetProc is `consentcam fleet` running as a child process.
type fleetProc struct {
	t      *testing.T
	config string
	addr   string
	token  string
	mu     sync.Mutex
	logs   bytes.Buffer
	cmd    *exec.Cmd
	exited chan error
}

func (f *fleetProc) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs.Write(p)
}

func (f *fleetProc) start() {
	f.t.Helper()
	f.cmd = exec.Command(os.Args[0], "fleet", "--config", f.config, "--log-level", "debug")
	f.cmd.Env = append(os.Environ(), mainEnv+"=1")
	f.cmd.Stdout, f.cmd.Stderr = f, f
	if err := f.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.exited = make(chan error, 1)
	go func() { f.exited <- f.cmd.Wait() }()
	if !testenv.WaitUntil(30*time.Second, func() bool {
		resp, err := http.Get("http://" + f.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		f.t.Fatalf("consentcam fleet not answering after 30s:\n%s", f.logs.String())
	}
	f.t.Cleanup(func() {
		f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(20 * time.Second):
			f.cmd.Process.Kill()
			f.t.Error("consentcam fleet did not stop within 20s of SIGTERM")
		}
		if f.t.Failed() {
			f.mu.Lock()
			f.t.Logf("consentcam fleet log:\n%s", f.logs.String())
			f.mu.Unlock()
		}
	})
}

func (f *fleetProc) get(path string, v any) {
	f.t.Helper()
	resp, err := http.Get("http://" + f.addr + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, v); err != nil {
		f.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func (f *fleetProc) alarm(site, camera, kind string) *fleet.Alarm {
	f.t.Helper()
	var as []fleet.Alarm
	f.get("/v1/alarms", &as)
	for _, a := range as {
		if a.Site == site && a.Camera == camera && a.Kind == kind {
			return &a
		}
	}
	return nil
}

// waitAlarm waits until an alarm is raised (want) or cleared (!want).
func (f *fleetProc) waitAlarm(site, camera, kind string, want bool) *fleet.Alarm {
	f.t.Helper()
	var a *fleet.Alarm
	if !testenv.WaitUntil(60*time.Second, func() bool {
		a = f.alarm(site, camera, kind)
		return (a != nil) == want
	}) {
		var as []fleet.Alarm
		f.get("/v1/alarms", &as)
		f.t.Fatalf("waited 60s for the %s alarm of %s/%s to be raised=%v; alarms: %+v", kind, site, camera, want, as)
	}
	return a
}

func (f *fleetProc) box(site, camera string) *fleet.BoxView {
	f.t.Helper()
	var boxes []fleet.BoxView
	f.get("/v1/boxes", &boxes)
	for _, b := range boxes {
		if b.Site == site && b.Camera == camera {
			return &b
		}
	}
	return nil
}

// waitVerified waits until a box's log is verified to at least n events.
func (f *fleetProc) waitVerified(site, camera string, n uint64) {
	f.t.Helper()
	if !testenv.WaitUntil(60*time.Second, func() bool {
		b := f.box(site, camera)
		return b != nil && b.Size >= n
	}) {
		f.t.Fatalf("waited 60s for %s/%s verified to %d events: %+v", site, camera, n, f.box(site, camera))
	}
}

// copyState copies a box's state directory (a backup, or its restore).
func copyState(t *testing.T, from, to string) {
	t.Helper()
	os.RemoveAll(to)
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestFleetEndToEnd: two sites (two site brokers, three agents) bridged to
// a central Mosquitto, the monitor on PostgreSQL. A box killed, a log
// forked by restoring an old state file, a seq held back, a retention rule
// broken: each alarm raised, then cleared where its cause goes away. The
// auditor pulls a box's log from the monitor, and the page of the boxes is
// read in Chromium.
func TestFleetEndToEnd(t *testing.T) {
	const siteB = "office-08"
	c := startCentral(t, e2eSite, siteB)
	siteA := startSite(t, c, e2eSite)
	brokerB := startSite(t, c, siteB)
	pg := testenv.StartPostgres(t)

	// The kiosks' and operators' keys, and the monitor's directory of the
	// boxes' device keys, into which each box's goes before it starts: the
	// monitor refuses what a box it has no key of publishes.
	siteKeys := filepath.Join(t.TempDir(), "site-keys")
	if out, err := runMain(t, "keys", "gen", "--dir", siteKeys); err != nil {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	keysDir := t.TempDir()
	install := func(b *box) {
		pub, err := os.ReadFile(filepath.Join(b.keys, "device.pub"))
		if err == nil {
			err = os.MkdirAll(filepath.Join(keysDir, b.site), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(keysDir, b.site, b.camera+".pub"), pub, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// A box the test plays, to hold a seq back.
	sim := fleettest.NewBox(siteB, "sim")
	if err := sim.WriteKey(keysDir); err != nil {
		t.Fatal(err)
	}

	f := &fleetProc{t: t, addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), token: "fleet-auditor-token-0123456789"}
	f.config = filepath.Join(t.TempDir(), "fleet.yaml")
	cfg := fmt.Sprintf(`mqtt:
  url: %s
  client_id: consentcam-fleet
  username: consentcam-fleet
  password_file: %s
  ca_file: %s
postgres: {url: "%s"}
http:
  listen: %s
  tokens: [{role: auditor, token_file: %s}]
boxes:
  keys_dir: %s
  issuers: [{kid: kiosk-1, public_key: %s}]
  operators: [{kid: ops-1, public_key: %s}]
  tolerance: 1s
alarms: {gap_after: 2s, silence_intervals: 3, hold: 5s}
`, c.URL(), secret(t, c.passwords["consentcam-fleet"]), c.pki.ca, pg.URL(), f.addr, secret(t, f.token), keysDir,
		filepath.Join(siteKeys, "issuer.pub"), filepath.Join(siteKeys, "operator.pub"))
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.start()

	e1 := newBox(t, boxConfig{scene: "visitor", camera: "entrance-1", broker: siteA, siteKeys: siteKeys, beforeStart: install})
	// entrance-2 sweeps every 20 s but keeps entry-security faces 2 s:
	// rule 4 (a retention of 2 s with a slow sweep fails).
	e2 := newBox(t, boxConfig{scene: "visitor", camera: "entrance-2", broker: siteA, siteKeys: siteKeys, beforeStart: install,
		sweep: 20 * time.Second})
	lobby := newBox(t, boxConfig{scene: "visitor", site: siteB, camera: "lobby", broker: brokerB, siteKeys: siteKeys, beforeStart: install})
	e1.sub.AllowForks()
	for _, b := range []*box{e1, e2, lobby} {
		f.waitVerified(b.site, b.camera, 2)
	}

	t.Run("a box killed", func(t *testing.T) {
		lobby.stop(syscall.SIGKILL)
		a := f.waitAlarm(siteB, "lobby", fleet.AlarmOffline, true)
		t.Logf("raised: %s", a.Message)
		lobby.start()
		f.waitAlarm(siteB, "lobby", fleet.AlarmOffline, false)
	})

	t.Run("a seq held back", func(t *testing.T) {
		sub := testenv.Subscribe(t, brokerB, "sim-publisher", "consentcam/v1/"+siteB+"/sim")
		sub.Publish("available", []byte("online"))
		sub.Publish("audit", sim.Started(fleettest.Settings(time.Minute)))
		heldBack := sim.Append(fleettest.Declined(1))
		sub.Publish("audit", sim.Append(fleettest.Declined(2)))
		cp, ev := sim.Checkpoint()
		sub.Publish("audit", ev)
		sub.Publish("checkpoint", cp)
		a := f.waitAlarm(siteB, "sim", fleet.AlarmGap, true)
		t.Logf("raised: %s", a.Message)
		sub.Publish("audit", heldBack)
		f.waitAlarm(siteB, "sim", fleet.AlarmGap, false)
		f.waitVerified(siteB, "sim", 3)
	})

	t.Run("a retention rule broken", func(t *testing.T) {
		e2.sub.Publish("consent", e2.consentToken("v-sec", "s-sec", "entry-security"))
		e2.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "v-sec"))
		a := f.waitAlarm(e2.site, "entrance-2", fleet.AlarmRule, true)
		if a.Key != "rule 4" {
			t.Errorf("alarm %+v", a)
		}
		t.Logf("raised: %s", a.Message)
		f.waitAlarm(e2.site, "entrance-2", fleet.AlarmRule, false) // alarms.hold without another
	})

	t.Run("a log forked", func(t *testing.T) {
		backup, current := filepath.Join(t.TempDir(), "backup"), filepath.Join(t.TempDir(), "current")
		e1.stop(syscall.SIGTERM)
		copyState(t, e1.state, backup)
		e1.start()
		for i, v := range []string{"f1", "f2"} {
			e1.sub.Publish("consent", e1.consentToken(v, fmt.Sprintf("s-%d", i), "channel-attribution"))
			e1.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, v))
		}
		last := e1.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "f2"))
		f.waitVerified(e1.site, "entrance-1", last.Seq+1)
		e1.stop(syscall.SIGTERM)
		copyState(t, e1.state, current)

		// The owner restores last week's state file.
		copyState(t, backup, e1.state)
		e1.start()
		a := f.waitAlarm(e1.site, "entrance-1", fleet.AlarmFork, true)
		t.Logf("raised: %s (payload sha256 %s)", a.Message, a.PayloadSHA256)
		if a.PayloadSHA256 == "" {
			t.Error("the fork alarm names no payload")
		}
		e1.stop(syscall.SIGTERM)

		// The right state file back: its checkpoints verify again.
		copyState(t, current, e1.state)
		e1.start()
		f.waitAlarm(e1.site, "entrance-1", fleet.AlarmFork, false)
	})

	t.Run("the auditor pulls a box's log from the monitor", func(t *testing.T) {
		dir := t.TempDir()
		token := secret(t, f.token)
		cp := filepath.Join(dir, "checkpoint")
		stdout, stderr, code := runArgs(t, "audit", "pull", "--url", "http://"+f.addr, "--token-file", token,
			"--site", siteB, "--camera", "lobby", "--checkpoint", cp)
		if code != 0 {
			t.Fatalf("audit pull from the monitor: exit %d: %s", code, stderr)
		}
		log := filepath.Join(dir, "log.jsonl")
		os.WriteFile(log, []byte(stdout), 0o644)
		out, errOut, code := runArgs(t, "audit", "verify", "--pubkey", filepath.Join(lobby.keys, "device.pub"), "--checkpoint", cp, log)
		if code != 0 {
			t.Fatalf("audit verify of the monitor's log: exit %d\n%s%s", code, out, errOut)
		}
		// The same log as the box's own, as far as the monitor verified it.
		own := lobby.events()
		n := strings.Count(stdout, "\n")
		if n < 2 || n > len(own) {
			t.Fatalf("the monitor served %d events, the box has %d", n, len(own))
		}
		// A bundle too: its log verifies; the tokens, which never go on
		// the bus, are not in it (docs/FLEET.md).
		bundle := filepath.Join(dir, "bundle")
		if _, stderr, code := runArgs(t, "audit", "pull", "--url", "http://"+f.addr, "--token-file", token,
			"--site", siteB, "--camera", "lobby", "--bundle", bundle); code != 0 {
			t.Fatalf("audit pull --bundle from the monitor: exit %d: %s", code, stderr)
		}
		out, errOut, code = runArgs(t, "audit", "check", bundle, "--pubkey", filepath.Join(lobby.keys, "device.pub"))
		if code == 2 || !strings.Contains(out, "log     PASS") {
			t.Errorf("audit check of the monitor's bundle: exit %d, want its log verified\n%s%s", code, out, errOut)
		}
		if _, stderr, code := runArgs(t, "audit", "pull", "--url", "http://"+f.addr, "--token-file", token, "--site", siteB); code != 2 {
			t.Errorf("--site without --camera: exit %d %s", code, stderr)
		}
		if _, _, code := runArgs(t, "audit", "pull", "--url", "http://"+f.addr, "--token-file", secret(t, "not-the-auditor-token"),
			"--site", siteB, "--camera", "lobby"); code != 1 {
			t.Errorf("a wrong token: exit %d", code)
		}
	})

	t.Run("the page of the boxes", func(t *testing.T) {
		lobby.stop(syscall.SIGKILL) // an alarm to show
		f.waitAlarm(siteB, "lobby", fleet.AlarmOffline, true)
		tab := newBrowserTab(t, "http://"+f.addr)
		tab.open("/")
		tab.waitFor(`document.querySelectorAll("tbody tr").length === 4`)
		row := tab.text("box-office-08-lobby")
		if !strings.Contains(row, "offline") || !strings.Contains(row, "last will") {
			t.Errorf("the lobby's row: %q", row)
		}
		if row := tab.text("box-office-07-entrance-1"); !strings.Contains(row, "online") || !strings.Contains(row, "none") {
			t.Errorf("entrance-1's row: %q", row)
		}
		tab.shot("fleet.png")
		lobby.start()
	})
}
