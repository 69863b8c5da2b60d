package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// A box with a witness: the checkpoint it publishes on …/checkpoint and
// serves to the auditor carries the witness's cosignature, and audit verify
// --witness accepts the pulled log against it; against another witness's
// key it does not.
func TestE2EWitnessed(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor", witnessed: true})
	b.postVisit(b.consentToken("v-1", "s-1", "channel-attribution"))
	b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "v-1"))
	cosigned := func(cp []byte) bool { return strings.Contains(string(cp), "— "+b.witness.Name+" ") }
	if !testenv.WaitUntil(15*time.Second, func() bool {
		msgs := b.sub.WaitTopic("checkpoint", 1)
		return cosigned(msgs[len(msgs)-1])
	}) {
		t.Fatal("no checkpoint cosigned by the witness on …/checkpoint")
	}
	// Pulled now, the log ends with what the cosigned checkpoint covers
	// once a checkpoint made after the pull's events is cosigned: pull
	// until the two agree.
	var log, cp string
	if !testenv.WaitUntil(15*time.Second, func() bool {
		log, cp = b.pull(t)
		data, err := os.ReadFile(cp)
		return err == nil && cosigned(data)
	}) {
		t.Fatal("the checkpoint served to the auditor is not cosigned")
	}
	path := filepath.Join(t.TempDir(), "log.jsonl")
	os.WriteFile(path, []byte(log), 0o644)
	verify := func(witnessKey string) error {
		_, err := runMain(t, "audit", "verify", "--pubkey", filepath.Join(b.keys, "device.pub"), "--checkpoint", cp,
			"--witness", witnessKey, path)
		return err
	}
	if err := verify(b.witness.VKey); err != nil {
		t.Errorf("audit verify --witness: %v", err)
	}
	other := testenv.StartOmniwitness(t, "witness.example/other")
	if err := verify(other.VKey); err == nil {
		t.Error("audit verify --witness accepted a checkpoint another witness never cosigned")
	}
}
