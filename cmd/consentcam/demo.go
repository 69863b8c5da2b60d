package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// demoVisitor is the still the demo's scene is made of when there is no
// webcam (demo/README.md says where it comes from).
//
//go:embed demo/visitor.jpg
var demoVisitor []byte

const demoUsage = `Run the whole product on this machine, with no set-up: an MQTT broker, keys,
a camera (the first webcam, else a looping scene made from a bundled photo), a
face detector, and the consent kiosk, served over HTTP. It prints the pages to
open and how to watch the audit events; Ctrl-C stops it.

Usage:

	consentcam demo [--dir DIR] [--http ADDR] [--source SRC] [--model FILE] [--log-level LEVEL]

Arguments:

	--dir DIR        where the demo keeps its keys, bearer tokens, log and scene
	                 (default demo-state); the next run goes on with them
	--http ADDR      the HTTP server's address (default 127.0.0.1:8765, or a free
	                 port when that one is taken)
	--source SRC     a webcam (/dev/video0), a video file, or "scene" for the
	                 bundled scene (default: /dev/video0 if it gives a picture,
	                 else the scene)
	--model FILE     the YuNet model (default: yunet_320x320.onnx from
	                 $CONSENTCAM_MODELS, ../shared/models or /usr/share/consentcam;
	                 without one, OpenCV's weaker cascade)
	--log-level L    debug, info, warn or error (default info); logs go to stderr
`

// The demo's box.
const (
	demoSite     = "demo-office"
	demoCamera   = "entrance-1"
	demoIssuer   = "kiosk-1"
	demoOperator = "ops-1"
	demoHTTP     = "127.0.0.1:8765"
	demoWebcam   = "/dev/video0"
	demoScene    = "scene" // --source value for the bundled scene
	demoModel    = "yunet_320x320.onnx"
)

// demoRoles are the roles the demo makes a bearer token for.
var demoRoles = []string{RoleKiosk, RoleAuditor, RoleOperator}

// DemoCommand runs the whole system on one machine: an embedded MQTT broker,
// generated keys and tokens, a webcam or the bundled scene, and the daemon
// that `consentcam run` starts, with the kiosk on.
type DemoCommand struct{ Stdout, Stderr io.Writer }

// demo is what a run of the demo chose and made.
type demo struct {
	dir      string
	keys     string            // key files
	tokens   map[string]string // role → bearer token
	source   SourceConfig
	camera   string // the source, for people
	model    string // YuNet model, or "" for the cascade
	httpNote string // why the HTTP address is not the one asked for
	broker   string // host:port of the embedded broker
}

// Run prepares the demo's state, starts the broker and the daemon, prints
// what to open, and runs until ctx ends (Ctrl-C).
func (c *DemoCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("demo", demoUsage, c.Stderr)
	dir := fs.String("dir", "demo-state", "")
	httpAddr := fs.String("http", "", "")
	source := fs.String("source", "", "")
	model := fs.String("model", "", "")
	logLevel := fs.String("log-level", "info", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "dir"); err != nil {
		return err
	}
	logger, err := newLogger(c.Stderr, *logLevel)
	if err != nil {
		return err
	}

	d := &demo{dir: filepath.Clean(*dir)}
	d.keys = filepath.Join(d.dir, "keys")
	if d.model, err = findModel(*model); err != nil {
		return err
	}
	if err := d.makeKeys(); err != nil {
		return err
	}
	if err := d.makeTokens(); err != nil {
		return err
	}
	if err := d.chooseSource(ctx, *source, logger); err != nil {
		return err
	}
	listen := *httpAddr
	if listen == "" {
		listen = freeOr(demoHTTP)
		if listen != demoHTTP {
			d.httpNote = demoHTTP + " is taken: the pages are on a free port instead"
		}
	}

	// The broker logs only its errors: it warns of every client that goes
	// away when it stops, and the banner gives its address.
	cfg := d.config(listen)
	agentPassword, err := readSecretFile("demo broker", cfg.MQTT.PasswordFile)
	if err != nil {
		return err
	}
	watcherPassword, err := readSecretFile("demo broker", d.tokenFile(demoWatcherUser))
	if err != nil {
		return err
	}
	broker, addr, err := startBroker(slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		cfg.MQTT.ClientID, agentPassword, watcherPassword)
	if err != nil {
		return err
	}
	defer broker.Close()
	d.broker = addr
	cfg.MQTT.URL = "tcp://" + addr
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	daemon, err := OpenDaemon(cfg, logger)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("another consentcam demo has %s open: stop it, or give this one another --dir (%w)", d.dir, err)
	}
	if err != nil {
		return err
	}
	err = daemon.Run(ctx, func(dm *Daemon) { d.printStarted(c.Stdout, dm) })
	awaitDisconnect(broker, cfg.MQTT.ClientID)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "\nconsentcam demo stopped. Its keys, tokens and log stay in %s for the next run; delete it to start afresh.\n", d.dir)
	return nil
}

