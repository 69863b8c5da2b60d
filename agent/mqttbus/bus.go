package mqttbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// Core is what the bus asks of the agent: *agent.Agent.
type Core interface {
	Consent(ctx context.Context, token []byte) (agent.Accepted, error)
	Revoke(ctx context.Context, token []byte) (agent.Receipt, error)
	Checkpoint() ([]byte, error)
	SubscribeCheckpoints(fn func(note []byte))
}

// Outbox is the store's outbox of audit events: *store.DB.
type Outbox interface {
	Pending(limit int) ([]store.Message, error)
	Ack(seqs ...uint64) error
	PendingCount() (int, error)
	Subscribe(fn func(events []store.Event))
}

// Options is the broker connection.
type Options struct {
	URL      string // tcp://host:port, ssl://host:port, ws://…
	ClientID string
	Username string
	Password string
	TLS      *tls.Config
	// TopicPrefix is consentcam/v1/SITE/CAMERA unless configured.
	TopicPrefix string
	// ReconnectMax bounds the backoff between connection attempts.
	ReconnectMax time.Duration
	// TakeoverBackoff is the wait after repeated takeovers (see session).
	TakeoverBackoff time.Duration
}

// DefaultReconnectMax is the longest wait between connection attempts.
const DefaultReconnectMax = 5 * time.Second

// Topics below the prefix (docs/SPEC.md, "MQTT").
const (
	TopicAvailable  = "available"
	TopicNotice     = "notice"
	TopicConsent    = "consent"
	TopicRevoke     = "revoke"
	TopicReceipt    = "revoke/receipt"
	TopicAudit      = "audit"
	TopicCheckpoint = "checkpoint"
)

// Payloads of …/available.
const (
	AvailableOnline  = "online"
	AvailableStopped = "stopped"
	AvailableOffline = "offline"
)

// Log attribute keys.
const (
	logKeyError  = "error"
	logKeyTopic  = "topic"
	logKeyBroker = "broker"
)

// Bus is the agent's MQTT session (docs/SPEC.md, "MQTT"): it takes consent
// tokens and revoke commands in, and puts the outbox's audit events, revoke
// receipts, the notice, the latest checkpoint and the box's availability
// out. Set the fields, then Open; Close stops it.
//
// Each connection is a paho client of its own, with a persistent session
// (clean session off, fixed client id) and a last will of "offline". paho
// never resends an outbound publish: its store keeps no outbound packet and
// a client is never reconnected (paho's resume races with its writer,
// eclipse-paho/paho.mqtt.golang#703). The outbox in the store is the source
// of truth: what the broker did not acknowledge on a connection is published
// again, in seq order, on the next. Inbound commands are acknowledged only
// once the core has made their outcome durable; until then the broker keeps
// them, and delivers them again after a reconnect.
type Bus struct {
	Options
	Core   Core
	Outbox Outbox
	// Notice is the notice JSON (with its hash) published on …/notice.
	Notice []byte
	// Registry receives the bus's metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu   sync.Mutex
	conn *conn         // the connection, while it is up
	up   chan struct{} // signalled on each connection

	kick         chan struct{} // an event was committed
	checkpointed chan struct{} // a checkpoint is to be published

	connected prometheus.Gauge
	failures  *prometheus.CounterVec
	takeovers prometheus.Counter
}

// A connection lost within takeoverWindow of its start, takeoverCount times
// in a row, is taken for another client using the agent's client id (the
// broker drops the older of two sessions of one id): the agent says so, and
// waits TakeoverBackoff before trying again rather than throwing the other
// off and being thrown off in turn.
const (
	takeoverWindow         = 5 * time.Second
	takeoverCount          = 3
	DefaultTakeoverBackoff = time.Minute
)

// New returns a bus with the defaults of docs/SPEC.md.
func New() *Bus {
	return &Bus{
		Options: Options{ReconnectMax: DefaultReconnectMax, TakeoverBackoff: DefaultTakeoverBackoff},
		Logger:  slog.New(slog.DiscardHandler),
	}
}

