package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// saveOne runs a visit through the camera and returns its record id.
func (r *rig) saveOne(visit, subject string, purposes ...string) string {
	r.t.Helper()
	r.cam.show(face(240, 120, 160, 0.95))
	r.visit(r.consentToken(visit, subject, purposes...))
	return r.waitEvent("capture.saved of "+visit, ofVisit(store.EventCaptureSaved, visit)).Record
}

func (r *rig) records(query string) []store.Record {
	r.t.Helper()
	resp, body := r.do("GET", "/v1/records?"+query, agent.RoleOperator, nil)
	var recs []store.Record
	if resp.StatusCode != 200 || json.Unmarshal(body, &recs) != nil {
		r.t.Fatalf("GET /v1/records?%s: %s %s", query, resp.Status, body)
	}
	return recs
}

// A revoke erases what it names, in one transaction with its audit events,
// and returns a receipt signed by the device key that names the checkpoint
// covering the erasure.
func TestRevoke(t *testing.T) {
	r := newRig(t, time.Hour, nil)
	a1 := r.saveOne("v-a1", "subj-a", "channel-attribution")
	a2 := r.saveOne("v-a2", "subj-a", "channel-attribution", "entry-security")
	b1 := r.saveOne("v-b1", "subj-b", "channel-attribution")
	c1 := r.saveOne("v-c1", "subj-c", "entry-security")

	t.Run("by subject", func(t *testing.T) {
		receipt, err := r.a.Revoke(context.Background(), []byte(r.revokeToken("subj-a", "")))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := consent.VerifyReceipt(r.device.pub, receipt)
		if err != nil {
			t.Fatalf("receipt does not verify with the device key: %v", err)
		}
		if rc.Subject != "subj-a" || rc.Erased != 2 {
			t.Errorf("receipt = %+v", rc)
		}
		checkReceiptCheckpoint(t, r, rc)
		erased := map[string]bool{}
		for _, ev := range r.events() {
			if ev.Type == store.EventRecordErased {
				erased[ev.Record] = true
			}
		}
		if !erased[a1] || !erased[a2] || len(erased) != 2 {
			t.Errorf("record.erased for %v, want %s and %s", erased, a1, a2)
		}
		if recs := r.records("subject=subj-a"); len(recs) != 0 {
			t.Errorf("subject still has %d records", len(recs))
		}
		if recs := r.records("subject=subj-b"); len(recs) != 1 || recs[0].ID != b1 {
			t.Errorf("another subject's records changed: %+v", recs)
		}
		resp, _ := r.do("GET", "/v1/records/"+a1+"/image?purpose=channel-attribution", agent.RoleOperator, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("erased image: %s", resp.Status)
		}
	})
	t.Run("by visit", func(t *testing.T) {
		receipt, err := r.a.Revoke(context.Background(), []byte(r.revokeToken("", "v-c1")))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := consent.VerifyReceipt(r.device.pub, receipt)
		if err != nil || rc.Visit != "v-c1" || rc.Erased != 1 {
			t.Fatalf("receipt %+v, %v", rc, err)
		}
		ev := r.waitEvent("record.erased of v-c1", ofVisit(store.EventRecordErased, "v-c1"))
		if ev.Record != c1 || ev.Actor != r.operator.kid || ev.Reason != "consent withdrawn" {
			t.Errorf("record.erased = %+v", ev)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		tok := []byte(r.revokeToken("subj-b", ""))
		if _, err := r.a.Revoke(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		_, err := r.a.Revoke(context.Background(), tok)
		if got := consent.ReasonOf(err); got != consent.ReasonReplayed {
			t.Fatalf("second use: %v (reason %q), want replayed", err, got)
		}
		ev := r.waitEvent("revoke.rejected", isType(store.EventRevokeRejected))
		if ev.Reason != "replayed" || ev.Subject != "subj-b" {
			t.Errorf("revoke.rejected = %+v", ev)
		}
	})
	t.Run("forged", func(t *testing.T) {
		forger := newKey(t, r.operator.kid)
		now := time.Now()
		tok, _ := consent.SignRevoke(forger.priv, forger.kid, consent.Revoke{Issuer: "x", Subject: "subj-b", Reason: "r",
			Audience: consent.Audience(site, camera), IssuedAt: now, Expires: now.Add(time.Minute)})
		_, err := r.a.Revoke(context.Background(), []byte(tok))
		if got := consent.ReasonOf(err); got != consent.ReasonBadSignature {
			t.Fatalf("forged revoke: %v, want bad-signature", err)
		}
	})
}

// checkReceiptCheckpoint checks that the receipt's checkpoint is signed by
// the device key and that the consent.revoked event it names is in that tree.
func checkReceiptCheckpoint(t *testing.T, r *rig, rc *consent.Receipt) {
	t.Helper()
	v, err := store.NewCheckpointVerifier(store.Origin(site, camera), r.device.pub)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(rc.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("receipt checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	var size uint64
	fmt.Sscan(lines[1], &size)
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	if rc.Seq >= size {
		t.Fatalf("receipt seq %d not covered by its checkpoint of size %d", rc.Seq, size)
	}
	resp, body := r.do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&size=%d", rc.Seq, size), agent.RoleAuditor, nil)
	var p agent.InclusionProof
	if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
		t.Fatalf("inclusion proof: %s %s", resp.Status, body)
	}
	evs, _ := r.db.Events(rc.Seq, 1)
	var ev store.Event
	json.Unmarshal(evs[0], &ev)
	if ev.Type != store.EventConsentRevoked {
		t.Errorf("receipt seq %d is a %s event, want consent.revoked", rc.Seq, ev.Type)
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		hashes[i], _ = base64.StdEncoding.DecodeString(h)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, rc.Seq, size, rfc6962.DefaultHasher.HashLeaf(evs[0]), hashes, root); err != nil {
		t.Errorf("consent.revoked not provably in the receipt's checkpoint: %v", err)
	}
}

// A revoke naming the subject of the open window closes it at once and
// drops the subject's queued visits; nothing of theirs is saved after.
func TestRevokeClosesWindow(t *testing.T) {
	r := newRig(t, time.Hour, func(a *agent.Agent) { a.Window = time.Hour })
	r.visit(r.consentToken("open", "subj-x", "channel-attribution"))
	r.visit(r.consentToken("queued", "subj-x", "channel-attribution"))
	r.visit(r.consentToken("other", "subj-y", "channel-attribution"))
	r.waitEvent("window.opened", ofVisit(store.EventWindowOpened, "open"))

	receipt, err := r.a.Revoke(context.Background(), []byte(r.revokeToken("subj-x", "")))
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := consent.VerifyReceipt(r.device.pub, receipt); err != nil || rc.Erased != 0 {
		t.Errorf("receipt %+v, %v", rc, err)
	}
	closed := r.waitEvent("window.closed", ofVisit(store.EventWindowClosed, "open"))
	if closed.Reason != "revoked" {
		t.Errorf("window.closed reason = %q, want revoked", closed.Reason)
	}
	skipped := r.waitEvent("capture.skipped of the queued visit", ofVisit(store.EventCaptureSkipped, "queued"))
	if skipped.Reason != "revoked" {
		t.Errorf("queued visit skipped with %q, want revoked", skipped.Reason)
	}
	// The next visitor's window opens; the revoked subject's never does.
	r.waitEvent("window.opened of the other subject", ofVisit(store.EventWindowOpened, "other"))
	r.cam.show(face(240, 120, 160, 0.95))
	r.waitEvent("capture.saved of the other subject", ofVisit(store.EventCaptureSaved, "other"))
	for _, ev := range r.events() {
		if ev.Subject == "subj-x" && (ev.Type == store.EventCaptureSaved || (ev.Type == store.EventWindowOpened && ev.Visit == "queued")) {
			t.Errorf("after the revoke: %+v", ev)
		}
	}
}

// A purpose with a short retention expires by itself: its tag is dropped
// and, when no tag is left, the record with it.
func TestRetention(t *testing.T) {
	r := newRig(t, 1500*time.Millisecond, func(a *agent.Agent) { a.SweepInterval = 100 * time.Millisecond })
	both := r.saveOne("v-both", "s-1", "channel-attribution", "entry-security")
	only := r.saveOne("v-only", "s-2", "entry-security")

	ev := r.waitEvent("record.expired of the entry-security-only record", func(ev store.Event) bool {
		return ev.Type == store.EventRecordExpired && ev.Record == only
	})
	if ev.Detail["deleted"] != true || ev.Actor != "agent" {
		t.Errorf("record.expired = %+v, want deleted", ev)
	}
	ev = r.waitEvent("record.expired of the two-purpose record", func(ev store.Event) bool {
		return ev.Type == store.EventRecordExpired && ev.Record == both
	})
	if ev.Detail["deleted"] != false || len(ev.Purposes) != 1 || ev.Purposes[0] != "entry-security" {
		t.Errorf("record.expired = %+v, want entry-security dropped, record kept", ev)
	}
	if recs := r.records("visit=v-only"); len(recs) != 0 {
		t.Errorf("expired record still listed: %+v", recs)
	}
	recs := r.records("visit=v-both")
	if len(recs) != 1 || len(recs[0].Purposes) != 1 || recs[0].Purposes[0].Purpose != "channel-attribution" {
		t.Fatalf("record left = %+v", recs)
	}
	resp, _ := r.do("GET", "/v1/records/"+both+"/image?purpose=entry-security", agent.RoleOperator, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("image for an expired purpose: %s, want 403", resp.Status)
	}
}

// Every refusal reaching the agent over MQTT is audited as consent.rejected
// with its reason, and a good token after them still works.
func TestConsentOverMQTT(t *testing.T) {
	r := newRig(t, time.Hour, nil, withBroker)
	sub := r.sub
	r.cam.show(face(240, 120, 160, 0.95))

	now := time.Now()
	good := consent.Consent{Issuer: "kiosk", Subject: "s", Visit: "v-good", Purposes: []string{"channel-attribution"},
		Notice: r.notice.Hash(), Audience: consent.Audience(site, camera), IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute)}
	sign := func(c consent.Consent) []byte {
		tok, err := consent.SignConsent(r.issuer.priv, r.issuer.kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(tok)
	}
	with := func(f func(c *consent.Consent)) []byte { c := good; f(&c); return sign(c) }
	cases := []struct {
		reason consent.Reason
		token  []byte
	}{
		{consent.ReasonMalformed, []byte("not.a.jwt")},
		{consent.ReasonTooLarge, bytes.Repeat([]byte("a"), 9<<10)},
		{consent.ReasonWrongAudience, with(func(c *consent.Consent) { c.Audience = consent.Audience("office-99", "") })},
		{consent.ReasonExpired, with(func(c *consent.Consent) {
			c.IssuedAt, c.NotBefore, c.Expires = now.Add(-10*time.Minute), now.Add(-10*time.Minute), now.Add(-5*time.Minute)
		})},
		{consent.ReasonUnknownPurpose, with(func(c *consent.Consent) { c.Purposes = []string{"marketing"} })},
		{consent.ReasonStaleNotice, with(func(c *consent.Consent) { c.Notice = strings.Repeat("0", 64) })},
	}
	for _, c := range cases {
		sub.Publish("consent", c.token)
	}
	sub.Publish("consent", sign(good))
	r.waitEvent("capture.saved after the refusals", ofVisit(store.EventCaptureSaved, "v-good"))

	var got []string
	for _, ev := range r.events() {
		if ev.Type == store.EventConsentRejected {
			got = append(got, ev.Reason)
		}
	}
	for _, c := range cases {
		found := false
		for _, g := range got {
			found = found || g == string(c.reason)
		}
		if !found {
			t.Errorf("no consent.rejected with reason %s (got %v)", c.reason, got)
		}
	}
	if len(got) != len(cases) {
		t.Errorf("%d consent.rejected events, want %d", len(got), len(cases))
	}
	resp, _ := r.do("GET", "/healthz", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("agent unhealthy after the refusals: %s", resp.Status)
	}
}

// A revoke over MQTT gets its receipt on …/revoke/receipt.
func TestRevokeOverMQTT(t *testing.T) {
	r := newRig(t, time.Hour, nil, withBroker)
	sub := r.sub
	r.saveOne("v-1", "subj-1", "channel-attribution")
	sub.Publish("revoke", []byte(r.revokeToken("subj-1", "")))
	msgs := sub.WaitTopic("revoke/receipt", 1)
	rc, err := consent.VerifyReceipt(r.device.pub, msgs[0])
	if err != nil {
		t.Fatalf("receipt from MQTT: %v", err)
	}
	if rc.Subject != "subj-1" || rc.Erased != 1 {
		t.Errorf("receipt = %+v", rc)
	}
	checkReceiptCheckpoint(t, r, rc)
	// A consent token is no revoke command.
	sub.Publish("revoke", []byte(r.consentToken("v-2", "subj-2", "channel-attribution")))
	ev := r.waitEvent("revoke.rejected", isType(store.EventRevokeRejected))
	if ev.Reason != string(consent.ReasonWrongType) {
		t.Errorf("revoke.rejected reason = %q, want wrong-type", ev.Reason)
	}
}
