package agent_test

// Tests of the privacy rules of docs/SPEC.md ("Privacy rules and the tests
// that hold them") at the level of the core: what events and the bus may
// carry, a revoke committing whole or not at all, the store's maintenance
// after erasures, how long token ids are remembered, and revokes by visit.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// Every kind of decision, made over HTTP, MQTT and the kiosk, leaves
// events and messages that hold no image, token, withdrawal code, address
// or User-Agent, with detail keys only from store.DetailKeys, on SPEC's
// topics only (Rig.CheckPrivacy; the end-to-end TestE2EPrivacySweep does
// the same against the real daemon).
func TestPrivacySweep(t *testing.T) {
	r := agenttest.New(t, time.Second, func(r *agenttest.Rig) { r.Agent.SweepInterval = 100 * time.Millisecond },
		agenttest.WithBroker, agenttest.WithKiosk("kiosk-tablet"))
	ctx := context.Background()

	// Refusals, of consents and of revokes.
	now := time.Now()
	sign := func(key agenttest.KeyPair, c consent.Consent) []byte {
		tok, err := consent.SignConsent(key.Priv, key.KID, c)
		if err != nil {
			t.Fatal(err)
		}
		r.Private.AddToken(tok)
		return []byte(tok)
	}
	base := consent.Consent{Issuer: "kiosk", Subject: "subj-r", Visit: "visit-r", Purposes: []string{"channel-attribution"},
		Notice: r.Notice.Hash(), Audience: consent.Audience(agenttest.Site, agenttest.Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute)}
	expired := base
	expired.IssuedAt, expired.NotBefore, expired.Expires = now.Add(-10*time.Minute), now.Add(-10*time.Minute), now.Add(-2*time.Minute)
	for _, c := range []struct {
		token  []byte
		reason consent.Reason
	}{
		{[]byte("not a token"), consent.ReasonMalformed},
		{bytes.Repeat([]byte("e"), 9<<10), consent.ReasonTooLarge},
		{sign(agenttest.NewKey(t, r.Issuer.KID), base), consent.ReasonBadSignature},
		{sign(r.Issuer, expired), consent.ReasonExpired},
	} {
		if _, err := r.Agent.Consent(ctx, c.token); consent.ReasonOf(err) != c.reason {
			t.Fatalf("consent refused with %v, want %s", err, c.reason)
		}
	}
	if _, err := r.Agent.Revoke(ctx, []byte(r.ConsentToken("visit-r", "subj-r", "channel-attribution"))); consent.ReasonOf(err) != consent.ReasonWrongType {
		t.Fatalf("a consent token as a revoke: %v, want wrong-type", err)
	}

	// A capture over MQTT, one over HTTP; image reads, one refused.
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	r.Sub.Publish("consent", []byte(r.ConsentToken("visit-mqtt", "subj-1", "channel-attribution")))
	r.WaitEvent("capture.saved over MQTT", agenttest.OfVisit(store.EventCaptureSaved, "visit-mqtt"))
	rec := r.SaveOne("visit-http", "subj-1", "channel-attribution")
	resp, img := r.Do("GET", "/v1/records/"+rec+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("image: %s", resp.Status)
	}
	r.Private.AddImage(img)
	if resp, _ := r.Do("GET", "/v1/records/"+rec+"/image?purpose=entry-security", httpapi.RoleOperator, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("image for a purpose not consented: %s", resp.Status)
	}

	// An expiry.
	r.SaveOne("visit-exp", "subj-exp", "entry-security")
	r.WaitEvent("record.expired", agenttest.OfVisit(store.EventRecordExpired, "visit-exp"))

	// The kiosk: agree (and a capture), decline, withdraw.
	ag := r.Agree("channel-attribution")
	r.WaitEvent("capture.saved at the kiosk", agenttest.OfVisit(store.EventCaptureSaved, ag.Visit))
	if resp, body := r.Do("POST", "/kiosk/api/decline", httpapi.RoleKiosk, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("decline: %s %s", resp.Status, body)
	}
	if status, body := r.WithdrawCode(ag.Code); status != http.StatusOK {
		t.Fatalf("withdraw: %d %s", status, body)
	}

	// A revoke over MQTT.
	r.Sub.Publish("revoke", []byte(r.RevokeToken("subj-1", "")))
	r.Sub.WaitTopic("revoke/receipt", 1)

	evs := r.Events()
	for _, typ := range []string{store.EventConsentRejected, store.EventRevokeRejected, store.EventCaptureSaved, store.EventRecordAccessed,
		store.EventRecordExpired, store.EventConsentDeclined, store.EventRecordErased, store.EventConsentRevoked} {
		if !slices.ContainsFunc(evs, agenttest.IsType(typ)) {
			t.Fatalf("test set-up: no %s in the log:\n%s", typ, agenttest.Dump(evs))
		}
	}
	r.Sub.WaitAudit(uint64(len(evs)), 30*time.Second)
	r.CheckPrivacy()
	if got := slices.Sorted(maps.Keys(r.Sub.Messages())); !slices.Equal(got, slices.Sorted(slices.Values(testenv.SpecTopics))) {
		t.Errorf("topics seen %v, want those of SPEC %v", got, testenv.SpecTopics)
	}
}

