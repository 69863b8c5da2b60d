package agent_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// subjectsStored reads consentcam_subjects_stored from /metrics.
func subjectsStored(t *testing.T, r *agenttest.Rig) int {
	t.Helper()
	_, body := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	m := regexp.MustCompile(`(?m)^consentcam_subjects_stored (\d+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no consentcam_subjects_stored in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func filingEvents(r *agenttest.Rig) []store.Event {
	var out []store.Event
	for _, ev := range r.Events() {
		if ev.Type == store.EventFilingThreshold {
			out = append(out, ev)
		}
	}
	return out
}

// The distinct subjects whose face is stored are counted from the log (at
// start) and from every commit since; each filing threshold is recorded
// once, ever, in the transaction of the capture that reaches it.
func TestSubjectsStoredAndFilingThresholds(t *testing.T) {
	if got := agent.New().FilingThresholds; len(got) != 2 || got[0] != 80_000 || got[1] != 100_000 {
		t.Errorf("default thresholds %v, want 80000 and 100000", got)
	}
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.FilingThresholds = []int{2, 3} })
	// The gauge follows each commit through a store subscriber, which runs
	// just after the commit is visible: the log may be a moment ahead of
	// it. A count too high shows in the next want, as the counts add up.
	want := func(n int) {
		t.Helper()
		got := -1
		if !testenv.WaitUntil(5*time.Second, func() bool { got = subjectsStored(t, r); return got == n }) {
			t.Errorf("consentcam_subjects_stored = %d, want %d", got, n)
		}
	}
	want(0)
	r.SaveOne("v1", "s1", "entry-security")
	r.SaveOne("v2", "s1", "channel-attribution") // the same person again
	want(1)
	if evs := filingEvents(r); len(evs) != 0 {
		t.Fatalf("threshold events at one subject: %s", agenttest.Dump(evs))
	}

	rec := r.SaveOne("v3", "s2", "entry-security")
	want(2)
	evs := filingEvents(r)
	if len(evs) != 1 || fmt.Sprint(evs[0].Detail["threshold"]) != "2" || fmt.Sprint(evs[0].Detail["subjects"]) != "2" || evs[0].Actor != "agent" {
		t.Fatalf("filing.threshold events: %s", agenttest.Dump(evs))
	}
	saved := r.WaitEvent("capture.saved of v3", agenttest.OfVisit(store.EventCaptureSaved, "v3"))
	if saved.Record != rec || evs[0].Seq != saved.Seq+2 { // capture.saved, window.closed, filing.threshold
		t.Errorf("filing.threshold at seq %d, capture.saved at %d: not in its transaction", evs[0].Seq, saved.Seq)
	}

	if _, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("s2", ""))); err != nil {
		t.Fatal(err)
	}
	want(1)
	r.SaveOne("v4", "s3", "entry-security")
	want(2)
	if evs := filingEvents(r); len(evs) != 1 {
		t.Errorf("a threshold crossed again was recorded again: %s", agenttest.Dump(evs))
	}

	// A new run counts from the log, and remembers what it recorded.
	r.Stop()
	r.Start()
	want(2)
	r.SaveOne("v5", "s4", "entry-security")
	want(3)
	evs = filingEvents(r)
	if len(evs) != 2 || fmt.Sprint(evs[1].Detail["threshold"]) != "3" || fmt.Sprint(evs[1].Detail["subjects"]) != "3" {
		t.Fatalf("filing.threshold events: %s", agenttest.Dump(evs))
	}
	r.Stop()
	r.Start()
	r.SaveOne("v6", "s5", "entry-security")
	want(4)
	if evs := filingEvents(r); len(evs) != 2 {
		t.Errorf("thresholds recorded again after a restart: %s", agenttest.Dump(evs))
	}
}

// A subject whose last record expires is no longer counted.
func TestSubjectsStoredExpiry(t *testing.T) {
	r := agenttest.New(t, 500*time.Millisecond, func(r *agenttest.Rig) { r.Agent.SweepInterval = 100 * time.Millisecond })
	r.SaveOne("v1", "s1", "entry-security")
	r.WaitEvent("record.expired", agenttest.IsType(store.EventRecordExpired))
	got := -1
	if !testenv.WaitUntil(5*time.Second, func() bool { got = subjectsStored(t, r); return got == 0 }) {
		t.Errorf("consentcam_subjects_stored = %d after the only record expired", got)
	}
}
