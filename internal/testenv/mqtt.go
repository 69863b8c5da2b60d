package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Subscriber is an MQTT client that records everything published under a
// topic prefix, as an auditor's subscriber would: with a persistent session
// (so it keeps its queue across a broker restart) and audit events
// de-duplicated by seq.
type Subscriber struct {
	tb      testing.TB
	c       mqtt.Client
	prefix  string
	mu      sync.Mutex
	forks   bool                 // AllowForks
	audit   map[uint64][]byte    // …/audit payloads by seq
	arrived map[uint64]time.Time // first arrival of each seq
	order   []uint64             // seqs in arrival order, duplicates included
	topics  map[string][][]byte
	times   map[string][]time.Time // arrival of each message of topics
}

// Subscribe connects to the broker as client id and subscribes to prefix/#
// with QoS 1. It disconnects when the test ends.
func Subscribe(tb testing.TB, b *Mosquitto, id, prefix string) *Subscriber {
	tb.Helper()
	s := &Subscriber{tb: tb, prefix: prefix, audit: map[uint64][]byte{}, arrived: map[uint64]time.Time{},
		topics: map[string][][]byte{}, times: map[string][]time.Time{}}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOrderMatters(true)
	s.c = mqtt.NewClient(opts)
	if tok := s.c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		tb.Fatal(tok.Error())
	}
	if tok := s.c.Subscribe(prefix+"/#", 1, s.handle); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		tb.Fatal(tok.Error())
	}
	tb.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *Subscriber) handle(_ mqtt.Client, m mqtt.Message) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	topic := strings.TrimPrefix(m.Topic(), s.prefix+"/")
	s.topics[topic] = append(s.topics[topic], m.Payload())
	s.times[topic] = append(s.times[topic], now)
	if topic != "audit" {
		return
	}
	var ev struct{ Seq uint64 }
	if err := json.Unmarshal(m.Payload(), &ev); err != nil {
		s.tb.Errorf("audit payload is not JSON: %q", m.Payload())
		return
	}
	s.order = append(s.order, ev.Seq)
	if old, ok := s.audit[ev.Seq]; ok && !bytes.Equal(old, m.Payload()) {
		if !s.forks {
			s.tb.Errorf("seq %d published twice with different bytes:\n%s\n%s", ev.Seq, old, m.Payload())
		}
		return
	}
	if _, ok := s.arrived[ev.Seq]; !ok {
		s.arrived[ev.Seq] = now
	}
	s.audit[ev.Seq] = m.Payload()
}

// AllowForks lets a seq arrive again with other bytes (a box whose state
// file the test restored from a backup): the first is kept.
func (s *Subscriber) AllowForks() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forks = true
}

// WaitOnline waits until the last message on …/available is "online".
func (s *Subscriber) WaitOnline() {
	s.tb.Helper()
	s.waitFor("the agent to say online on …/available", 15*time.Second, func() bool {
		msgs := s.topics["available"]
		return len(msgs) > 0 && string(msgs[len(msgs)-1]) == "online"
	})
}

// WaitAudit waits until every seq below n has arrived on …/audit.
func (s *Subscriber) WaitAudit(n uint64, timeout time.Duration) {
	s.tb.Helper()
	s.waitFor(fmt.Sprintf("seq 0..%d on …/audit", int64(n)-1), timeout, func() bool {
		for seq := uint64(0); seq < n; seq++ {
			if _, ok := s.audit[seq]; !ok {
				return false
			}
		}
		return true
	})
}

// Received returns the audit payloads that have arrived, one per seq, in
// seq order.
func (s *Subscriber) Received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := slices.Sorted(maps.Keys(s.audit))
	out := make([][]byte, len(seqs))
	for i, seq := range seqs {
		out[i] = s.audit[seq]
	}
	return out
}

// Arrived is when seq first arrived on …/audit (zero if it has not).
func (s *Subscriber) Arrived(seq uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived[seq]
}

// Messages returns every message that has arrived, by topic below the
// prefix, in arrival order, duplicates included.
func (s *Subscriber) Messages() map[string][][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][][]byte, len(s.topics))
	for topic, msgs := range s.topics {
		out[topic] = slices.Clone(msgs)
	}
	return out
}

// TopicTimes returns when each message on a topic below the prefix arrived.
func (s *Subscriber) TopicTimes(topic string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times[topic]...)
}

// CheckArrivalOrder fails the test unless, duplicates aside, the seqs
// arrived in order.
func (s *Subscriber) CheckArrivalOrder() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	next := uint64(0)
	for _, seq := range s.order {
		switch {
		case seq == next:
			next++
		case seq > next:
			s.tb.Fatalf("seq %d arrived before seq %d", seq, next)
		}
	}
}

// WaitTopic waits for at least n messages on a topic below the prefix and
// returns them all.
func (s *Subscriber) WaitTopic(topic string, n int) [][]byte {
	s.tb.Helper()
	var msgs [][]byte
	s.waitFor(fmt.Sprintf("%d messages on …/%s", n, topic), 15*time.Second, func() bool {
		msgs = append([][]byte(nil), s.topics[topic]...)
		return len(msgs) >= n
	})
	return msgs
}

// Publish sends a QoS 1 message to a topic below the prefix.
func (s *Subscriber) Publish(topic string, payload []byte) {
	s.tb.Helper()
	if tok := s.c.Publish(s.prefix+"/"+topic, 1, false, payload); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		s.tb.Fatal(tok.Error())
	}
}

// waitFor polls cond, under the lock, until it holds or timeout passes.
func (s *Subscriber) waitFor(what string, timeout time.Duration, cond func() bool) {
	s.tb.Helper()
	ok := WaitUntil(timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return cond()
	})
	if !ok {
		s.tb.Fatalf("waited %v for %s", timeout, what)
	}
}
