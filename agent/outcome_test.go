package agent_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/store"
)

// outcomes maps each accepted visit to the reasons of its capture.skipped
// ("saved" for a capture.saved), in log order.
func outcomes(evs []store.Event) map[string][]string {
	out := map[string][]string{}
	for _, ev := range evs {
		switch ev.Type {
		case store.EventConsentAccepted:
			out[ev.Visit] = out[ev.Visit][:0:0]
		case store.EventCaptureSaved:
			out[ev.Visit] = append(out[ev.Visit], "saved")
		case store.EventCaptureSkipped:
			out[ev.Visit] = append(out[ev.Visit], ev.Reason)
		}
	}
	return out
}

// An outcome the store fails to record (the disk is full: the record does
// not fit, smaller transactions do) is kept and written again until it is,
// before any other window opens: the saved capture is not lost, and the
// next visit's window opens after it.
func TestOutcomeRetried(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, nil, agenttest.WithLogger(logs.Logger()))
	r.Visit(r.ConsentToken("v-1", "s-1", "channel-attribution"))
	r.Visit(r.ConsentToken("v-2", "s-2", "channel-attribution"))
	r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, "v-1"))
	r.Faults.FailWhen(func(_ int, evs []store.Event) bool {
		return slices.ContainsFunc(evs, agenttest.IsType(store.EventCaptureSaved))
	})
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	if !logs.WaitFor("record outcomes; trying again", 3) {
		t.Fatalf("the outcome was not tried again; log:\n%s", logs.String())
	}
	if slices.ContainsFunc(r.Events(), agenttest.OfVisit(store.EventWindowOpened, "v-2")) {
		t.Fatal("the next window opened before the outcome was recorded")
	}
	r.Faults.FailWhen(nil)
	r.WaitEvent("capture.saved of v-2", agenttest.OfVisit(store.EventCaptureSaved, "v-2"))

	evs := r.Events()
	saved1 := slices.IndexFunc(evs, agenttest.OfVisit(store.EventCaptureSaved, "v-1"))
	opened2 := slices.IndexFunc(evs, agenttest.OfVisit(store.EventWindowOpened, "v-2"))
	if saved1 < 0 || saved1 > opened2 {
		t.Errorf("v-1 saved at %d, v-2's window opened at %d; log:\n%s", saved1, opened2, agenttest.Dump(evs))
	}
	if got := outcomes(evs); !slices.Equal(got["v-1"], []string{"saved"}) || !slices.Equal(got["v-2"], []string{"saved"}) {
		t.Errorf("outcomes %v", got)
	}
}

// An agent that stops without recording the outcomes of its accepted
// consents (here the disk fails at shutdown; a crash is the same for the
// store) closes them at the next start: capture.skipped, and window.closed
// for the open window, with reason interrupted, once each.
func TestInterruptedAtStart(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	for _, v := range []string{"v-open", "v-wait-1", "v-wait-2"} {
		r.Visit(r.ConsentToken(v, "s-"+v, "channel-attribution"))
	}
	r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, "v-open"))
	r.Faults.FailWhen(agenttest.Always)
	if err := r.Halt(); err == nil {
		t.Error("stopped cleanly with a store that cannot write")
	}
	r.Faults.FailWhen(nil)
	r.Start()

	evs := r.Events()
	got := outcomes(evs)
	for _, v := range []string{"v-open", "v-wait-1", "v-wait-2"} {
		if !slices.Equal(got[v], []string{agent.ReasonInterrupted}) {
			t.Errorf("%s: outcomes %v, want [interrupted]; log:\n%s", v, got[v], agenttest.Dump(evs))
		}
	}
	closed := slices.IndexFunc(evs, agenttest.OfVisit(store.EventWindowClosed, "v-open"))
	if closed < 0 || evs[closed].Reason != agent.ReasonInterrupted {
		t.Errorf("no window.closed interrupted for the open window")
	}
	if slices.ContainsFunc(evs, agenttest.OfVisit(store.EventWindowClosed, "v-wait-1")) {
		t.Error("window.closed for a visit whose window never opened")
	}
	if st, ok := r.Agent.VisitStatus("v-wait-2"); !ok || st.State != agent.VisitSkipped || st.Reason != agent.ReasonInterrupted {
		t.Errorf("the status of an interrupted visit is %+v, %v", st, ok)
	}

	// Once closed, they are not closed again.
	r.Stop()
	r.Start()
	if got := outcomes(r.Events()); !slices.Equal(got["v-open"], []string{agent.ReasonInterrupted}) {
		t.Errorf("after another restart: %v", got["v-open"])
	}
}

// A window that gets no picture because the camera is down ends with
// reason source-down, not no-face, which would hide the cause.
func TestSourceDown(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = 500 * time.Millisecond })
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	r.Cam.Unplug()
	r.WaitEvent("source.failed", agenttest.IsType(store.EventSourceFailed))
	r.Visit(r.ConsentToken("v-1", "s-1", "channel-attribution"))
	skipped := r.WaitEvent("capture.skipped", agenttest.OfVisit(store.EventCaptureSkipped, "v-1"))
	if skipped.Reason != agent.ReasonSourceDown {
		t.Errorf("skipped with %q, want %q", skipped.Reason, agent.ReasonSourceDown)
	}
	r.Cam.Plug()
	r.WaitEvent("source.recovered", agenttest.IsType(store.EventSourceRecovered))
	r.Visit(r.ConsentToken("v-2", "s-2", "channel-attribution"))
	r.WaitEvent("capture.saved once the camera is back", agenttest.OfVisit(store.EventCaptureSaved, "v-2"))
}

// A read of a face for a purpose it is not tagged with, or after that
// purpose's retention, is refused and audited (access.refused), naming the
// record, the purpose and who asked.
func TestRefusedReadAudited(t *testing.T) {
	r := agenttest.New(t, 300*time.Millisecond, func(r *agenttest.Rig) { r.Agent.SweepInterval = time.Hour })
	rec := r.SaveOne("v-1", "s-1", "channel-attribution", "entry-security")
	time.Sleep(400 * time.Millisecond) // entry-security has expired (no sweep yet)
	for _, purpose := range []string{"marketing", "entry-security"} {
		if _, err := r.Agent.ReadImage(rec, purpose, "operator"); !errors.Is(err, store.ErrPurpose) {
			t.Fatalf("read for %s: %v, want ErrPurpose", purpose, err)
		}
		ev := r.WaitEvent("access.refused for "+purpose, func(ev store.Event) bool {
			return ev.Type == store.EventAccessRefused && slices.Equal(ev.Purposes, []string{purpose})
		})
		if ev.Record != rec || ev.Subject != "s-1" || ev.Visit != "v-1" || ev.Actor != "operator" || ev.Reason != "purpose-not-allowed" {
			t.Errorf("access.refused = %+v", ev)
		}
	}
	if slices.ContainsFunc(r.Events(), agenttest.IsType(store.EventRecordAccessed)) {
		t.Error("a refused read recorded as record.accessed")
	}
	if _, err := r.Agent.ReadImage("no-such-record", "marketing", "operator"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read of no record: %v", err)
	}
}