// conn is one connection: a paho client used for nothing else.
type conn struct {
	c      mqtt.Client
	lost   chan struct{} // closed when the connection is lost
	lostAt time.Time     // when, set before lost is closed
	once   sync.Once
	// commands are handled one at a time, in the order they arrived.
	commands chan mqtt.Message
	// out are the messages to publish (but the audit events), in order.
	out chan outbound
}

// outbound is a message for conn.out; sent, when set, is given the
// message's token once it is handed to paho.
type outbound struct {
	name     string
	retained bool
	payload  []byte
	sent     chan<- mqtt.Token
}

func (c *conn) markLost() {
	c.once.Do(func() {
		c.lostAt = time.Now()
		close(c.lost)
	})
}

func (b *Bus) topic(name string) string { return b.TopicPrefix + "/" + name }

// Open starts connecting, in the background, and the outbox publisher; the
// agent works offline meanwhile and its events wait in the outbox.
func (b *Bus) Open() error {
	switch {
	case b.Core == nil || b.Outbox == nil:
		return errors.New("mqtt: no core or outbox")
	case b.URL == "" || b.ClientID == "" || b.TopicPrefix == "":
		return errors.New("mqtt: no broker URL, client id or topic prefix")
	case b.Registry == nil:
		return errors.New("mqtt: no metrics registry")
	}
	b.connected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "consentcam_mqtt_connected", Help: "1 while connected to the MQTT broker.",
	})
	b.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "consentcam_mqtt_command_failures_total",
		Help: "Consent tokens and revoke commands from MQTT the agent failed to handle (not refusals); each is tried again.",
	}, []string{"topic"})
	for _, t := range []string{TopicConsent, TopicRevoke} {
		b.failures.WithLabelValues(t)
	}
	b.takeovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "consentcam_mqtt_takeovers_total",
		Help: "Times the MQTT connection was lost within seconds of connecting, several times in a row: another client is using the agent's client id.",
	})
	if err := errors.Join(b.Registry.Register(b.connected), b.Registry.Register(b.failures), b.Registry.Register(b.takeovers)); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if b.ReconnectMax <= 0 {
		b.ReconnectMax = DefaultReconnectMax
	}
	if b.TakeoverBackoff <= 0 {
		b.TakeoverBackoff = DefaultTakeoverBackoff
	}
	b.up = make(chan struct{}, 1)
	b.kick = make(chan struct{}, 1)
	b.checkpointed = make(chan struct{}, 1)
	b.Outbox.Subscribe(func([]store.Event) { signal(b.kick) })
	b.Core.SubscribeCheckpoints(func([]byte) { signal(b.checkpointed) })
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.done.Add(2)
	go func() { defer b.done.Done(); b.session() }()
	go func() { defer b.done.Done(); b.publishOutbox() }()
	return nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Connected reports whether the session is up.
func (b *Bus) Connected() bool { return b.current() != nil }

func (b *Bus) current() *conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn
}

func (b *Bus) setConn(c *conn) {
	b.mu.Lock()
	b.conn = c
	b.mu.Unlock()
	if c != nil {
		b.connected.Set(1)
		signal(b.up)
	} else {
		b.connected.Set(0)
	}
}

// session connects, and connects again with backoff whenever the
// connection is lost, until Close.
func (b *Bus) session() {
	backoff := 100 * time.Millisecond
	// quick counts the connections lost soon after they started, each
	// followed by a connection at the first attempt: a broker that restarts
	// refuses one at least, a takeover none.
	quick := 0
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-b.ctx.Done():
		}
	}
	for b.ctx.Err() == nil {
		c, err := b.connect()
		if err != nil {
			b.Logger.Warn("mqtt connect", logKeyBroker, b.URL, logKeyError, err)
			quick = 0
			wait(backoff)
			backoff = min(2*backoff, b.ReconnectMax)
			continue
		}
		backoff = 100 * time.Millisecond
		start := time.Now()
		b.serve(c)
		if b.ctx.Err() != nil {
			return
		}
		if c.lostAt.Sub(start) >= takeoverWindow {
			quick = 0
			continue
		}
		if quick++; quick >= takeoverCount {
			b.takeovers.Inc()
			b.Logger.Error("mqtt connection lost within seconds of connecting, again and again: another client is likely "+
				"using this client id (the broker drops the older session); give each box its own broker user and set "+
				"use_username_as_clientid (deploy/mosquitto.conf)", "client_id", b.ClientID, "times", quick, "retry_in", b.TakeoverBackoff)
			quick = 0
			wait(b.TakeoverBackoff)
		}
	}
}

