package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"time"

	"github.com/consentcam/consentcam/store"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MQTTOptions is the broker connection.
type MQTTOptions struct {
	URL      string // tcp://host:port, ssl://host:port, ws://…
	ClientID string
	Username string
	Password string
	TLS      *tls.Config
	// TopicPrefix is consentcam/v1/SITE/CAMERA unless configured.
	TopicPrefix string
	// MaxReconnectInterval bounds the backoff between reconnection attempts.
	MaxReconnectInterval time.Duration
}

// Topics below the prefix (docs/SPEC.md, "MQTT").
const (
	topicAvailable  = "available"
	topicNotice     = "notice"
	topicConsent    = "consent"
	topicRevoke     = "revoke"
	topicReceipt    = "revoke/receipt"
	topicAudit      = "audit"
	topicCheckpoint = "checkpoint"
)

// Payloads of …/available.
const (
	availabilityOnline  = "online"
	availabilityStopped = "stopped"
	availabilityOffline = "offline"
)

// outboxBatch is how many audit events are in flight at once.
const outboxBatch = 256

// mqttClient is the agent's MQTT session: a persistent session (clean
// session off, fixed client id) with a last will of "offline".
type mqttClient struct {
	a *Agent
	c mqtt.Client
	// epoch changes whenever the connection is lost or comes back. paho can
	// complete a publish token with no error across a reconnect without the
	// message having been delivered; a publish counts as acknowledged only
	// when the epoch did not change between publishing and completion.
	epoch atomic.Uint64
	up    chan struct{} // signalled on each connect
}

func newMQTTClient(a *Agent) *mqttClient {
	m := &mqttClient{a: a, up: make(chan struct{}, 1)}
	o := a.MQTT
	maxRe := o.MaxReconnectInterval
	if maxRe <= 0 {
		maxRe = 10 * time.Second
	}
	opts := mqtt.NewClientOptions().
		AddBroker(o.URL).
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(false).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(maxRe).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetWill(m.topic(topicAvailable), availabilityOffline, 1, true).
		SetOnConnectHandler(m.onConnect).
		SetConnectionLostHandler(m.onLost).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) { m.epoch.Add(1) })
	if o.TLS != nil {
		opts.SetTLSConfig(o.TLS)
	}
	m.c = mqtt.NewClient(opts)
	// The broker delivers what it queued for the persistent session as soon
	// as the agent connects, before onConnect subscribes: without routes
	// already in place paho drops (and does not acknowledge) a revoke sent
	// while the agent was down.
	m.c.AddRoute(m.topic(topicConsent), m.route)
	m.c.AddRoute(m.topic(topicRevoke), m.route)
	return m
}

func (m *mqttClient) topic(name string) string { return m.a.MQTT.TopicPrefix + "/" + name }

// connect starts connecting in the background; the agent works offline
// meanwhile and its events wait in the outbox.
func (m *mqttClient) connect() { m.c.Connect() }

// connected reports whether the session is up.
func (m *mqttClient) connected() bool { return m.c.IsConnectionOpen() }

func (m *mqttClient) onConnect(c mqtt.Client) {
	m.epoch.Add(1)
	a := m.a
	a.Logger.Info("mqtt connected", "broker", a.MQTT.URL)
	// Subscribe first: "online" tells kiosks the agent is listening.
	t := c.SubscribeMultiple(map[string]byte{m.topic(topicConsent): 1, m.topic(topicRevoke): 1}, m.route)
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		a.Logger.Error("mqtt subscribe", logKeyError, t.Error())
	}
	m.publish(topicNotice, true, a.Notice)
	if cp, err := a.Store.LatestCheckpoint(); err == nil && len(cp) > 0 {
		m.publish(topicCheckpoint, true, cp)
	}
	m.publish(topicAvailable, true, []byte(availabilityOnline))
	select {
	case m.up <- struct{}{}:
	default:
	}
}

func (m *mqttClient) onLost(_ mqtt.Client, err error) {
	m.epoch.Add(1)
	m.a.Logger.Warn("mqtt connection lost", logKeyError, err)
}

