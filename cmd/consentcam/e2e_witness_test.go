package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/audit"
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

	// audit check takes the same: on a bundle whose checkpoint the witness
	// cosigned.
	bundle := filepath.Join(t.TempDir(), "bundle")
	tokenFile := filepath.Join(b.keys, httpapi.RoleAuditor+".token")
	if !testenv.WaitUntil(15*time.Second, func() bool {
		os.RemoveAll(bundle)
		if out, err := runMain(t, "audit", "pull", "--url", "http://"+b.httpAddr, "--token-file", tokenFile, "--bundle", bundle); err != nil {
			t.Fatalf("audit pull --bundle: %v\n%s", err, out)
		}
		data, err := os.ReadFile(filepath.Join(bundle, audit.FileCheckpoint))
		return err == nil && cosigned(data)
	}) {
		t.Fatal("the bundle's checkpoint is not cosigned")
	}
	page := filepath.Join(t.TempDir(), "report.html")
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
		say   string
	}{
		{"the witness", []string{"--witness", b.witness.VKey, "--report", page}, true, "witness PASS  the checkpoint cosigned by 1 of 1 trusted witnesses (" + b.witness.Name + " at "},
		{"another witness", []string{"--witness", other.VKey}, false, "not cosigned as required"},
		{"both, lacking the quorum", []string{"--witness", b.witness.VKey, "--witness", other.VKey}, false, "not enough cosignatures: 1 of the 2 needed"},
		{"both, quorum 1", []string{"--witness", b.witness.VKey, "--witness", other.VKey, "--quorum", "1"}, true, "cosigned by 1 of 2 trusted witnesses"},
	} {
		t.Run("audit check/"+tc.name, func(t *testing.T) {
			out, err := runMain(t, append([]string{"audit", "check", bundle}, tc.flags...)...)
			if (err == nil) != tc.ok || !strings.Contains(out+fmt.Sprint(err), tc.say) {
				t.Errorf("audit check %v: %v, want ok=%v, saying %q:\n%s", tc.flags, err, tc.ok, tc.say, out)
			}
		})
	}
	if html, err := os.ReadFile(page); err != nil || !strings.Contains(string(html), `<dd id="witnessed">the checkpoint cosigned by 1 of 1 trusted witnesses (`+b.witness.Name) {
		t.Errorf("the HTML report does not say who cosigned (%v)", err)
	}
}
