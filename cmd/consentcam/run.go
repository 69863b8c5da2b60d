package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/mqttbus"
	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
)

// The concrete types satisfy the interfaces the agent and its transports
// consume.
var (
	_ agent.Store      = (*store.DB)(nil)
	_ agent.Verifier   = (*consent.Verifier)(nil)
	_ agent.Detector   = (capture.Detector)(nil)
	_ agent.Witnesser  = (*witness.Client)(nil)
	_ httpapi.Core     = (*agent.Agent)(nil)
	_ httpapi.AuditLog = (*store.DB)(nil)
	_ mqttbus.Core     = (*agent.Agent)(nil)
	_ mqttbus.Outbox   = (*store.DB)(nil)
)

// StoreFile is the bbolt file in state_dir.
const StoreFile = "consentcam.db"

// RunCommand runs the daemon until it is told to stop.
type RunCommand struct {
	Stdout io.Writer
	Stderr io.Writer

	// Started, when set, is called with the daemon once it runs (tests).
	Started func(*Daemon)
}

const runUsage = `Run the daemon until SIGTERM or SIGINT.

Usage:

	consentcam run --config FILE [--log-level LEVEL]

Arguments:

	--config FILE        the configuration (deploy/consentcam.example.yaml)
	--log-level LEVEL    debug, info (default), warn or error
`