// A revoke's erasure and its events commit together or not at all. The
// store fails, one at a time, each write transaction the revoke makes
// (FaultyStore rolls a transaction back after running it in full, as a
// disk failing at commit does); after each failure either the records are
// erased, the window closed, the queued consent skipped and all their
// events are in the log, or nothing of it happened, in the store or in
// the agent.
func TestRevokeAllOrNothing(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) {
		r.Agent.Window = time.Hour
		// No background transaction runs during the test.
		r.Agent.SweepInterval, r.Agent.CheckpointInterval, r.Agent.CompactInterval = time.Hour, time.Hour, time.Hour
	})
	ctx := context.Background()

	// prepare gives subject two records, an open window and a queued
	// consent, and returns the record ids.
	prepare := func(subject string) []string {
		t.Helper()
		recs := []string{
			r.SaveOne(subject+"-a", subject, "channel-attribution"),
			r.SaveOne(subject+"-b", subject, "channel-attribution", "entry-security"),
		}
		r.Cam.Show()
		r.Visit(r.ConsentToken(subject+"-open", subject, "channel-attribution"))
		r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, subject+"-open"))
		r.Visit(r.ConsentToken(subject+"-queued", subject, "channel-attribution"))
		return recs
	}
	// state says what of the revoke of subject is in the store and the
	// agent: records left, and whether each of its effects happened.
	type effects struct {
		left                                  int
		erasedEvents, revokedEvent, skipQueue bool
		closedEvent                           bool
		windowOpen, inQueue                   bool // in the agent
	}
	state := func(subject string, recs []string) effects {
		t.Helper()
		var e effects
		if err := r.DB.View(func(tx *store.Tx) error {
			left, err := tx.Records(store.Selector{Subject: subject})
			e.left = len(left)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		erased := 0
		for _, ev := range r.Events() {
			switch {
			case ev.Type == store.EventRecordErased && slices.Contains(recs, ev.Record):
				erased++
			case ev.Type == store.EventConsentRevoked && ev.Subject == subject:
				e.revokedEvent = true
			case ev.Type == store.EventCaptureSkipped && ev.Visit == subject+"-queued" && ev.Reason == agent.ReasonRevoked:
				e.skipQueue = true
			case ev.Type == store.EventWindowClosed && ev.Visit == subject+"-open" && ev.Reason == agent.ReasonRevoked:
				e.closedEvent = true
			}
		}
		e.erasedEvents = erased == len(recs)
		snap := r.Agent.Snapshot()
		e.windowOpen = snap.Window == subject+"-open"
		e.inQueue = slices.Contains(snap.Queue, subject+"-queued")
		return e
	}
	all := effects{left: 0, erasedEvents: true, revokedEvent: true, skipQueue: true, closedEvent: true}
	none := effects{left: 2, windowOpen: true, inQueue: true}

	// How many write transactions a revoke makes.
	recs := prepare("dry")
	var mu sync.Mutex
	writes := 0
	r.Faults.FailWhen(func(n int, _ []store.Event) bool { mu.Lock(); defer mu.Unlock(); writes = n; return false })
	if _, err := r.Agent.Revoke(ctx, []byte(r.RevokeToken("dry", ""))); err != nil {
		t.Fatal(err)
	}
	r.Faults.FailWhen(nil)
	if got := state("dry", recs); got != all {
		t.Fatalf("test set-up: a revoke with a working store left %+v", got)
	}
	mu.Lock()
	n := writes
	mu.Unlock()
	if n == 0 {
		t.Fatal("test set-up: the revoke made no write transaction")
	}
	t.Logf("a revoke makes %d write transaction(s)", n)

	for fail := 1; fail <= n; fail++ {
		subject := fmt.Sprintf("subj-%d", fail)
		recs := prepare(subject)
		r.Faults.FailWhen(func(i int, _ []store.Event) bool { return i == fail })
		_, err := r.Agent.Revoke(ctx, []byte(r.RevokeToken(subject, "")))
		r.Faults.FailWhen(nil)
		switch got := state(subject, recs); {
		case got == all:
		case got == none && err != nil:
			if consent.ReasonOf(err) != "" {
				t.Errorf("transaction %d of %d failing: a store failure answered as a refusal: %v", fail, n, err)
			}
		default:
			t.Errorf("revoke with transaction %d of %d failing (err %v) left %+v; want all of %+v or none of it", fail, n, err, got, all)
		}
		// Tried again, it is carried out.
		if _, err := r.Agent.Revoke(ctx, []byte(r.RevokeToken(subject, ""))); err != nil {
			t.Fatal(err)
		}
		if got := state(subject, recs); got != all {
			t.Fatalf("the revoke of %s tried again left %+v", subject, got)
		}
	}
}

// waitMaintenance waits until the store's maintenance after an erasure
// (today a compaction, recorded as store.compacted) is recorded after
// seq, and fails the test otherwise. It is the one place these tests know
// what the maintenance is.
func waitMaintenance(r *agenttest.Rig, after uint64, what string) {
	r.T.Helper()
	r.WaitEvent("store.compacted after "+what, func(ev store.Event) bool {
		return ev.Type == store.EventStoreCompacted && ev.Seq > after
	})
}

// maintenanceInterval is how often these tests have the agent check
// whether maintenance is due.
const maintenanceInterval = 50 * time.Millisecond

func shortMaintenance(r *agenttest.Rig) { r.Agent.CompactInterval = maintenanceInterval }

// A revoke that erased something makes the maintenance due (bbolt keeps
// freed pages: until then the erased bytes are still in the file), with
// nothing else that could.
func TestRevokeMakesMaintenanceDue(t *testing.T) {
	r := agenttest.New(t, time.Hour, shortMaintenance)
	r.SaveOne("v-1", "subj-1", "channel-attribution")
	time.Sleep(10 * maintenanceInterval)
	if slices.ContainsFunc(r.Events(), agenttest.IsType(store.EventStoreCompacted)) {
		t.Fatal("test set-up: maintenance ran before any erasure")
	}
	rc, err := r.Agent.Revoke(context.Background(), []byte(r.RevokeToken("subj-1", "")))
	if err != nil || rc.Erased != 1 {
		t.Fatalf("revoke: %+v, %v", rc, err)
	}
	waitMaintenance(r, rc.Seq, "the revoke")
}

// A sweep that deleted a record makes the maintenance due, with no revoke.
func TestSweepMakesMaintenanceDue(t *testing.T) {
	r := agenttest.New(t, time.Second, func(r *agenttest.Rig) {
		shortMaintenance(r)
		r.Agent.SweepInterval = 100 * time.Millisecond
	})
	r.SaveOne("v-1", "subj-1", "entry-security")
	ev := r.WaitEvent("record.expired", agenttest.OfVisit(store.EventRecordExpired, "v-1"))
	if ev.Detail["deleted"] != true {
		t.Fatalf("test set-up: record.expired %+v did not delete the record", ev)
	}
	waitMaintenance(r, ev.Seq, "the sweep")
}

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

// A token id is remembered for as long as the verifier would accept the
// token (its expiry plus the clock skew), not only until the moment it was
// spent: the same consent token or revoke command is refused as replayed
// a second after, just before its expiry, and within the skew after it,
// across a restart too (whose sweep forgets the ids past their time).
func TestReplayRememberedUntilExpiry(t *testing.T) {
	start := time.Now()
	clock := &testClock{at: start}
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour }, agenttest.WithClock(clock.Now))
	ctx := context.Background()
	tok := []byte(r.ConsentToken("v-1", "s-1", "channel-attribution")) // expires at start + 10 min
	rev := []byte(r.RevokeToken("s-2", ""))                            // expires at start + 5 min
	if r.Agent.ClockSkew <= 0 {
		t.Fatalf("test set-up: clock skew %v", r.Agent.ClockSkew)
	}
	skew := r.Agent.ClockSkew
	if _, err := r.Agent.Consent(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Agent.Revoke(ctx, rev); err != nil {
		t.Fatal(err)
	}
	replayed := func(when string) {
		t.Helper()
		if _, err := r.Agent.Consent(ctx, tok); consent.ReasonOf(err) != consent.ReasonReplayed {
			t.Errorf("consent token again %s: %v, want replayed", when, err)
		}
	}
	revokeReplayed := func(when string) {
		t.Helper()
		if _, err := r.Agent.Revoke(ctx, rev); consent.ReasonOf(err) != consent.ReasonReplayed {
			t.Errorf("revoke command again %s: %v, want replayed", when, err)
		}
	}

	clock.Set(start.Add(time.Second))
	replayed("a second later")
	revokeReplayed("a second later")

	clock.Set(start.Add(5*time.Minute + skew/2))
	revokeReplayed("after its expiry, within the clock skew")
	r.Stop()
	r.Start()
	revokeReplayed("after a restart, within the clock skew")

	clock.Set(start.Add(10*time.Minute - time.Second))
	replayed("just before its expiry")
	clock.Set(start.Add(10*time.Minute + skew/2))
	r.Stop()
	r.Start()
	replayed("after a restart, within the clock skew after its expiry")

	// Past expiry and skew the verifier refuses it as expired: the id
	// need not be kept any longer.
	clock.Set(start.Add(10*time.Minute + skew + time.Second))
	if _, err := r.Agent.Consent(ctx, tok); consent.ReasonOf(err) != consent.ReasonExpired {
		t.Errorf("consent token past expiry and skew: %v, want expired", err)
	}
}