// makeKeys generates the demo's keys on its first run and keeps them after.
func (d *demo) makeKeys() error {
	if _, err := os.Stat(filepath.Join(d.keys, "device.key")); err == nil {
		return nil
	}
	if _, err := consent.GenerateKeys(d.keys, false); err != nil {
		return fmt.Errorf("demo keys: %w", err)
	}
	return nil
}

// makeTokens reads the bearer token of each role from DIR/tokens, making a
// random one on the first run.
func (d *demo) makeTokens() error {
	if err := os.MkdirAll(filepath.Join(d.dir, "tokens"), 0o700); err != nil {
		return fmt.Errorf("demo tokens: %w", err)
	}
	d.tokens = map[string]string{}
	for _, role := range append([]string{demoAgentUser, demoWatcherUser}, demoRoles...) {
		path := d.tokenFile(role)
		if err := newTokenFile(path); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("demo tokens: %w", err)
		}
		tok, err := readSecretFile("demo tokens", path)
		if err != nil {
			return err
		}
		d.tokens[role] = tok
	}
	return nil
}

func (d *demo) tokenFile(role string) string {
	return filepath.Join(d.dir, "tokens", role+".token")
}

// newTokenFile writes a random bearer token (as `openssl rand -hex 32`)
// into a new file of mode 0600; os.ErrExist when there is one.
func newTokenFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand)
	_, err = fmt.Fprintln(f, hex.EncodeToString(secret))
	return errors.Join(err, f.Close())
}

// chooseSource picks the camera: --source when given, else the first webcam
// if it gives a picture, else the bundled scene (written on the first run).
func (d *demo) chooseSource(ctx context.Context, flag string, logger *slog.Logger) error {
	why := ""
	switch flag {
	case "":
		err := tryWebcam(ctx, demoWebcam)
		if err == nil {
			d.source, d.camera = SourceConfig{URL: demoWebcam, Realtime: true}, "the webcam "+demoWebcam
			return nil
		}
		why = " (no webcam at " + demoWebcam + ")"
		if !errors.Is(err, os.ErrNotExist) {
			why = " (" + demoWebcam + " gives no picture)"
			logger.Warn("the webcam gives no picture: using the bundled scene", "device", demoWebcam, "error", err)
		}
	case demoScene:
	default:
		d.source, d.camera = SourceConfig{URL: flag, Realtime: true, Loop: true}, flag
		return nil
	}
	path := filepath.Join(d.dir, "scene.avi")
	if _, err := os.Stat(path); err != nil {
		tmp := filepath.Join(d.dir, "scene.tmp.avi")
		if _, err := opencv.WriteStillClip(tmp, demoVisitor, opencv.StillClipOptions{}); err != nil {
			return fmt.Errorf("demo scene: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("demo scene: %w", err)
		}
	}
	d.source = SourceConfig{URL: path, Realtime: true, Loop: true}
	d.camera = "a looping scene made from a bundled photo, " + path + why
	return nil
}

// tryWebcam opens dev and reads one frame.
func tryWebcam(ctx context.Context, dev string) error {
	if _, err := os.Stat(dev); err != nil {
		return err
	}
	src, err := opencv.Open(ctx, opencv.SourceOptions{URL: dev})
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := src.Read(ctx)
	if err != nil {
		return err
	}
	return f.Close()
}

// findModel returns the YuNet model to use: flag when given (it must
// exist), else the first yunet_320x320.onnx in $CONSENTCAM_MODELS,
// ../shared/models and /usr/share/consentcam, else "" (the cascade).
func findModel(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("--model: %w", err)
		}
		return flag, nil
	}
	var dirs []string
	if d := os.Getenv("CONSENTCAM_MODELS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range append(dirs, filepath.Join("..", "shared", "models"), "/usr/share/consentcam") {
		p := filepath.Join(dir, demoModel)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", nil
}

