package mqttbus_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// Every refusal reaching the agent over MQTT is audited as consent.rejected
// with its reason, and a good token after them still works.
func TestConsentOverMQTT(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithBroker)
	sub := r.Sub
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))

	now := time.Now()
	good := consent.Consent{Issuer: "kiosk", Subject: "s", Visit: "v-good", Purposes: []string{"channel-attribution"},
		Notice: r.Notice.Hash(), Audience: consent.Audience(agenttest.Site, agenttest.Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute)}
	sign := func(c consent.Consent) []byte {
		tok, err := consent.SignConsent(r.Issuer.Priv, r.Issuer.KID, c)
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
	r.WaitEvent("capture.saved after the refusals", agenttest.OfVisit(store.EventCaptureSaved, "v-good"))

	var got []string
	for _, ev := range r.Events() {
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
	resp, _ := r.Do("GET", "/healthz", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("agent unhealthy after the refusals: %s", resp.Status)
	}
}

// A revoke over MQTT gets its receipt on …/revoke/receipt.
func TestRevokeOverMQTT(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithBroker)
	sub := r.Sub
	r.SaveOne("v-1", "subj-1", "channel-attribution")
	sub.Publish("revoke", []byte(r.RevokeToken("subj-1", "")))
	msgs := sub.WaitTopic("revoke/receipt", 1)
	rc, err := consent.VerifyReceipt(r.Device.Pub, msgs[0])
	if err != nil {
		t.Fatalf("receipt from MQTT: %v", err)
	}
	if rc.Subject != "subj-1" || rc.Erased != 1 {
		t.Errorf("receipt = %+v", rc)
	}
	agenttest.CheckReceiptCheckpoint(t, r, rc)
	// A consent token is no revoke command.
	sub.Publish("revoke", []byte(r.ConsentToken("v-2", "subj-2", "channel-attribution")))
	ev := r.WaitEvent("revoke.rejected", agenttest.IsType(store.EventRevokeRejected))
	if ev.Reason != string(consent.ReasonWrongType) {
		t.Errorf("revoke.rejected reason = %q, want wrong-type", ev.Reason)
	}
}

// Audit events go out on …/audit through the outbox: with the broker down
// they wait; after it comes back every one arrives, in seq order.
func TestOutboxAcrossBrokerRestart(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithBroker)
	sub := r.Sub
	sub.WaitAudit(r.DB.Size(), 15*time.Second)

	r.Broker.Stop()
	r.SaveOne("v-down-1", "s-1", "channel-attribution")
	r.SaveOne("v-down-2", "s-2", "channel-attribution")
	if _, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("s-1", ""))); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.DB.PendingCount(); n == 0 {
		t.Fatal("nothing waits in the outbox while the broker is down")
	}
	r.Broker.Start()

	sub.WaitAudit(r.DB.Size(), 30*time.Second)
	sub.CheckArrivalOrder()
	pending := func() int { n, _ := r.DB.PendingCount(); return n }
	if !testenv.WaitUntil(10*time.Second, func() bool { return pending() == 0 }) {
		t.Fatalf("%d events still pending after delivery", pending())
	}
}
