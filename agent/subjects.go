package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/consentcam/consentcam/store"
)

// subjects counts the distinct subjects whose face data the store holds
// (at least one record), from the log: read once at start, then kept up to
// date as a store subscriber. It also knows which filing thresholds the log
// already records as crossed, so that each is recorded once, ever.
type subjects struct {
	mu         sync.Mutex
	live       map[string]int // subject → records kept
	crossed    map[int]bool   // thresholds with a filing.threshold event
	thresholds []int
}

func newSubjects(thresholds []int) *subjects {
	return &subjects{live: map[string]int{}, crossed: map[int]bool{}, thresholds: slices.Sorted(slices.Values(thresholds))}
}

// countedTypes are the events that change the count, as they appear in an
// event's JSON: the log is filtered on them before it is decoded.
var countedTypes = [][]byte{
	[]byte(`"type":"` + store.EventCaptureSaved + `"`),
	[]byte(`"type":"` + store.EventRecordExpired + `"`),
	[]byte(`"type":"` + store.EventRecordErased + `"`),
	[]byte(`"type":"` + store.EventFilingThreshold + `"`),
}

// load reads the whole log, a page at a time.
func (s *subjects) load(st Store) error {
	const page = 4096
	for from := uint64(0); ; {
		lines, err := st.Events(from, page)
		if err != nil {
			return fmt.Errorf("count the subjects stored: %w", err)
		}
		for _, line := range lines {
			if !slices.ContainsFunc(countedTypes, func(t []byte) bool { return bytes.Contains(line, t) }) {
				continue
			}
			var ev store.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				return fmt.Errorf("count the subjects stored: event after seq %d: %w", from, err)
			}
			s.apply(ev)
		}
		if len(lines) < page {
			return nil
		}
		from += uint64(len(lines))
	}
}

// observe follows the committed events.
func (s *subjects) observe(events []store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		s.applyLocked(ev)
	}
}

func (s *subjects) apply(ev store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(ev)
}

func (s *subjects) applyLocked(ev store.Event) {
	switch ev.Type {
	case store.EventCaptureSaved:
		s.live[ev.Subject]++
	case store.EventRecordExpired:
		if deleted, _ := ev.Detail["deleted"].(bool); deleted {
			s.drop(ev.Subject)
		}
	case store.EventRecordErased:
		s.drop(ev.Subject)
	case store.EventFilingThreshold:
		var t int
		switch v := ev.Detail["threshold"].(type) {
		case float64: // as committed
			t = int(v)
		case int:
			t = v
		}
		s.crossed[t] = true
	}
}

func (s *subjects) drop(subject string) {
	if s.live[subject] <= 1 {
		delete(s.live, subject)
	} else {
		s.live[subject]--
	}
}

// count is the number of distinct subjects with a record.
func (s *subjects) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// crossings returns the filing.threshold events due once the events
// appended so far in a transaction commit: a threshold the count reaches
// for the first time. The caller appends them in the same transaction. It
// relies on the store's single writer: the count is that of the last
// commit.
func (s *subjects) crossings(appended []store.Event) []*store.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	added := map[string]bool{}
	for _, ev := range appended {
		if ev.Type == store.EventCaptureSaved && s.live[ev.Subject] == 0 {
			added[ev.Subject] = true
		}
	}
	n := len(s.live) + len(added)
	var due []*store.Event
	for _, t := range s.thresholds {
		if n >= t && !s.crossed[t] {
			due = append(due, &store.Event{Type: store.EventFilingThreshold, Actor: actorAgent,
				Detail: map[string]any{"threshold": t, "subjects": n}})
		}
	}
	return due
}
