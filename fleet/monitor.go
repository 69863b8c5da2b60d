package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/consentcam/consentcam/consent"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Shards is how many workers share the boxes (each box always goes to the
// same one, so its messages are handled in order).
const Shards = 4

// batchMax bounds the messages one worker writes in one transaction.
const batchMax = 2000

// Monitor is `consentcam fleet`: New, set the exported fields, Open, then
// serve Handler; Close stops it.
type Monitor struct {
	Config Config
	Logger *slog.Logger
	// Now is the monitor's clock (time.Now by default).
	Now func() time.Time
	// Registry receives the metrics (a new one by default).
	Registry *prometheus.Registry
	// Tick is how often the time-driven alarms (gap, silence, hold) are
	// looked at (1s by default).
	Tick time.Duration
	// OnVerified, when set, is called after events [from, to) of a box
	// were verified and committed (benchmarks measure with it).
	OnVerified func(site, camera string, from, to uint64)

	pool    *pgxpool.Pool
	client  mqtt.Client
	alarms  *alarmBook
	metrics *metrics
	tokens  map[string]string // bearer token → role
	keys    auditKeys

	shards []*worker
	start  time.Time

	viewMu sync.RWMutex
	view   map[string]*BoxView // site/camera → state

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a monitor with the configuration c and the defaults.
func New(c Config) *Monitor {
	return &Monitor{Config: c, Logger: slog.Default(), Now: time.Now, Tick: time.Second}
}

// Open connects to PostgreSQL (applying the schema migrations), loads the
// mirror, then subscribes to the central broker.
func (m *Monitor) Open(ctx context.Context) error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	if m.Registry == nil {
		m.Registry = prometheus.NewRegistry()
	}
	m.start = m.Now()
	m.alarms = newAlarmBook(m.Logger, m.Registry)
	m.metrics = newMetrics(m.Registry)
	m.view = map[string]*BoxView{}
	var err error
	if m.tokens, err = readTokens(m.Config.HTTP.Tokens); err != nil {
		return err
	}
	if m.keys, err = readTrust(m.Config.Boxes); err != nil {
		return err
	}
	dsn := m.Config.Postgres.URL
	if f := m.Config.Postgres.URLFile; f != "" {
		if dsn, err = readSecret("postgres.url_file", f); err != nil {
			return err
		}
	}
	if m.pool, err = pgxpool.New(ctx, dsn); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := m.pool.Ping(ctx); err != nil {
		m.pool.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	if err := Migrate(ctx, m.pool); err != nil {
		m.pool.Close()
		return err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for i := range Shards {
		m.shards = append(m.shards, newWorker(m, i))
	}
	if err := m.load(ctx); err != nil {
		m.pool.Close()
		return err
	}
	for _, w := range m.shards {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); w.run() }()
	}
	if err := m.connect(); err != nil {
		m.cancel()
		m.wg.Wait()
		m.pool.Close()
		return err
	}
	return nil
}