// connect makes a fresh client and connects it.
func (b *Bus) connect() (*conn, error) {
	c := &conn{lost: make(chan struct{}), commands: make(chan mqtt.Message, 256), out: make(chan outbound, 16)}
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID(b.ClientID).
		SetUsername(b.Username).
		SetPassword(b.Password).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetStore(newInboundStore()).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetWill(b.topic(TopicAvailable), AvailableOffline, 1, true).
		SetDefaultPublishHandler(c.receive).
		SetCustomOpenConnectionFn(dial).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			b.Logger.Warn("mqtt connection lost", logKeyError, err)
			c.markLost()
		})
	if b.TLS != nil {
		opts.SetTLSConfig(b.TLS)
	}
	c.c = mqtt.NewClient(opts)
	t := c.c.Connect()
	select {
	case <-t.Done():
	case <-b.ctx.Done():
		return nil, b.ctx.Err()
	}
	if err := t.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

// receive takes a message in (paho's router calls it, in order) and queues
// it for the connection's worker.
func (c *conn) receive(_ mqtt.Client, msg mqtt.Message) {
	select {
	case c.commands <- msg:
	case <-c.lost: // not acknowledged: the broker gives it again
	}
}

// serve runs a connection until it is lost or the bus closes: it subscribes
// to the commands, publishes what is retained, handles commands in order
// and publishes each new checkpoint.
func (b *Bus) serve(c *conn) {
	b.Logger.Info("mqtt connected", logKeyBroker, b.URL)
	var workers sync.WaitGroup
	workers.Add(1)
	go func() { defer workers.Done(); b.work(c) }()
	defer workers.Wait()
	// Not waited for: it ends once the connection is lost, but paho may
	// hold a publish it was given meanwhile for up to the write timeout.
	go b.publisher(c)

	// Subscribe first: "online" tells kiosks the agent is listening.
	t := c.c.SubscribeMultiple(map[string]byte{b.topic(TopicConsent): 1, b.topic(TopicRevoke): 1}, c.receive)
	if !waitToken(t, c, b.ctx) || t.Error() != nil {
		b.Logger.Error("mqtt subscribe", logKeyError, t.Error())
		c.markLost()
		c.c.Disconnect(0)
		return
	}
	b.publish(c, TopicNotice, true, b.Notice)
	b.publishCheckpoint(c)
	b.publish(c, TopicAvailable, true, []byte(AvailableOnline))
	b.setConn(c)
	defer b.setConn(nil)
	for {
		select {
		case <-c.lost:
			return
		case <-b.ctx.Done():
			return
		case <-b.checkpointed:
			b.publishCheckpoint(c)
		}
	}
}

// waitToken waits for t, unless the connection is lost or ctx ends first.
func waitToken(t mqtt.Token, c *conn, ctx context.Context) bool {
	select {
	case <-t.Done():
		return true
	case <-c.lost:
	case <-ctx.Done():
	}
	return false
}

// work handles the connection's commands one at a time, in arrival order.
func (b *Bus) work(c *conn) {
	for {
		select {
		case msg := <-c.commands:
			b.handle(c, msg)
		case <-c.lost:
			return
		case <-b.ctx.Done():
			return
		}
	}
}

