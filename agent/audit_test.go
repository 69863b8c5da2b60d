package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// A restarted agent continues the log: seq without gap, the new events
// chained to the old, and the old undelivered events published.
func TestRestartContinuesLog(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	r.SaveOne("v-1", "s-1", "channel-attribution")
	r.Stop()
	before := r.DB.Size()
	evs := r.Events()
	if last := evs[len(evs)-1]; last.Type != store.EventCheckpoint || evs[len(evs)-2].Type != store.EventAgentStopped {
		t.Errorf("log ends with %s, %s; want agent.stopped then checkpoint", evs[len(evs)-2].Type, last.Type)
	}
	if err := r.Agent.Open(); err == nil {
		t.Error("an agent opened twice")
	}

	// A new agent on the same store.
	r.Start()
	r.SaveOne("v-2", "s-2", "channel-attribution")
	evs = r.Events()
	for i, ev := range evs {
		if ev.Seq != uint64(i) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
	if evs[before].Type != store.EventAgentStarted {
		t.Errorf("seq %d is %s, want agent.started", before, evs[before].Type)
	}
}

// Golden files: the bytes of an audit event and of a revoke receipt, made
// with a fixed clock and a fixed device key.
func TestGolden(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	fixed := func(kid string, seed byte) agenttest.KeyPair {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
		return agenttest.KeyPair{KID: kid, Pub: k.Public().(ed25519.PublicKey), Priv: k}
	}
	r := agenttest.New(t, time.Hour, nil, agenttest.WithClock(func() time.Time { return at }), func(r *agenttest.Rig) {
		r.Device, r.Operator = fixed("device", 1), fixed("ops-1", 2)
	})
	tok, err := consent.SignRevoke(r.Operator.Priv, r.Operator.KID, consent.Revoke{
		Issuer: "front-desk", JTI: "req-0001", Visit: "visit-42", Reason: "consent withdrawn",
		Audience: consent.Audience(agenttest.Site, agenttest.Camera), IssuedAt: at, Expires: at.Add(5 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := r.Agent.Revoke(context.Background(), []byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	var revoked []byte
	raw, _ := r.DB.Events(0, 1000)
	for _, ev := range raw {
		if bytes.Contains(ev, []byte(`"type":"consent.revoked"`)) {
			revoked = ev
		}
	}
	golden(t, "consent-revoked.json", revoked)
	golden(t, "revoke-receipt.json", receipt.Signed)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Errorf("%s differs from the golden file:\ngot:  %s\nwant: %s", name, got, want)
	}
}