// Close unsubscribes, lets each worker write what it took, and closes the
// database. Messages not yet written are not acknowledged: the broker gives
// them again to the persistent session.
func (m *Monitor) Close(ctx context.Context) error {
	if m.client != nil {
		m.client.Disconnect(250)
	}
	if m.cancel != nil {
		m.cancel()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if m.pool != nil {
		m.pool.Close()
	}
	return nil
}

// load reads every box and the active alarms from PostgreSQL and replays
// each box's verified log through the rules.
func (m *Monitor) load(ctx context.Context) error {
	as, err := loadAlarms(ctx, m.pool)
	if err != nil {
		return fmt.Errorf("load alarms: %w", err)
	}
	as = slices.DeleteFunc(as, func(a activeAlarm) bool { return !m.follows(a.site) })
	m.alarms.restore(as)
	rows, err := loadBoxes(ctx, m.pool)
	if err != nil {
		return fmt.Errorf("load boxes: %w", err)
	}
	for _, r := range rows {
		if !m.follows(r.site) {
			continue // another monitor's (mqtt.sites)
		}
		w := m.shardOf(r.site, r.camera)
		pub, err := m.deviceKey(r.site, r.camera)
		if err != nil {
			m.Logger.Warn("box in the mirror has no key: its messages will be refused", "site", r.site, "camera", r.camera, "error", err)
			continue
		}
		b, err := w.restore(ctx, r, pub)
		if err != nil {
			return fmt.Errorf("load box %s/%s: %w", r.site, r.camera, err)
		}
		w.add(b)
	}
	return nil
}

// follows reports whether this monitor follows a site (mqtt.sites).
func (m *Monitor) follows(site string) bool {
	return len(m.Config.MQTT.Sites) == 0 || slices.Contains(m.Config.MQTT.Sites, site)
}

// deviceKey reads a box's device public key from boxes.keys_dir.
func (m *Monitor) deviceKey(site, camera string) (ed25519.PublicKey, error) {
	if !namePattern.MatchString(site) || !namePattern.MatchString(camera) {
		return nil, fmt.Errorf("bad site/camera %q/%q", site, camera)
	}
	return consent.ReadPublicKey(filepath.Join(m.Config.Boxes.KeysDir, site, camera+".pub"))
}

func (m *Monitor) shardOf(site, camera string) *worker {
	h := fnv.New32a()
	h.Write([]byte(site + "/" + camera))
	return m.shards[h.Sum32()%uint32(len(m.shards))]
}

// message is one MQTT message for a worker.
type message struct {
	kind         string // topic suffix: audit, checkpoint, available, notice, bridge
	site, camera string
	topic        string
	payload      []byte
	arrived      time.Time
	msg          mqtt.Message
}

// Topic suffixes the monitor follows.
var topicKinds = []string{"audit", "checkpoint", "available", "notice"}

// subscriptions are the topic filters of the configuration.
func (m *Monitor) subscriptions() map[string]byte {
	sites := m.Config.MQTT.Sites
	if len(sites) == 0 {
		sites = []string{"+"}
	}
	subs := map[string]byte{}
	for _, s := range sites {
		p := m.Config.MQTT.TopicPrefix + "/" + s
		for _, k := range topicKinds {
			subs[p+"/+/"+k] = 1
		}
		subs[p+"/bridge"] = 1
	}
	return subs
}

func (m *Monitor) connect() error {
	c := m.Config.MQTT
	opts := mqtt.NewClientOptions().AddBroker(c.URL).SetClientID(c.ClientID).
		SetCleanSession(false).SetOrderMatters(true).SetAutoAckDisabled(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(c.ReconnectMax).SetKeepAlive(30 * time.Second).
		SetMessageChannelDepth(10000)
	if c.Username != "" {
		opts.SetUsername(c.Username)
	}
	if c.PasswordFile != "" {
		pw, err := readSecret("mqtt.password_file", c.PasswordFile)
		if err != nil {
			return err
		}
		opts.SetPassword(pw)
	}
	if c.CAFile != "" || c.CertFile != "" {
		t, err := tlsConfig(c)
		if err != nil {
			return err
		}
		opts.SetTLSConfig(t)
	}
	opts.SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) { m.route(msg) })
	opts.SetOnConnectHandler(func(cl mqtt.Client) {
		m.metrics.connected.Set(1)
		// A persistent session keeps the subscriptions; subscribe again all
		// the same, in case the broker lost the session.
		tok := cl.SubscribeMultiple(m.subscriptions(), func(_ mqtt.Client, msg mqtt.Message) { m.route(msg) })
		go func() {
			if tok.WaitTimeout(30*time.Second) && tok.Error() != nil {
				m.Logger.Error("subscribe", "error", tok.Error())
			}
		}()
		m.Logger.Info("connected to the central broker", "url", c.URL)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		m.metrics.connected.Set(0)
		m.Logger.Warn("lost the central broker", "error", err)
	})
	m.client = mqtt.NewClient(opts)
	tok := m.client.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		m.Logger.Warn("the central broker does not answer yet; still trying", "url", c.URL)
		return nil
	}
	return tok.Error()
}

// route hands a message to the worker of its box, in arrival order. It
// blocks while that worker's queue is full, which holds back the broker.
func (m *Monitor) route(msg mqtt.Message) {
	rest, ok := strings.CutPrefix(msg.Topic(), m.Config.MQTT.TopicPrefix+"/")
	if !ok {
		msg.Ack()
		return
	}
	parts := strings.SplitN(rest, "/", 3)
	in := &message{topic: msg.Topic(), payload: msg.Payload(), arrived: m.Now(), msg: msg}
	switch {
	case len(parts) == 2 && parts[1] == "bridge":
		in.kind, in.site = "bridge", parts[0]
	case len(parts) == 3:
		in.kind, in.site, in.camera = parts[2], parts[0], parts[1]
	default:
		msg.Ack()
		return
	}
	select {
	case m.shardOf(in.site, in.camera).in <- in:
	case <-m.ctx.Done():
	}
}