// A revoke naming a visit acts on that visit wherever it is, and on
// nothing else: its queued consent is skipped (the same subject's other
// queued visit waits on), its open window closes, its record is erased
// (the same subject's other record is kept). Each takes effect in the
// revoke's transaction: the events are in the log when Revoke returns.
func TestRevokeByVisit(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	ctx := context.Background()
	saved := r.SaveOne("v-saved", "subj-1", "channel-attribution")
	kept := r.SaveOne("v-kept", "subj-1", "channel-attribution")
	r.Cam.Show()
	r.Visit(r.ConsentToken("v-open", "subj-2", "channel-attribution"))
	r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, "v-open"))
	r.Visit(r.ConsentToken("v-queued", "subj-3", "channel-attribution"))
	r.Visit(r.ConsentToken("v-queued-2", "subj-3", "channel-attribution"))

	revoke := func(visit string, erased int) {
		t.Helper()
		rc, err := r.Agent.Revoke(ctx, []byte(r.RevokeToken("", visit)))
		if err != nil {
			t.Fatal(err)
		}
		if rc.Visit != visit || rc.Subject != "" || rc.Erased != erased {
			t.Errorf("receipt %+v, want visit %s with %d erased", rc.Receipt, visit, erased)
		}
	}
	has := func(typ, visit, reason string) bool {
		return slices.ContainsFunc(r.Events(), func(ev store.Event) bool {
			return ev.Type == typ && ev.Visit == visit && ev.Reason == reason
		})
	}

	revoke("v-queued", 0)
	if !has(store.EventCaptureSkipped, "v-queued", agent.ReasonRevoked) {
		t.Errorf("queued consent of the revoked visit not skipped as revoked:\n%s", agenttest.Dump(r.Events()))
	}
	if s := r.Agent.Snapshot(); s.Window != "v-open" || !slices.Equal(s.Queue, []string{"v-queued-2"}) {
		t.Errorf("after revoking v-queued: window %q, queue %v; want v-open and [v-queued-2]", s.Window, s.Queue)
	}

	revoke("v-open", 0)
	if !has(store.EventWindowClosed, "v-open", agent.ReasonRevoked) || !has(store.EventCaptureSkipped, "v-open", agent.ReasonRevoked) {
		t.Errorf("open window of the revoked visit not closed as revoked:\n%s", agenttest.Dump(r.Events()))
	}
	r.WaitEvent("window.opened of the subject's other queued visit", agenttest.OfVisit(store.EventWindowOpened, "v-queued-2"))

	revoke("v-saved", 1)
	if !slices.ContainsFunc(r.Events(), func(ev store.Event) bool { return ev.Type == store.EventRecordErased && ev.Record == saved }) {
		t.Errorf("no record.erased for the revoked visit's record %s", saved)
	}
	if recs := r.Records("subject=subj-1"); len(recs) != 1 || recs[0].ID != kept {
		t.Errorf("subject's records after revoking one visit: %+v, want only %s", recs, kept)
	}
	if has(store.EventWindowOpened, "v-queued", "") {
		t.Error("the revoked queued visit's window opened")
	}
}