// Run parses the flags, starts the agent and waits for ctx to end (SIGTERM
// or SIGINT), then shuts down cleanly.
func (c *RunCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("run", runUsage, c.Stderr)
	configPath := fs.String("config", "", "")
	logLevel := fs.String("log-level", "info", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	logger, err := newLogger(c.Stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := ReadConfigFile(*configPath)
	if err != nil {
		return err
	}
	d, err := OpenDaemon(cfg, logger)
	if err != nil {
		return err
	}
	return d.Run(ctx, c.Started)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// Daemon is the agent wired to its store, keys, camera and detector, and
// to its transports: the MQTT session and the HTTP API.
type Daemon struct {
	Agent    *agent.Agent
	Bus      *mqttbus.Bus
	HTTP     *httpapi.Server
	DB       *store.DB
	Detector capture.Detector
	Logger   *slog.Logger
}

// OpenDaemon reads the keys the configuration names, opens the store and the
// detector, and builds the agent and its transports (not yet started).
func OpenDaemon(cfg Config, logger *slog.Logger) (*Daemon, error) {
	masterKey, err := consent.ReadMasterKey(cfg.Keys.Master)
	if err != nil {
		return nil, fmt.Errorf("keys.master: %w", err)
	}
	deviceKey, err := consent.ReadPrivateKey(cfg.Keys.Device)
	if err != nil {
		return nil, fmt.Errorf("keys.device: %w", err)
	}
	issuers, err := readKeyRefs("issuers", cfg.Issuers)
	if err != nil {
		return nil, err
	}
	operators, err := readKeyRefs("operators", cfg.Operators)
	if err != nil {
		return nil, err
	}
	kiosk, err := kioskOptions(cfg, issuers)
	if err != nil {
		return nil, err
	}
	tokens, err := readBearerTokens(cfg.HTTP.Tokens)
	if err != nil {
		return nil, err
	}
	mqttOpts, err := mqttOptions(cfg.MQTT)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	db, err := openStore(cfg, masterKey, logger)
	if err != nil {
		return nil, err
	}

	model := cfg.Capture.Model
	if cfg.Capture.Detector == "auto" && model != "" {
		if _, err := os.Stat(model); err != nil {
			logger.Warn("capture.model not found: using the cascade detector", "model", model, "error", err)
			model = ""
		}
	}
	det, err := opencv.NewDetector(cfg.Capture.Detector, model, cfg.Capture.Cascade, opencv.DetectorOptions{})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("capture.detector: %w", err)
	}

	notice := noticeFromConfig(cfg)
	purposes := map[string]time.Duration{}
	var ids []string
	for _, p := range cfg.Purposes {
		purposes[p.ID] = p.Retention
		ids = append(ids, p.ID)
	}
	a := agent.New()
	a.Site, a.Camera = cfg.Site, cfg.Camera
	a.Store = db
	a.Verifier = &consent.Verifier{
		Site: cfg.Site, Camera: cfg.Camera,
		Issuers: issuers, Operators: operators,
		Purposes:   ids,
		NoticeHash: notice.Hash(),
		ClockSkew:  cfg.Consent.ClockSkew,
	}
	a.Notice, a.NoticeHash = notice.JSON(), notice.Hash()
	a.Purposes = purposes
	a.DeviceKey = deviceKey
	src := cfg.SourceOptions()
	a.OpenSource = func(ctx context.Context) (capture.Source, error) { return opencv.Open(ctx, src) }
	a.Detector = det
	a.Rules = cfg.Rules()
	a.Window, a.DetectFPS = cfg.Capture.Window, cfg.Capture.DetectFPS
	a.ClockSkew = cfg.Consent.ClockSkew
	a.EvidenceRetention = cfg.Consent.EvidenceRetention
	a.Settings = audit.SettingsDetail(settings(cfg, issuers, operators))
	a.SweepInterval = cfg.Retention.SweepInterval
	a.CheckpointInterval = cfg.Audit.CheckpointInterval
	a.CompactInterval = cfg.Store.CompactInterval
	a.Version = Version
	a.Logger = logger
	if len(cfg.Audit.Witnesses) > 0 {
		lv, err := store.NewCheckpointVerifier(store.Origin(cfg.Site, cfg.Camera), deviceKey.Public().(ed25519.PublicKey))
		if err == nil {
			a.Witnesses, err = witness.NewClient(lv, db, cfg.Audit.Witnesses, cfg.Audit.WitnessQuorum)
		}
		if err != nil {
			det.Close()
			db.Close()
			return nil, fmt.Errorf("audit.witnesses: %w", err)
		}
	}

	bus := mqttbus.New()
	bus.Options = mqttOpts
	bus.Core, bus.Outbox = a, db
	bus.Notice = notice.JSON()
	bus.Registry = a.Registry
	bus.Logger = logger

	srv := httpapi.NewServer()
	srv.Addr, srv.Tokens = cfg.HTTP.Listen, tokens
	srv.Hosts, srv.RateLimit = cfg.HTTP.Hosts, httpapi.RateLimit(cfg.HTTP.RateLimit)
	srv.Core, srv.Log = a, db
	srv.Notice = notice
	srv.Keys = httpapi.AuditKeys{Device: deviceKey.Public().(ed25519.PublicKey), Issuers: issuers, Operators: operators}
	srv.Metrics = a.Registry
	srv.Connected = bus.Connected
	if kiosk != nil {
		kiosk.Window = cfg.Capture.Window
	}
	srv.Kiosk = kiosk
	srv.Logger = logger
	return &Daemon{Agent: a, Bus: bus, HTTP: srv, DB: db, Detector: det, Logger: logger}, nil
}

// Run starts the agent and its transports, waits for ctx to end, and stops
// everything: the HTTP API first (no new requests), then the agent (an
// open window closes, agent.stopped and a final checkpoint are recorded),
// then the MQTT session, which gets 10 seconds to drain the outbox.
func (d *Daemon) Run(ctx context.Context, started func(*Daemon)) error {
	if err := d.start(); err != nil {
		return errors.Join(err, d.close())
	}
	d.Logger.Info("consentcam running",
		"site", d.Agent.Site, "camera", d.Agent.Camera,
		"http", d.HTTP.ListenAddr(), "mqtt", d.Bus.URL, "detector", d.Detector.Name())
	if started != nil {
		started(d)
	}
	<-ctx.Done()
	d.Logger.Info("consentcam stopping")
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.stop(closeCtx)
}

// start binds the HTTP listener first, so that a port in use stops the
// daemon before it records anything, then opens the agent and its
// transports.
func (d *Daemon) start() error {
	if err := d.HTTP.Listen(); err != nil {
		return err
	}
	if err := d.Agent.Open(); err != nil {
		return errors.Join(err, d.HTTP.Close(context.Background()))
	}
	if err := d.Bus.Open(); err != nil {
		return errors.Join(err, d.Agent.Close(), d.HTTP.Close(context.Background()))
	}
	d.HTTP.Serve()
	return nil
}

func (d *Daemon) stop(ctx context.Context) error {
	httpCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return errors.Join(d.HTTP.Close(httpCtx), d.Agent.Close(), d.Bus.Close(ctx), d.close())
}

func (d *Daemon) close() error {
	return errors.Join(d.Detector.Close(), d.DB.Close())
}

// settings are the settings an auditor's check needs, as agent.started
// states them (docs/SPEC.md, "Audit log").
func settings(cfg Config, issuers, operators map[string]ed25519.PublicKey) *audit.Settings {
	s := &audit.Settings{
		Purposes:           map[string]audit.Duration{},
		CheckpointInterval: audit.Duration(cfg.Audit.CheckpointInterval),
		SweepInterval:      audit.Duration(cfg.Retention.SweepInterval),
		ClockSkew:          audit.Duration(cfg.Consent.ClockSkew),
		EvidenceRetention:  audit.Duration(cfg.Consent.EvidenceRetention),
		Issuers:            map[string]string{},
		Operators:          map[string]string{},
	}
	for _, p := range cfg.Purposes {
		s.Purposes[p.ID] = audit.Duration(p.Retention)
	}
	for kid, k := range issuers {
		s.Issuers[kid] = audit.KeyFingerprint(k)
	}
	for kid, k := range operators {
		s.Operators[kid] = audit.KeyFingerprint(k)
	}
	return s
}

func readKeyRefs(field string, refs []KeyRef) (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	for i, r := range refs {
		k, err := consent.ReadPublicKey(r.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s[%d].public_key: %w", field, i, err)
		}
		keys[r.KID] = k
	}
	return keys, nil
}

// kioskOptions reads the kiosk's key, when the kiosk is on, and refuses
// one that is not the private key of the issuer it signs as: the agent
// would refuse every token it signed.
func kioskOptions(cfg Config, issuers map[string]ed25519.PublicKey) (*httpapi.KioskOptions, error) {
	k := cfg.Kiosk
	if k.Key == "" {
		return nil, nil
	}
	key, err := consent.ReadPrivateKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("kiosk.key: %w", err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(issuers[k.Issuer]) {
		return nil, fmt.Errorf("kiosk.key: %s is not the private key of issuer %q: its public key does not match that issuer's public_key", k.Key, k.Issuer)
	}
	return &httpapi.KioskOptions{Issuer: k.Issuer, Key: key}, nil
}

// readSecretFile reads a one-line secret (token, password), refusing a file
// that others may read.
func readSecretFile(field, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: %s is readable by group or others (mode %#o): chmod 600 it", field, path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return s, nil
}

func readBearerTokens(refs []TokenRef) ([]httpapi.BearerToken, error) {
	var tokens []httpapi.BearerToken
	for i, r := range refs {
		field := fmt.Sprintf("http.tokens[%d].token_file", i)
		s, err := readSecretFile(field, r.TokenFile)
		if err != nil {
			return nil, err
		}
		if len(s) < 16 {
			return nil, fmt.Errorf("%s: the token is shorter than 16 characters; use a long random one (openssl rand -hex 32)", field)
		}
		tokens = append(tokens, httpapi.BearerToken{Role: r.Role, Secret: s})
	}
	return tokens, nil
}

func mqttOptions(c MQTTConfig) (mqttbus.Options, error) {
	o := mqttbus.Options{URL: c.URL, ClientID: c.ClientID, Username: c.Username, TopicPrefix: c.TopicPrefix, ReconnectMax: c.ReconnectMax}
	if c.PasswordFile != "" {
		p, err := readSecretFile("mqtt.password_file", c.PasswordFile)
		if err != nil {
			return o, err
		}
		o.Password = p
	}
	if c.CAFile == "" && c.CertFile == "" {
		return o, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return o, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("mqtt.ca_file: no PEM certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return o, fmt.Errorf("mqtt.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	o.TLS = tc
	return o, nil
}