// handle carries out a command and acknowledges it once its outcome is
// durable: carried out, or refused and audited. A failure of the box is
// logged, counted and tried again with backoff; while it lasts the broker
// keeps the command, and gives it again on the next connection if this one
// is lost.
func (b *Bus) handle(c *conn, msg mqtt.Message) {
	name, ok := strings.CutPrefix(msg.Topic(), b.TopicPrefix+"/")
	if !ok || (name != TopicConsent && name != TopicRevoke) {
		msg.Ack()
		return
	}
	backoff := 100 * time.Millisecond
	for {
		err := b.command(c, name, msg.Payload())
		if durable(err) {
			msg.Ack()
			return
		}
		if errors.Is(err, agent.ErrStopped) || b.ctx.Err() != nil {
			return // the broker gives it again after the next start
		}
		b.failures.WithLabelValues(name).Inc()
		b.Logger.Error("mqtt command failed; trying again", logKeyTopic, name, logKeyError, err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-c.lost:
			return
		case <-b.ctx.Done():
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// command hands a command to the core; a revoke's receipt is published
// (again, when the revoke was given again).
func (b *Bus) command(c *conn, name string, payload []byte) error {
	if name == TopicConsent {
		_, err := b.Core.Consent(b.ctx, payload)
		return err
	}
	rc, err := b.Core.Revoke(b.ctx, payload)
	if rc.Signed != nil {
		b.publish(c, TopicReceipt, false, rc.Signed)
	}
	return err
}

// durable reports whether a command's outcome is in the store: it was
// carried out (a consent skipped as queue-full was too), or refused, which
// the core audits.
func durable(err error) bool {
	return err == nil || errors.Is(err, agent.ErrQueueFull) || consent.ReasonOf(err) != ""
}

// publish queues a QoS 1 message on a topic below the prefix for c's
// publisher, unless c is lost first.
func (b *Bus) publish(c *conn, name string, retained bool, payload []byte) {
	b.enqueue(c, outbound{name: name, retained: retained, payload: payload})
}

// enqueue queues m for c's publisher and reports whether it did.
func (b *Bus) enqueue(c *conn, m outbound) bool {
	select {
	case c.out <- m:
		return true
	case <-c.lost:
	case <-b.ctx.Done():
	}
	return false
}

// publisher hands c's queued messages to paho in order, without waiting
// for the broker. It runs apart from serve and the worker: paho's Publish
// blocks for up to the write timeout when the connection is lost while it
// runs, and reconnecting must not wait for that.
func (b *Bus) publisher(c *conn) {
	for {
		select {
		case m := <-c.out:
			t := c.c.Publish(b.topic(m.name), 1, m.retained, m.payload)
			if m.sent != nil {
				m.sent <- t
			}
			go func() {
				if waitToken(t, c, b.ctx) && t.Error() != nil {
					b.Logger.Warn("mqtt publish", logKeyTopic, m.name, logKeyError, t.Error())
				}
			}()
		case <-c.lost:
			return
		case <-b.ctx.Done():
			return
		}
	}
}

// publishCheckpoint publishes the latest checkpoint, retained: every
// checkpoint interval, so that its arrival says the box is alive.
func (b *Bus) publishCheckpoint(c *conn) {
	cp, err := b.Core.Checkpoint()
	if err != nil {
		b.Logger.Error("read the latest checkpoint", logKeyError, err)
		return
	}
	if len(cp) > 0 {
		b.publish(c, TopicCheckpoint, true, cp)
	}
}

// Close gives the outbox until ctx ends to drain, publishes "stopped" and
// disconnects. Whatever is left in the outbox is published after the next
// start.
func (b *Bus) Close(ctx context.Context) error {
	if b.cancel == nil {
		return nil
	}
	b.drain(ctx)
	if c := b.current(); c != nil {
		// After whatever the publisher has queued ("online" among it).
		sent := make(chan mqtt.Token, 1)
		if b.enqueue(c, outbound{name: TopicAvailable, retained: true, payload: []byte(AvailableStopped), sent: sent}) {
			select {
			case t := <-sent:
				t.WaitTimeout(2 * time.Second)
			case <-time.After(2 * time.Second):
			}
		}
		c.c.Disconnect(250)
	}
	b.cancel()
	b.done.Wait()
	return nil
}

// drain waits until the outbox is empty, the connection is down, or ctx
// ends.
func (b *Bus) drain(ctx context.Context) {
	signal(b.kick)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := b.Outbox.PendingCount()
		if err != nil || n == 0 || !b.Connected() {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
