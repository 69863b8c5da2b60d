package agent_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// A revoke erases what it names, in one transaction with its audit events,
// and returns a receipt signed by the device key that names the checkpoint
// covering the erasure.
func TestRevoke(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	a1 := r.SaveOne("v-a1", "subj-a", "channel-attribution")
	a2 := r.SaveOne("v-a2", "subj-a", "channel-attribution", "entry-security")
	b1 := r.SaveOne("v-b1", "subj-b", "channel-attribution")
	c1 := r.SaveOne("v-c1", "subj-c", "entry-security")

	t.Run("by subject", func(t *testing.T) {
		receipt, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("subj-a", "")))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := consent.VerifyReceipt(r.Device.Pub, receipt.Signed)
		if err != nil {
			t.Fatalf("receipt does not verify with the device key: %v", err)
		}
		if rc.Subject != "subj-a" || rc.Erased != 2 {
			t.Errorf("receipt = %+v", rc)
		}
		agenttest.CheckReceiptCheckpoint(t, r, rc)
		erased := map[string]bool{}
		for _, ev := range r.Events() {
			if ev.Type == store.EventRecordErased {
				erased[ev.Record] = true
			}
		}
		if !erased[a1] || !erased[a2] || len(erased) != 2 {
			t.Errorf("record.erased for %v, want %s and %s", erased, a1, a2)
		}
		if recs := r.Records("subject=subj-a"); len(recs) != 0 {
			t.Errorf("subject still has %d records", len(recs))
		}
		if recs := r.Records("subject=subj-b"); len(recs) != 1 || recs[0].ID != b1 {
			t.Errorf("another subject's records changed: %+v", recs)
		}
		resp, _ := r.Do("GET", "/v1/records/"+a1+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("erased image: %s", resp.Status)
		}
	})
	t.Run("by visit", func(t *testing.T) {
		receipt, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("", "v-c1")))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := consent.VerifyReceipt(r.Device.Pub, receipt.Signed)
		if err != nil || rc.Visit != "v-c1" || rc.Erased != 1 {
			t.Fatalf("receipt %+v, %v", rc, err)
		}
		ev := r.WaitEvent("record.erased of v-c1", agenttest.OfVisit(store.EventRecordErased, "v-c1"))
		if ev.Record != c1 || ev.Actor != r.Operator.KID || ev.Reason != "consent withdrawn" {
			t.Errorf("record.erased = %+v", ev)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		tok := []byte(r.RevokeToken("subj-b", ""))
		if _, err := r.Agent.Revoke(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		_, err := r.Agent.Revoke(context.Background(), tok)
		if got := consent.ReasonOf(err); got != consent.ReasonReplayed {
			t.Fatalf("second use: %v (reason %q), want replayed", err, got)
		}
		ev := r.WaitEvent("revoke.rejected", agenttest.IsType(store.EventRevokeRejected))
		if ev.Reason != "replayed" || ev.Subject != "subj-b" {
			t.Errorf("revoke.rejected = %+v", ev)
		}
	})
	t.Run("forged", func(t *testing.T) {
		forger := agenttest.NewKey(t, r.Operator.KID)
		now := time.Now()
		tok, _ := consent.SignRevoke(forger.Priv, forger.KID, consent.Revoke{Issuer: "x", Subject: "subj-b", Reason: "r",
			Audience: consent.Audience(agenttest.Site, agenttest.Camera), IssuedAt: now, Expires: now.Add(time.Minute)})
		_, err := r.Agent.Revoke(context.Background(), []byte(tok))
		if got := consent.ReasonOf(err); got != consent.ReasonBadSignature {
			t.Fatalf("forged revoke: %v, want bad-signature", err)
		}
	})
}

// A revoke naming the subject of the open window closes it at once and
// drops the subject's queued visits; nothing of theirs is saved after.
func TestRevokeClosesWindow(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	r.Visit(r.ConsentToken("open", "subj-x", "channel-attribution"))
	r.Visit(r.ConsentToken("queued", "subj-x", "channel-attribution"))
	r.Visit(r.ConsentToken("other", "subj-y", "channel-attribution"))
	r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, "open"))

	receipt, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("subj-x", "")))
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := consent.VerifyReceipt(r.Device.Pub, receipt.Signed); err != nil || rc.Erased != 0 {
		t.Errorf("receipt %+v, %v", rc, err)
	}
	closed := r.WaitEvent("window.closed", agenttest.OfVisit(store.EventWindowClosed, "open"))
	if closed.Reason != "revoked" {
		t.Errorf("window.closed reason = %q, want revoked", closed.Reason)
	}
	skipped := r.WaitEvent("capture.skipped of the queued visit", agenttest.OfVisit(store.EventCaptureSkipped, "queued"))
	if skipped.Reason != "revoked" {
		t.Errorf("queued visit skipped with %q, want revoked", skipped.Reason)
	}
	// The next visitor's window opens; the revoked subject's never does.
	r.WaitEvent("window.opened of the other subject", agenttest.OfVisit(store.EventWindowOpened, "other"))
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	r.WaitEvent("capture.saved of the other subject", agenttest.OfVisit(store.EventCaptureSaved, "other"))
	for _, ev := range r.Events() {
		if ev.Subject == "subj-x" && (ev.Type == store.EventCaptureSaved || (ev.Type == store.EventWindowOpened && ev.Visit == "queued")) {
			t.Errorf("after the revoke: %+v", ev)
		}
	}
}

// A purpose with a short retention expires by itself: its tag is dropped
// and, when no tag is left, the record with it.
func TestRetention(t *testing.T) {
	r := agenttest.New(t, 1500*time.Millisecond, func(r *agenttest.Rig) { r.Agent.SweepInterval = 100 * time.Millisecond })
	both := r.SaveOne("v-both", "s-1", "channel-attribution", "entry-security")
	only := r.SaveOne("v-only", "s-2", "entry-security")

	ev := r.WaitEvent("record.expired of the entry-security-only record", func(ev store.Event) bool {
		return ev.Type == store.EventRecordExpired && ev.Record == only
	})
	if ev.Detail["deleted"] != true || ev.Actor != "agent" {
		t.Errorf("record.expired = %+v, want deleted", ev)
	}
	ev = r.WaitEvent("record.expired of the two-purpose record", func(ev store.Event) bool {
		return ev.Type == store.EventRecordExpired && ev.Record == both
	})
	if ev.Detail["deleted"] != false || len(ev.Purposes) != 1 || ev.Purposes[0] != "entry-security" {
		t.Errorf("record.expired = %+v, want entry-security dropped, record kept", ev)
	}
	if recs := r.Records("visit=v-only"); len(recs) != 0 {
		t.Errorf("expired record still listed: %+v", recs)
	}
	recs := r.Records("visit=v-both")
	if len(recs) != 1 || len(recs[0].Purposes) != 1 || recs[0].Purposes[0].Purpose != "channel-attribution" {
		t.Fatalf("record left = %+v", recs)
	}
	resp, _ := r.Do("GET", "/v1/records/"+both+"/image?purpose=entry-security", httpapi.RoleOperator, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("image for an expired purpose: %s, want 403", resp.Status)
	}
}