// freeOr returns addr if it can be listened on now, else a free port of
// 127.0.0.1 (":0": the server picks it).
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	l.Close()
	return addr
}

// Broker users of the demo: the agent, and a watcher that may only read
// (the mosquitto_sub line the demo prints). Their passwords are files in
// the demo's tokens/.
const (
	demoAgentUser   = "consentcam"
	demoWatcherUser = "watcher"
)

// startBroker starts an MQTT broker on a free port of 127.0.0.1 and returns
// its address. Even there, other users of the machine reach it: only the
// agent (by user name, password and client id) may publish, the watcher
// may only read, and nobody else connects, so no one can take the agent's
// session, or retain a false notice, availability or log.
func startBroker(logger *slog.Logger, clientID, agentPassword, watcherPassword string) (*mochi.Server, string, error) {
	srv := mochi.New(&mochi.Options{Logger: logger.With("component", "demo-broker")})
	tcp := listeners.NewTCP(listeners.Config{ID: "demo", Address: "127.0.0.1:0"})
	ledger := &auth.Ledger{
		Auth: auth.AuthRules{
			{Client: auth.RString(clientID), Username: demoAgentUser, Password: auth.RString(agentPassword), Allow: true},
			{Client: auth.RString(clientID), Allow: false}, // the agent's client id is the agent's alone
			{Username: demoWatcherUser, Password: auth.RString(watcherPassword), Allow: true},
		},
		ACL: auth.ACLRules{
			{Username: demoAgentUser, Filters: auth.Filters{"consentcam/#": auth.ReadWrite}},
			{Username: demoWatcherUser, Filters: auth.Filters{"consentcam/#": auth.ReadOnly}},
			{Filters: auth.Filters{"#": auth.Deny}},
		},
	}
	err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	if err == nil {
		err = srv.AddListener(tcp)
	}
	if err == nil {
		err = srv.Serve()
	}
	if err != nil {
		srv.Close()
		return nil, "", fmt.Errorf("demo broker: %w", err)
	}
	return srv, tcp.Address(), nil
}

// awaitDisconnect waits, a little, until the broker has taken the DISCONNECT
// of the client id: a broker closed before that publishes the client's last
// will, and the agent's ("offline") would follow its "stopped".
func awaitDisconnect(srv *mochi.Server, id string) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cl, ok := srv.Clients.Get(id); !ok || cl.Closed() {
			return
		}
	}
}

