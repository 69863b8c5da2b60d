package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/consentcam/consentcam/store"
)

// DefaultRefusalInterval is how long refusals of unverified tokens are
// counted before their count is written.
const DefaultRefusalInterval = time.Minute

// refusals aggregates the refusals of tokens whose signature did not verify
// (or that were refused before it was checked): anyone who can reach the
// box can send those, and one event each would let them fill its disk. The
// first refusal of a reason in an interval is written at once, as a
// refusal of a verified token is; the others of the interval are counted
// and written as one event at its end, with the count and the times of the
// first and the last. At most two events per reason and type per interval,
// whatever is sent.
type refusals struct {
	mu     sync.Mutex
	counts map[refusalKey]*refusalCount
}

type refusalKey struct {
	typ    string // consent.rejected or revoke.rejected
	reason string
}

type refusalCount struct {
	n           int // counted since the event written at once
	first, last time.Time
}

// admit reports whether a refusal of an unverified token is to be written
// at once (the first of its reason in this interval); otherwise it counts
// it.
func (r *refusals) admit(typ, reason string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[refusalKey]*refusalCount{}
	}
	k := refusalKey{typ, reason}
	c, ok := r.counts[k]
	if !ok {
		r.counts[k] = &refusalCount{}
		return true
	}
	if c.n == 0 {
		c.first = now
	}
	c.n++
	c.last = now
	return false
}

// flush writes one event per reason counted in the interval that ends,
// and starts a new one. Counts the store cannot write are kept for the
// next flush.
func (a *Agent) flushRefusals() error {
	r := &a.refusals
	r.mu.Lock()
	var events []*store.Event
	for k, c := range r.counts {
		if c.n == 0 {
			continue
		}
		events = append(events, &store.Event{Type: k.typ, Reason: k.reason, Detail: map[string]any{
			"count": c.n, "first": c.first.UTC().Format(time.RFC3339Nano), "last": c.last.UTC().Format(time.RFC3339Nano),
		}})
	}
	counts := r.counts
	r.counts = nil
	r.mu.Unlock()

	if err := a.append(events...); err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		for k, c := range counts { // put the counts back, with any new ones
			if c.n == 0 {
				continue
			}
			if r.counts == nil {
				r.counts = map[refusalKey]*refusalCount{}
			}
			if now, ok := r.counts[k]; ok {
				now.n += c.n
				now.first = c.first
			} else {
				r.counts[k] = c
			}
		}
		return fmt.Errorf("record the count of refused tokens: %w", err)
	}
	return nil
}
