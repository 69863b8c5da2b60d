package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

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
	r := agenttest.New(t, time.Hour, nil)
	r.SaveOne("v-1", "s-1", "channel-attribution")
	r.SaveOne("v-2", "s-2", "entry-security")
	if _, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("s-1", ""))); err != nil {
		t.Fatal(err)
	}

	resp, log := r.Do("GET", "/v1/audit", httpapi.RoleAuditor, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/audit: %s", resp.Status)
	}
	resp, cp := r.Do("GET", "/v1/audit/checkpoint", httpapi.RoleAuditor, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/audit/checkpoint: %s", resp.Status)
	}
	rep, err := store.VerifyLog(bytes.NewReader(log), cp, r.Device.Pub)
	if err != nil {
		t.Fatalf("the served log does not verify: %v", err)
	}
	size := r.DB.Size()
	if rep.Events != size {
		t.Errorf("served %d events, store has %d", rep.Events, size)
	}

	t.Run("paging", func(t *testing.T) {
		_, page := r.Do("GET", "/v1/audit?after=3&limit=2", httpapi.RoleAuditor, nil)
		lines := bytes.Split(bytes.TrimSpace(page), []byte("\n"))
		want, _ := r.DB.Events(4, 2)
		if len(lines) != 2 || !bytes.Equal(lines[0], want[0]) || !bytes.Equal(lines[1], want[1]) {
			t.Errorf("after=3&limit=2 gave\n%s", page)
		}
		for _, q := range []string{"after=x", "limit=0", "limit=100000"} {
			if resp, _ := r.Do("GET", "/v1/audit?"+q, httpapi.RoleAuditor, nil); resp.StatusCode != 400 {
				t.Errorf("?%s: %s, want 400", q, resp.Status)
			}
		}
	})
	t.Run("inclusion", func(t *testing.T) {
		for _, seq := range []uint64{0, 1, size / 2, size - 1} {
			resp, body := r.Do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&size=%d", seq, size), httpapi.RoleAuditor, nil)
			var p httpapi.InclusionProof
			if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
				t.Fatalf("seq %d: %s %s", seq, resp.Status, body)
			}
			ev, _ := r.DB.Events(seq, 1)
			root, _ := base64.StdEncoding.DecodeString(p.Root)
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, size, rfc6962.DefaultHasher.HashLeaf(ev[0]), decodeHashes(t, p.Hashes), root); err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
		}
		if resp, _ := r.Do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&size=%d", size, size), httpapi.RoleAuditor, nil); resp.StatusCode != 400 {
			t.Errorf("seq = size: %s, want 400", resp.Status)
		}
	})
	t.Run("consistency", func(t *testing.T) {
		for _, from := range []uint64{1, 2, size / 2, size} {
			resp, body := r.Do("GET", fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", from, size), httpapi.RoleAuditor, nil)
			var p httpapi.ConsistencyProof
			if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
				t.Fatalf("from %d: %s %s", from, resp.Status, body)
			}
			r1, _ := base64.StdEncoding.DecodeString(p.FromRoot)
			r2, _ := base64.StdEncoding.DecodeString(p.ToRoot)
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, decodeHashes(t, p.Hashes), r1, r2); err != nil {
				t.Errorf("from %d: %v", from, err)
			}
		}
		if resp, _ := r.Do("GET", "/v1/audit/proof/consistency?from=5&to=2", httpapi.RoleAuditor, nil); resp.StatusCode != 400 {
			t.Errorf("from > to: %s, want 400", resp.Status)
		}
	})
}