// config is the configuration `consentcam run` would read for this demo.
func (d *demo) config(listen string) Config {
	cfg := DefaultConfig()
	cfg.Site, cfg.Camera = demoSite, demoCamera
	cfg.StateDir = filepath.Join(d.dir, "state")
	cfg.Source = d.source
	cfg.Capture.Model = d.model // detector auto: YuNet with a model, else the cascade
	key := func(name string) string { return filepath.Join(d.keys, name) }
	cfg.Keys = KeysConfig{Master: key("master.key"), Device: key("device.key")}
	cfg.Issuers = []KeyRef{{KID: demoIssuer, PublicKey: key("issuer.pub")}}
	cfg.Operators = []KeyRef{{KID: demoOperator, PublicKey: key("operator.pub")}}
	cfg.Kiosk = KioskConfig{Issuer: demoIssuer, Key: key("issuer.key")}
	cfg.Notice = NoticeConfig{
		Language: consent.LangChinese,
		Controller: Langs(consent.Text{
			consent.LangChinese: "consentcam 演示：一个并不存在的售楼处",
			consent.LangEnglish: "consentcam demo: a sales office that does not exist",
		}),
		Contact: Langs(consent.Text{
			consent.LangChinese: "无人：这是在本机上运行的演示。",
			consent.LangEnglish: "Nobody: this is a demo running on this computer.",
		}),
		Withdraw: Langs(consent.Text{
			consent.LangChinese: "这是演示：打开终端的撤回页面，输入您得到的撤回码。",
			consent.LangEnglish: "This is a demo: open the kiosk's withdraw page and enter the code you were given.",
		}),
		Alternative: Langs(consent.Text{
			consent.LangChinese: "不拍照也可以：请到前台用名片登记来访。",
			consent.LangEnglish: "No photo needed: register at the front desk with your name card instead.",
		}),
	}
	cfg.Compliance = &ComplianceConfig{
		PIAReference: "DEMO-PIA-0", PIADate: "2025-05-20",
		DPOContact: Langs(consent.Text{consent.LangChinese: "演示：无", consent.LangEnglish: "demo: nobody"}),
	}
	cfg.Purposes = []PurposeConfig{
		{ID: "channel-attribution", Retention: 720 * time.Hour, Description: Langs(consent.Text{
			consent.LangChinese: "了解您是通过哪个销售渠道来的（演示）", consent.LangEnglish: "Tell which sales channel brought you (demo)"})},
		{ID: "entry-security", Retention: 24 * time.Hour, Description: Langs(consent.Text{
			consent.LangChinese: "保障入口安全（演示）", consent.LangEnglish: "Keep the entrance safe (demo)"})},
	}
	cfg.MQTT.Username, cfg.MQTT.PasswordFile = demoAgentUser, d.tokenFile(demoAgentUser)
	cfg.MQTT.ClientID = "consentcam-" + demoSite + "-" + demoCamera
	cfg.HTTP.Listen = listen
	for _, role := range demoRoles {
		cfg.HTTP.Tokens = append(cfg.HTTP.Tokens, TokenRef{Role: role, TokenFile: d.tokenFile(role)})
	}
	return cfg
}

// printStarted tells the user what runs and what to open.
func (d *demo) printStarted(w io.Writer, dm *Daemon) {
	base := "http://" + dm.HTTP.ListenAddr()
	host, port, _ := net.SplitHostPort(d.broker)
	detector := "YuNet, " + d.model
	if d.model == "" {
		detector = "OpenCV's LBP cascade"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nconsentcam demo: the whole product, running on this machine (site %s, camera %s).\n\n", demoSite, demoCamera)
	if d.httpNote != "" {
		fmt.Fprintf(&b, "%s.\n\n", d.httpNote)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("Kiosk, the visitor's tablet:", base+"/kiosk/#token="+d.tokens[RoleKiosk])
	row("Withdraw consent:", base+"/kiosk/withdraw")
	row("Audit log, for the auditor:", base+"/kiosk/audit#token="+d.tokens[RoleAuditor])
	row("HTTP API:", base+"/v1/notice (also /healthz, /metrics); bearer tokens in "+filepath.Join(d.dir, "tokens")+"/")
	row("", fmt.Sprintf(`curl -H "Authorization: Bearer $(cat %s)" '%s/v1/audit'`, d.tokenFile(RoleAuditor), base))
	row("MQTT broker:", d.broker+", topics "+dm.Bus.TopicPrefix+"/…")
	// MQTT 5: the broker says goodbye when it stops, which a 3.1.1 client
	// takes for a protocol error.
	row("", fmt.Sprintf("mosquitto_sub -V mqttv5 -h %s -p %s -u %s -P \"$(cat %s)\" -t 'consentcam/#' -v",
		host, port, demoWatcherUser, d.tokenFile(demoWatcherUser)))
	row("Camera:", d.camera)
	row("Face detector:", detector)
	row("State (keys, tokens, log):", d.dir+"/ (kept for the next run)")
	tw.Flush()
	if d.model == "" {
		fmt.Fprintf(&b, "\nDetection is weaker without the YuNet model: README.md (\"Face detector model\") says where to get %s; put it in ../shared/models or pass --model FILE.\n", demoModel)
	}
	b.WriteString("\nOpen the kiosk, agree, and face the camera: it keeps your face crop for the purposes you ticked.\n")
	b.WriteString("The audit page and mosquitto_sub show every decision.\n\nPress Ctrl-C to stop.\n")
	io.WriteString(w, b.String())
}
