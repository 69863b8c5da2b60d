package mqttbus_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	mqtt "github.com/eclipse/paho.mqtt.golang"
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

// The broker restarts, again and again, while hundreds of QoS 1 publishes
// are in flight: every event reaches the subscriber, in seq order, the
// outbox empties, and (under -race) paho never resends a publish of its own.
func TestBrokerRestartInFlight(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithBroker)
	r.Sub.WaitAudit(r.DB.Size(), 15*time.Second)
	for round := range 4 {
		for range 3 {
			err := r.DB.Update(func(tx *store.Tx) error {
				for range 500 {
					if err := tx.Append(&store.Event{Type: store.EventConsentRejected, Reason: "malformed"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// Let the publisher get some of the backlog in flight, then pull
		// the broker from under it.
		testenv.WaitUntil(5*time.Second, func() bool { n, _ := r.DB.PendingCount(); return n < 1400 })
		r.Broker.Stop()
		if round%2 == 1 {
			time.Sleep(200 * time.Millisecond) // down for a while, or back at once
		}
		r.Broker.Start()
	}
	r.Sub.WaitAudit(r.DB.Size(), 60*time.Second)
	r.Sub.CheckArrivalOrder()
	if !testenv.WaitUntil(10*time.Second, func() bool { n, _ := r.DB.PendingCount(); return n == 0 }) {
		n, _ := r.DB.PendingCount()
		t.Fatalf("%d events still pending after delivery", n)
	}
}

// A consent from MQTT that the store fails to record is not a refusal: the
// failure is logged and counted, the broker's message is not acknowledged,
// and the consent is handled once the store works again: accepted once,
// never refused as replayed.
func TestCommandStoreFailure(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour },
		agenttest.WithBroker, agenttest.WithLogger(logs.Logger()))
	r.Faults.FailNext(3)
	r.Sub.Publish("consent", []byte(r.ConsentToken("v-1", "s-1", "channel-attribution")))
	r.WaitEvent("consent.accepted", agenttest.OfVisit(store.EventConsentAccepted, "v-1"))

	_, metrics := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	if !regexp.MustCompile(`consentcam_mqtt_command_failures_total\{topic="consent"\} 3\n`).Match(metrics) {
		t.Errorf("metrics do not count 3 failures:\n%s", grep(metrics, "consentcam_mqtt_command_failures_total"))
	}
	if n := strings.Count(logs.String(), "mqtt command failed"); n != 3 {
		t.Errorf("%d log lines of the failure, want 3:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), r.ConsentToken("v-1", "s-1", "channel-attribution")[:20]) {
		t.Error("the log holds the token")
	}
	time.Sleep(300 * time.Millisecond) // a redelivery, if any, would be handled by now
	for _, ev := range r.Events() {
		if ev.Type == store.EventConsentRejected {
			t.Errorf("refused after the failure: %+v", ev)
		}
	}
}

// grep returns the lines of text that hold s.
func grep(text []byte, s string) string {
	var out []string
	for _, line := range strings.Split(string(text), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Another client connecting with the agent's client id (a takeover: the
// broker drops the older session) makes the agent say so, count it, and
// stand back instead of throwing the other off again and again; it comes
// back once the other is gone.
func TestTakeoverNoticed(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Bus.TakeoverBackoff = 10 * time.Second },
		agenttest.WithBroker, agenttest.WithLogger(logs.Logger()))
	var kicked atomic.Int64 // times the rogue client lost its connection
	rogue := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.Broker.URL()).SetClientID(r.Bus.ClientID).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(100 * time.Millisecond).
		SetConnectionLostHandler(func(mqtt.Client, error) { kicked.Add(1) }))
	rogue.Connect()
	if !logs.WaitFor("another client is likely using this client id", 1) {
		rogue.Disconnect(0)
		t.Fatalf("no takeover noticed; log:\n%s", logs.String())
	}
	_, metrics := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	if !regexp.MustCompile(`consentcam_mqtt_takeovers_total [1-9]`).Match(metrics) {
		t.Errorf("takeovers not counted:\n%s", grep(metrics, "takeovers"))
	}
	// Backing off: for a while the agent leaves the other client alone
	// instead of throwing it off again.
	before := kicked.Load()
	time.Sleep(2 * time.Second)
	if n := kicked.Load() - before; n != 0 {
		t.Errorf("the agent threw the other client off %d times while it should have been backing off", n)
	}
	rogue.Disconnect(0)
	if !testenv.WaitUntil(30*time.Second, r.Bus.Connected) {
		t.Fatal("the agent did not come back once the other client left")
	}
}

// A 16 MiB message on …/consent (a broker that lets it through) is refused
// as too-large and audited, without the agent ever holding it: it
// allocates far less than the message while it passes.
func TestOversizedMessage(t *testing.T) {
	// A broker of its own, with no subscriber of the test's in this
	// process: only the agent may take the message in here.
	broker := testenv.StartMosquitto(t)
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Bus.URL = broker.URL() })
	if !testenv.WaitUntil(10*time.Second, r.Bus.Connected) {
		t.Fatal("the agent did not connect")
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte{'a'}, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(broker.Addr())
	r.Cam.Unplug() // the fake camera allocates a frame every 10 ms
	r.WaitEvent("source.failed", agenttest.IsType(store.EventSourceFailed))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := exec.Command(testenv.Program(t, "mosquitto_pub"), "-h", host, "-p", port, "-q", "1",
		"-t", agenttest.Prefix+"/consent", "-f", big).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	ev := r.WaitEvent("consent.rejected", agenttest.IsType(store.EventConsentRejected))
	runtime.ReadMemStats(&after)
	if ev.Reason != string(consent.ReasonTooLarge) {
		t.Errorf("refused as %q, want too-large", ev.Reason)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("the agent allocated %d MiB while a 16 MiB message passed", n>>20)
	}
}
