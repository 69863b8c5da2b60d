package agent

import (
	"slices"
	"sync"

	"github.com/consentcam/consentcam/store"
)

// States of a visit (VisitStatus.State).
const (
	VisitWaiting   = "waiting"
	VisitOpen      = "open"
	VisitSaved     = "saved"
	VisitSkipped   = "skipped"
	VisitWithdrawn = "withdrawn"
)

// MaxTrackedVisits is how many of the last accepted visits VisitStatus
// remembers.
const MaxTrackedVisits = 256

// VisitStatus is what has become of an accepted visit.
type VisitStatus struct {
	Visit string `json:"visit"`
	State string `json:"state"` // waiting, open, saved, skipped or withdrawn
	// Ahead is, while waiting, how many visits are before this one at the
	// camera (the open window counts).
	Ahead    int      `json:"ahead"`
	Reason   string   `json:"reason,omitempty"`   // skipped: why nothing was saved
	Purposes []string `json:"purposes,omitempty"` // saved: what the picture is kept for
}

// VisitStatus reports what became of one of the last MaxTrackedVisits
// accepted visits; false when it is not among them.
func (a *Agent) VisitStatus(visit string) (VisitStatus, bool) {
	st, ok := a.visits.status(visit)
	if !ok || st.State != VisitWaiting {
		return st, ok
	}
	snap := a.state.Load()
	st.Ahead = slices.Index(snap.Queue, visit)
	if st.Ahead < 0 { // between its acceptance and its queueing, or leaving the queue
		st.Ahead = len(snap.Queue)
	}
	if snap.Window != "" && snap.Window != visit {
		st.Ahead++
	}
	return st, true
}

// visitTracker follows, from committed audit events, the state of the last
// accepted visits. Where a waiting visit stands in the queue is the
// control loop's snapshot's to say.
type visitTracker struct {
	mu     sync.Mutex
	visits map[string]*trackedVisit
	order  []string // oldest first
}

type trackedVisit struct {
	subject string
	status  VisitStatus
}

func newVisitTracker() *visitTracker {
	return &visitTracker{visits: map[string]*trackedVisit{}}
}

func (t *visitTracker) status(visit string) (VisitStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.visits[visit]
	if !ok {
		return VisitStatus{}, false
	}
	st := v.status
	st.Purposes = slices.Clone(st.Purposes)
	return st, true
}

// observe follows committed events (a store subscriber).
func (t *visitTracker) observe(events []store.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range events {
		t.follow(&events[i])
	}
}

// track starts following the visit of ev, unless it already is.
func (t *visitTracker) track(ev *store.Event) {
	if _, ok := t.visits[ev.Visit]; ok || ev.Visit == "" {
		return
	}
	if len(t.order) >= MaxTrackedVisits {
		delete(t.visits, t.order[0])
		t.order = slices.Delete(t.order, 0, 1)
	}
	t.visits[ev.Visit] = &trackedVisit{subject: ev.Subject, status: VisitStatus{Visit: ev.Visit, State: VisitWaiting}}
	t.order = append(t.order, ev.Visit)
}

func (t *visitTracker) follow(ev *store.Event) {
	set := func(state string) *VisitStatus {
		v, ok := t.visits[ev.Visit]
		if !ok || v.status.State == VisitWithdrawn {
			return &VisitStatus{}
		}
		v.status.State = state
		return &v.status
	}
	switch ev.Type {
	case store.EventConsentAccepted:
		t.track(ev)
	case store.EventWindowOpened:
		set(VisitOpen)
	case store.EventCaptureSaved:
		t.track(ev)
		set(VisitSaved).Purposes = ev.Purposes
	case store.EventCaptureSkipped:
		// A consent of the last run closed at start (interrupted) is
		// followed too: a kiosk may still be asking.
		t.track(ev)
		set(VisitSkipped).Reason = ev.Reason
	case store.EventConsentRevoked:
		for visit, v := range t.visits {
			if (ev.Subject != "" && ev.Subject == v.subject) || (ev.Visit != "" && ev.Visit == visit) {
				v.status = VisitStatus{Visit: visit, State: VisitWithdrawn}
			}
		}
	}
}
