package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

// withWitness makes the rig's agent push its checkpoints, made every
// 200 ms, to a real witness (omniwitness) that follows its log.
func withWitness(t *testing.T, opts ...agenttest.Option) (*agenttest.Rig, *testenv.Omniwitness) {
	t.Helper()
	device := agenttest.NewKey(t, "device")
	origin := store.Origin(agenttest.Site, agenttest.Camera)
	vkey, err := note.NewEd25519VerifierKey(origin, device.Pub)
	if err != nil {
		t.Fatal(err)
	}
	w := testenv.StartOmniwitness(t, "witness.example/w1", testenv.WitnessedLog{Origin: origin, VKey: vkey})
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) {
		r.Agent.CheckpointInterval = 200 * time.Millisecond
		lv, err := store.NewCheckpointVerifier(origin, device.Pub)
		if err != nil {
			t.Fatal(err)
		}
		c, err := witness.NewClient(lv, r.DB, []witness.Config{{Name: w.Name, URL: w.URL(), Key: w.VKey}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		c.MaxSkip = 0 // try the witness at every checkpoint
		r.Agent.Witnesses = c
	}, append(opts, func(r *agenttest.Rig) { r.Device = device })...)
	return r, w
}

// cosignedBy reports whether the agent's latest checkpoint carries a valid
// cosignature of w, and returns its tree size.
func cosignedBy(t *testing.T, r *agenttest.Rig, w *testenv.Omniwitness) (uint64, bool) {
	t.Helper()
	cp, err := r.Agent.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := store.NewCheckpointVerifier(store.Origin(agenttest.Site, agenttest.Camera), r.Device.Pub)
	wv, err := witness.NewVerifier(w.VKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := witness.VerifyCosigned(cp, lv, []note.Verifier{wv}, 1)
	if err != nil {
		return 0, false
	}
	return c.Size, true
}

// Every checkpoint goes to the witness, off the control loop; the agent
// publishes and serves it cosigned.
func TestWitnessed(t *testing.T) {
	r, w := withWitness(t)
	r.SaveOne("v-1", "s-1", "channel-attribution")
	if !testenv.WaitUntil(15*time.Second, func() bool {
		size, ok := cosignedBy(t, r, w)
		return ok && size == r.DB.Size()
	}) {
		cp, _ := r.Agent.Checkpoint()
		t.Fatalf("the latest checkpoint is not cosigned by the witness:\n%s", cp)
	}
	resp, body := r.Do("GET", "/v1/audit/checkpoint", httpapi.RoleAuditor, nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("— "+w.Name+" ")) {
		t.Errorf("GET /v1/audit/checkpoint: %s, without the witness's cosignature:\n%s", resp.Status, body)
	}
	_, metrics := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	for _, want := range []string{`consentcam_checkpoint_witnessed 1`, `consentcam_witness_cosigned{witness="` + w.Name + `"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if slices.ContainsFunc(r.Events(), agenttest.IsType(store.EventWitnessFailed)) {
		t.Errorf("a witness failure with the witness up:\n%s", agenttest.Dump(r.Events()))
	}
}

// A witness that is down: the agent goes on (consents, captures), records
// the failure once (witness.failed, reason down), counts it, and once the
// witness is back catches up and records that (witness.recovered).
func TestWitnessDownThenBack(t *testing.T) {
	r, w := withWitness(t)
	testenv.WaitUntil(15*time.Second, func() bool { _, ok := cosignedBy(t, r, w); return ok })
	w.Stop()
	r.SaveOne("v-1", "s-1", "channel-attribution") // captures go on
	failed := r.WaitEvent("witness.failed", agenttest.IsType(store.EventWitnessFailed))
	if failed.Reason != "down" || failed.Detail["witness"] != w.Name || failed.Actor != "agent" {
		t.Errorf("witness.failed = %+v", failed)
	}
	_, metrics := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	if !regexp.MustCompile(`consentcam_witness_failures_total\{reason="down",witness="` + regexp.QuoteMeta(w.Name) + `"\} [1-9]`).Match(metrics) {
		t.Error("the failure is not counted")
	}
	time.Sleep(time.Second) // several checkpoints fail meanwhile: one event
	if n := len(slices.DeleteFunc(r.Events(), func(ev store.Event) bool { return ev.Type != store.EventWitnessFailed })); n != 1 {
		t.Errorf("%d witness.failed events for one outage, want 1", n)
	}
	w.Start()
	r.WaitEvent("witness.recovered", agenttest.IsType(store.EventWitnessRecovered))
	if !testenv.WaitUntil(15*time.Second, func() bool {
		size, ok := cosignedBy(t, r, w)
		return ok && size == r.DB.Size()
	}) {
		t.Error("not cosigned again once the witness is back")
	}
}

// The box's state restored from an older copy, then appended to: the log
// forks from what the witness cosigned. The witness refuses, and the box
// says so: witness.failed with reason fork, the metric, its log.
func TestWitnessRefusesRestoredBackup(t *testing.T) {
	var logs agenttest.LogBuffer
	r, w := withWitness(t, agenttest.WithLogger(logs.Logger()))
	testenv.WaitUntil(15*time.Second, func() bool { _, ok := cosignedBy(t, r, w); return ok })
	r.Stop()
	backup := t.TempDir()
	r.Reopen(func(dir string) { copyFiles(t, dir, backup) })
	r.Start()
	r.SaveOne("v-1", "s-1", "channel-attribution")
	if !testenv.WaitUntil(15*time.Second, func() bool { size, ok := cosignedBy(t, r, w); return ok && size > 0 }) {
		t.Fatal("test set-up: the later log was never cosigned")
	}
	r.Stop()
	r.Reopen(func(dir string) { copyFiles(t, backup, dir) }) // the older copy
	r.Start()
	r.Visit(r.ConsentToken("v-other", "s-other", "entry-security")) // a different history
	ev := r.WaitEvent("witness.failed", agenttest.IsType(store.EventWitnessFailed))
	if ev.Reason != "fork" {
		t.Errorf("witness.failed = %+v, want reason fork", ev)
	}
	_, metrics := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	if !regexp.MustCompile(`consentcam_witness_failures_total\{reason="fork",witness="` + regexp.QuoteMeta(w.Name) + `"\} [1-9]`).Match(metrics) {
		t.Error("the fork is not counted in consentcam_witness_failures_total")
	}
	if !regexp.MustCompile(`level=WARN msg="witness failed" witness=` + regexp.QuoteMeta(w.Name) + ` reason=fork`).MatchString(logs.String()) {
		t.Errorf("the fork is not in the log:\n%s", logs.String())
	}
	if _, ok := cosignedBy(t, r, w); ok {
		cp, _ := r.Agent.Checkpoint()
		t.Errorf("a forked log published as cosigned:\n%s", cp)
	}
}

// copyFiles copies the files of dir src (the store's two) into dst.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
