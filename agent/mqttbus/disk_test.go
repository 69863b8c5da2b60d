package mqttbus_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// fillStore fills the store's file system and writes into the store until
// it cannot: bbolt reuses the pages its transactions freed, so a few more
// commit after the disk is full; once 20 in a row have failed, with pauses
// for readers to finish, no page is left to reuse and nothing commits.
func fillStore(t *testing.T, r *agenttest.Rig) (free func()) {
	t.Helper()
	free = testenv.FillDisk(t, r.StateDir)
	for i, failed := 0, 0; failed < 20; i++ {
		err := r.DB.Update(func(tx *store.Tx) error {
			return tx.Append(&store.Event{Type: store.EventSourceFailed, Detail: map[string]any{"error": "test: filling the disk"}})
		})
		switch {
		case errors.Is(err, syscall.ENOSPC):
			failed++
		case err != nil || i > 2000:
			t.Fatalf("the store still writes on a full disk after %d transactions (%v)", i, err)
		default:
			failed = 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	return free
}

// revokesOf counts the consent.revoked events of a subject.
func revokesOf(r *agenttest.Rig, subject string) (revoked int) {
	for _, ev := range r.Events() {
		if ev.Type == store.EventConsentRevoked && ev.Subject == subject {
			revoked++
		}
	}
	return revoked
}

// A revoke that arrives over MQTT while the disk is full is not
// acknowledged to the broker: not across a restart of the agent (the broker
// gives it again), nor while the agent runs on (it is tried again); once
// there is room it is carried out, once, with its receipt.
func TestRevokeOnFullDisk(t *testing.T) {
	dir := testenv.TmpFS(t, "4m")
	r := agenttest.New(t, time.Hour, nil, agenttest.WithBroker, agenttest.WithStateDir(dir))
	r.SaveOne("v-1", "s-1", "channel-attribution")
	r.SaveOne("v-2", "s-2", "channel-attribution")

	// receipts are the verified receipts that arrived for subject.
	receipts := func(subject string) []*consent.Receipt {
		var out []*consent.Receipt
		for _, msg := range r.Sub.WaitTopic("revoke/receipt", 0) {
			rc, err := consent.VerifyReceipt(r.Device.Pub, msg)
			if err != nil {
				t.Fatalf("a receipt that does not verify: %v", err)
			}
			if rc.Subject == subject {
				out = append(out, rc)
			}
		}
		return out
	}
	check := func(subject string) {
		t.Helper()
		if !testenv.WaitUntil(15*time.Second, func() bool { return len(receipts(subject)) > 0 }) {
			t.Fatalf("no receipt for %s", subject)
		}
		for _, rc := range receipts(subject) { // the same receipt, if sent again
			if rc.Erased != 1 {
				t.Errorf("receipt %+v, want erased 1", rc)
			}
		}
		if revoked := revokesOf(r, subject); revoked != 1 {
			t.Errorf("%d consent.revoked for %s, want 1", revoked, subject)
		}
		if recs := r.Records("subject=" + subject); len(recs) != 0 {
			t.Errorf("%s still has %d records", subject, len(recs))
		}
	}
	// nothing checks that a while on the full disk changes nothing.
	nothing := func(subject string) {
		t.Helper()
		time.Sleep(1500 * time.Millisecond)
		if len(receipts(subject)) != 0 {
			t.Fatalf("a receipt while the disk is full")
		}
		if revoked := revokesOf(r, subject); revoked != 0 {
			t.Fatalf("revoked while the disk is full")
		}
	}

	t.Run("the agent restarts before there is room", func(t *testing.T) {
		free := fillStore(t, r)
		r.Sub.Publish("revoke", []byte(r.RevokeToken("s-1", "")))
		nothing("s-1")
		if err := r.Halt(); err == nil {
			t.Error("a clean stop on a full disk")
		}
		free()
		r.Start()
		check("s-1")
	})
	t.Run("room comes back while the agent runs", func(t *testing.T) {
		free := fillStore(t, r)
		r.Sub.Publish("revoke", []byte(r.RevokeToken("s-2", "")))
		nothing("s-2")
		free()
		check("s-2")
	})
}