// route handles a message on …/consent or …/revoke. Refusals are audited
// by Consent and Revoke.
func (m *mqttClient) route(_ mqtt.Client, msg mqtt.Message) {
	switch msg.Topic() {
	case m.topic(topicConsent):
		m.a.Consent(m.a.ctx, msg.Payload())
	case m.topic(topicRevoke):
		m.onRevoke(msg.Payload())
	}
}

func (m *mqttClient) onRevoke(payload []byte) {
	receipt, err := m.a.Revoke(m.a.ctx, payload)
	if err != nil {
		return // audited as revoke.rejected, or logged
	}
	m.publish(topicReceipt, false, receipt)
}

// publish publishes a QoS 1 message on a topic below the prefix without
// waiting. When the client is offline it is skipped: onConnect publishes the
// current notice, checkpoint and availability again.
func (m *mqttClient) publish(name string, retained bool, payload []byte) {
	if !m.connected() {
		m.a.Logger.Debug("mqtt offline: not published", logKeyTopic, name)
		return
	}
	topic := m.topic(name)
	t := m.c.Publish(topic, 1, retained, payload)
	go func() {
		if t.WaitTimeout(30*time.Second) && t.Error() != nil {
			m.a.Logger.Warn("mqtt publish", logKeyTopic, topic, logKeyError, t.Error())
		}
	}()
}

// disconnect publishes the final availability and closes the session.
func (m *mqttClient) disconnect(state string) {
	if m.connected() {
		t := m.c.Publish(m.topic(topicAvailable), 1, true, state)
		t.WaitTimeout(2 * time.Second)
	}
	m.c.Disconnect(250)
}

var errEpoch = errors.New("mqtt connection changed before the broker acknowledged")

// publishBatch publishes audit events in order and returns the seqs of the
// leading run the broker acknowledged on the same connection.
func (m *mqttClient) publishBatch(ctx context.Context, msgs []store.Message) ([]uint64, error) {
	e0 := m.epoch.Load()
	tokens := make([]mqtt.Token, len(msgs))
	for i, msg := range msgs {
		tokens[i] = m.c.Publish(m.topic(topicAudit), 1, false, msg.Payload)
	}
	var acked []uint64
	for i, t := range tokens {
		select {
		case <-t.Done():
		case <-time.After(30 * time.Second):
			return acked, errors.New("mqtt publish: no acknowledgement after 30s")
		case <-ctx.Done():
			return acked, ctx.Err()
		}
		if err := t.Error(); err != nil {
			return acked, err
		}
		if m.epoch.Load() != e0 {
			return acked, errEpoch
		}
		acked = append(acked, msgs[i].Seq)
	}
	return acked, nil
}

// publishOutbox publishes the outbox, in seq order, until ctx ends: each
// event until the broker acknowledges it, across broker outages and agent
// restarts. Subscribers de-duplicate by seq.
func (a *Agent) publishOutbox(ctx context.Context) {
	m := a.mqtt
	backoff := 100 * time.Millisecond
	idle := time.NewTicker(5 * time.Second)
	defer idle.Stop()
	for ctx.Err() == nil {
		if !m.connected() {
			select {
			case <-m.up:
			case <-idle.C:
			case <-ctx.Done():
			}
			continue
		}
		msgs, err := a.Store.Pending(outboxBatch)
		if err != nil {
			a.Logger.Error("read outbox", logKeyError, err)
		}
		if len(msgs) == 0 || err != nil {
			select {
			case <-a.kick:
			case <-idle.C:
			case <-ctx.Done():
			}
			continue
		}
		acked, err := m.publishBatch(ctx, msgs)
		if len(acked) > 0 {
			if aerr := a.Store.Ack(acked...); aerr != nil {
				a.Logger.Error("ack outbox", logKeyError, aerr)
			}
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() == nil {
			a.Logger.Warn("publish audit events", logKeyError, err, "acked", len(acked))
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// drainOutbox waits until the outbox is empty, the connection is down, or
// ctx ends. Whatever is left is published after the next start.
func (a *Agent) drainOutbox(ctx context.Context) {
	select {
	case a.kick <- struct{}{}:
	default:
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := a.Store.PendingCount()
		if err != nil || n == 0 || !a.mqtt.connected() {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
