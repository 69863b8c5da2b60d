package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func decodeHashes(t *testing.T, in []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(in))
	for i, s := range in {
		var err error
		if out[i], err = base64.StdEncoding.DecodeString(s); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The auditor's endpoints serve the log exactly as stored, a checkpoint
// signed by the device key, and proofs the library's verifier accepts.
func TestAuditEndpoints(t *testing.T) {
	r := newRig(t, time.Hour, nil)
	r.saveOne("v-1", "s-1", "channel-attribution")
	r.saveOne("v-2", "s-2", "entry-security")
	if _, err := r.a.Revoke(context.Background(), []byte(r.revokeToken("s-1", ""))); err != nil {
		t.Fatal(err)
	}

	resp, log := r.do("GET", "/v1/audit", agent.RoleAuditor, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/audit: %s", resp.Status)
	}
	resp, cp := r.do("GET", "/v1/audit/checkpoint", agent.RoleAuditor, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/audit/checkpoint: %s", resp.Status)
	}
	rep, err := store.VerifyLog(bytes.NewReader(log), cp, r.device.pub)
	if err != nil {
		t.Fatalf("the served log does not verify: %v", err)
	}
	size := r.db.Size()
	if rep.Events != size {
		t.Errorf("served %d events, store has %d", rep.Events, size)
	}

	t.Run("paging", func(t *testing.T) {
		_, page := r.do("GET", "/v1/audit?after=3&limit=2", agent.RoleAuditor, nil)
		lines := bytes.Split(bytes.TrimSpace(page), []byte("\n"))
		want, _ := r.db.Events(4, 2)
		if len(lines) != 2 || !bytes.Equal(lines[0], want[0]) || !bytes.Equal(lines[1], want[1]) {
			t.Errorf("after=3&limit=2 gave\n%s", page)
		}
		for _, q := range []string{"after=x", "limit=0", "limit=100000"} {
			if resp, _ := r.do("GET", "/v1/audit?"+q, agent.RoleAuditor, nil); resp.StatusCode != 400 {
				t.Errorf("?%s: %s, want 400", q, resp.Status)
			}
		}
	})
	t.Run("inclusion", func(t *testing.T) {
		for _, seq := range []uint64{0, 1, size / 2, size - 1} {
			resp, body := r.do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&size=%d", seq, size), agent.RoleAuditor, nil)
			var p agent.InclusionProof
			if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
				t.Fatalf("seq %d: %s %s", seq, resp.Status, body)
			}
			ev, _ := r.db.Events(seq, 1)
			root, _ := base64.StdEncoding.DecodeString(p.Root)
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, size, rfc6962.DefaultHasher.HashLeaf(ev[0]), decodeHashes(t, p.Hashes), root); err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
		}
		if resp, _ := r.do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&size=%d", size, size), agent.RoleAuditor, nil); resp.StatusCode != 400 {
			t.Errorf("seq = size: %s, want 400", resp.Status)
		}
	})
	t.Run("consistency", func(t *testing.T) {
		for _, from := range []uint64{1, 2, size / 2, size} {
			resp, body := r.do("GET", fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", from, size), agent.RoleAuditor, nil)
			var p agent.ConsistencyProof
			if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
				t.Fatalf("from %d: %s %s", from, resp.Status, body)
			}
			r1, _ := base64.StdEncoding.DecodeString(p.FromRoot)
			r2, _ := base64.StdEncoding.DecodeString(p.ToRoot)
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, decodeHashes(t, p.Hashes), r1, r2); err != nil {
				t.Errorf("from %d: %v", from, err)
			}
		}
		if resp, _ := r.do("GET", "/v1/audit/proof/consistency?from=5&to=2", agent.RoleAuditor, nil); resp.StatusCode != 400 {
			t.Errorf("from > to: %s, want 400", resp.Status)
		}
	})
}

// Audit events go out on …/audit through the outbox: with the broker down
// they wait; after it comes back every one arrives, in seq order.
func TestOutboxAcrossBrokerRestart(t *testing.T) {
	r := newRig(t, time.Hour, nil, withBroker)
	sub := r.sub
	sub.WaitAudit(r.db.Size(), 15*time.Second)

	r.broker.Stop()
	r.saveOne("v-down-1", "s-1", "channel-attribution")
	r.saveOne("v-down-2", "s-2", "channel-attribution")
	if _, err := r.a.Revoke(context.Background(), []byte(r.revokeToken("s-1", ""))); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.db.PendingCount(); n == 0 {
		t.Fatal("nothing waits in the outbox while the broker is down")
	}
	r.broker.Start()

	sub.WaitAudit(r.db.Size(), 30*time.Second)
	sub.CheckArrivalOrder()
	pending := func() int { n, _ := r.db.PendingCount(); return n }
	if !testenv.WaitUntil(10*time.Second, func() bool { return pending() == 0 }) {
		t.Fatalf("%d events still pending after delivery", pending())
	}
}

// A restarted agent continues the log: seq without gap, the new events
// chained to the old, and the old undelivered events published.
func TestRestartContinuesLog(t *testing.T) {
	r := newRig(t, time.Hour, nil)
	r.saveOne("v-1", "s-1", "channel-attribution")
	r.stop()
	before := r.db.Size()
	evs := r.events()
	if last := evs[len(evs)-1]; last.Type != store.EventCheckpoint || evs[len(evs)-2].Type != store.EventAgentStopped {
		t.Errorf("log ends with %s, %s; want agent.stopped then checkpoint", evs[len(evs)-2].Type, last.Type)
	}
	if err := r.a.Open(context.Background()); err == nil {
		t.Error("an agent opened twice")
	}

	// A new agent on the same store.
	r.start()
	r.saveOne("v-2", "s-2", "channel-attribution")
	evs = r.events()
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
	device := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	r := newRig(t, time.Hour, nil, withClock(func() time.Time { return at }), func(r *rig) {
		r.device = keyPair{"device", device.Public().(ed25519.PublicKey), device}
		r.operator = keyPair{"ops-1", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)).Public().(ed25519.PublicKey),
			ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))}
	})
	tok, err := consent.SignRevoke(r.operator.priv, r.operator.kid, consent.Revoke{
		Issuer: "front-desk", JTI: "req-0001", Visit: "visit-42", Reason: "consent withdrawn",
		Audience: consent.Audience(site, camera), IssuedAt: at, Expires: at.Add(5 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := r.a.Revoke(context.Background(), []byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	var revoked []byte
	raw, _ := r.db.Events(0, 1000)
	for _, ev := range raw {
		if bytes.Contains(ev, []byte(`"type":"consent.revoked"`)) {
			revoked = ev
		}
	}
	golden(t, "consent-revoked.json", revoked)
	golden(t, "revoke-receipt.json", receipt)
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