// readSecret reads a file holding one secret, refusing one that group or
// others may read.
func readSecret(field, path string) (string, error) {
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

func readTokens(refs []TokenRef) (map[string]string, error) {
	out := map[string]string{}
	for i, r := range refs {
		s, err := readSecret(fmt.Sprintf("http.tokens[%d].token_file", i), r.TokenFile)
		if err != nil {
			return nil, err
		}
		if len(s) < 16 {
			return nil, &ConfigError{Field: fmt.Sprintf("http.tokens[%d].token_file", i), Msg: "a bearer token needs at least 16 characters"}
		}
		out[s] = r.Role
	}
	return out, nil
}

func tlsConfig(c MQTTConfig) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: "mqtt.ca_file", Msg: "no certificate in " + c.CAFile}
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.cert_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// auditKeys are the keys served to auditors beside each box's device key.
type auditKeys struct {
	issuers, operators map[string]ed25519.PublicKey
}

func readTrust(c BoxesConfig) (auditKeys, error) {
	k := auditKeys{issuers: map[string]ed25519.PublicKey{}, operators: map[string]ed25519.PublicKey{}}
	for _, l := range []struct {
		field string
		refs  []KeyRef
		into  map[string]ed25519.PublicKey
	}{{"boxes.issuers", c.Issuers, k.issuers}, {"boxes.operators", c.Operators, k.operators}} {
		for i, r := range l.refs {
			pub, err := consent.ReadPublicKey(r.PublicKey)
			if err != nil {
				return k, &ConfigError{Field: fmt.Sprintf("%s[%d].public_key", l.field, i), Msg: err.Error()}
			}
			l.into[r.KID] = pub
		}
	}
	return k, nil
}

// metrics are the monitor's own figures beside the alarms.
type metrics struct {
	connected   prometheus.Gauge
	received    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	verified    prometheus.Counter
	delay       prometheus.Histogram
	violations  *prometheus.CounterVec
	size        *prometheus.GaugeVec
	checkpoint  *prometheus.GaugeVec
	online      *prometheus.GaugeVec
	commitTime  prometheus.Histogram
	commitFails prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "consentcam_fleet_mqtt_connected",
			Help: "1 while the monitor is connected to the central broker."}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consentcam_fleet_messages_total",
			Help: "Messages received, by topic kind."}, []string{"topic"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consentcam_fleet_rejected_total",
			Help: "Payloads refused (never stored as valid), by reason."}, []string{"reason"}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{Name: "consentcam_fleet_events_verified_total",
			Help: "Events covered by a checkpoint that verified against the mirror."}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "consentcam_fleet_verify_delay_seconds",
			Help:    "Time from an event's arrival to its verification under a checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consentcam_fleet_rule_violations_total",
			Help: "Violations of the rules of docs/AUDIT.md found in the boxes' logs."}, []string{"site", "camera", "rule"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "consentcam_fleet_log_size",
			Help: "Events of the box's log covered by a verified checkpoint."}, []string{"site", "camera"}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "consentcam_fleet_last_checkpoint_timestamp_seconds",
			Help: "When the box's last valid checkpoint arrived (Unix time)."}, []string{"site", "camera"}),
		online: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "consentcam_fleet_box_online",
			Help: "1 when the box's last …/available says online."}, []string{"site", "camera"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "consentcam_fleet_commit_seconds",
			Help: "Time to write one batch to PostgreSQL.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "consentcam_fleet_commit_failures_total",
			Help: "Batches PostgreSQL refused (each is tried again until written)."}),
	}
	reg.MustRegister(m.connected, m.received, m.rejected, m.verified, m.delay, m.violations, m.size,
		m.checkpoint, m.online, m.commitTime, m.commitFails,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// errStopped is returned by a worker's commit when the monitor closes.
var errStopped = errors.New("monitor stopped")
