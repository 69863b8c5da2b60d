package mqttbus

import (
	"errors"
	"time"

	"github.com/consentcam/consentcam/store"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// outboxBatch is how many audit events are in flight at once.
const outboxBatch = 256

// ackTimeout is how long the publisher waits for the broker to acknowledge
// an event before it starts the batch again.
const ackTimeout = 30 * time.Second

// publishOutbox publishes the outbox on …/audit, in seq order, until Close:
// each event until the broker acknowledges it, across broker outages and
// agent restarts. Subscribers de-duplicate by seq.
func (b *Bus) publishOutbox() {
	backoff := 100 * time.Millisecond
	idle := time.NewTicker(5 * time.Second)
	defer idle.Stop()
	for b.ctx.Err() == nil {
		c := b.current()
		if c == nil {
			select {
			case <-b.up:
			case <-idle.C:
			case <-b.ctx.Done():
			}
			continue
		}
		msgs, err := b.Outbox.Pending(outboxBatch)
		if err != nil {
			b.Logger.Error("read outbox", logKeyError, err)
		}
		if len(msgs) == 0 || err != nil {
			select {
			case <-b.kick:
			case <-idle.C:
			case <-c.lost:
			case <-b.ctx.Done():
			}
			continue
		}
		acked, err := b.publishBatch(c, msgs)
		if len(acked) > 0 {
			if aerr := b.Outbox.Ack(acked...); aerr != nil {
				b.Logger.Error("ack outbox", logKeyError, aerr)
			}
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if b.ctx.Err() == nil {
			b.Logger.Warn("publish audit events", logKeyError, err, "acked", len(acked))
		}
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

var errLost = errors.New("mqtt connection lost before the broker acknowledged")

// publishBatch publishes audit events in order on c and returns the seqs of
// the leading run the broker acknowledged. A client is never reconnected,
// so an acknowledgement it reports came on this connection. The publishing
// runs on a goroutine of its own: paho's Publish can block for its write
// timeout once the connection is gone, and the publisher must not.
func (b *Bus) publishBatch(c *conn, msgs []store.Message) ([]uint64, error) {
	tokens := make(chan mqtt.Token, len(msgs))
	go func() {
		defer close(tokens)
		for _, msg := range msgs {
			select {
			case <-c.lost:
				return
			default:
			}
			tokens <- c.c.Publish(b.topic(TopicAudit), 1, false, msg.Payload)
		}
	}()
	timeout := time.NewTimer(ackTimeout)
	defer timeout.Stop()
	var acked []uint64
	for _, msg := range msgs {
		var t mqtt.Token
		select {
		case t = <-tokens:
		case <-c.lost:
			return acked, errLost
		}
		if t == nil {
			return acked, errLost
		}
		select {
		case <-t.Done():
		case <-c.lost:
			return acked, errLost
		case <-timeout.C:
			return acked, errors.New("mqtt publish: no acknowledgement in time")
		case <-b.ctx.Done():
			return acked, b.ctx.Err()
		}
		if err := t.Error(); err != nil {
			return acked, err
		}
		acked = append(acked, msg.Seq)
	}
	return acked, nil
}
