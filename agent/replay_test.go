package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// A token id is spent in the transaction that records the decision: the
// same consent token or revoke command a second time is refused as
// replayed, audited with the claims it names, across a restart too.
func TestReplay(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	ctx := context.Background()
	tok := []byte(r.ConsentToken("v-1", "s-1", "channel-attribution"))
	if _, err := r.Agent.Consent(ctx, tok); err != nil {
		t.Fatal(err)
	}
	_, err := r.Agent.Consent(ctx, tok)
	if consent.ReasonOf(err) != consent.ReasonReplayed {
		t.Fatalf("second consent: %v, want replayed", err)
	}
	ev := r.WaitEvent("consent.rejected", agenttest.IsType(store.EventConsentRejected))
	if ev.Reason != "replayed" || ev.Visit != "v-1" || ev.Subject != "s-1" || ev.Actor != r.Issuer.KID {
		t.Errorf("consent.rejected = %+v", ev)
	}

	rev := []byte(r.RevokeToken("s-1", ""))
	if _, err := r.Agent.Revoke(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Agent.Revoke(ctx, rev); consent.ReasonOf(err) != consent.ReasonReplayed {
		t.Fatalf("second revoke: %v, want replayed", err)
	}
	ev = r.WaitEvent("revoke.rejected", agenttest.IsType(store.EventRevokeRejected))
	if ev.Reason != "replayed" || ev.Subject != "s-1" || ev.Detail["request"] == nil {
		t.Errorf("revoke.rejected = %+v", ev)
	}

	r.Stop()
	r.Start()
	if _, err := r.Agent.Consent(ctx, tok); consent.ReasonOf(err) != consent.ReasonReplayed {
		t.Errorf("after a restart: %v, want replayed", err)
	}
}

// Replayed is the last check: a token that is also expired is refused as
// expired, and its id is not spent by the refusal.
func TestReplayCheckedLast(t *testing.T) {
	now := time.Now()
	var clock struct {
		sync.Mutex
		at time.Time
	}
	clock.at = now
	r := agenttest.New(t, time.Hour, nil, agenttest.WithClock(func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		return clock.at
	}))
	tok := []byte(r.ConsentToken("v-1", "s-1", "channel-attribution")) // valid for 10 minutes
	if _, err := r.Agent.Consent(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clock.Lock()
	clock.at = now.Add(11 * time.Minute)
	clock.Unlock()
	if _, err := r.Agent.Consent(context.Background(), tok); consent.ReasonOf(err) != consent.ReasonExpired {
		t.Errorf("expired and spent: %v, want expired", err)
	}
}

// Of the same token submitted at once from many places, exactly one is
// accepted; the others are refused as replayed.
func TestReplayConcurrent(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	tok := []byte(r.ConsentToken("v-1", "s-1", "channel-attribution"))
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Agent.Consent(context.Background(), tok)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	accepted, replayed := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			accepted++
		case consent.ReasonOf(err) == consent.ReasonReplayed:
			replayed++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if accepted != 1 || replayed != n-1 {
		t.Errorf("%d accepted, %d replayed; want 1 and %d", accepted, replayed, n-1)
	}
}

// A store that fails while the token id is spent is a failure of the box,
// not a refusal of the token: nothing is recorded, and the same token is
// accepted once the store works again.
func TestReplayStoreFails(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	tok := []byte(r.ConsentToken("v-1", "s-1", "channel-attribution"))
	r.Faults.FailNext(1)
	_, err := r.Agent.Consent(context.Background(), tok)
	if err == nil || consent.ReasonOf(err) != "" || !errors.Is(err, agenttest.ErrInjected) {
		t.Fatalf("consent with a failing store: %v; want the store's error, not a refusal", err)
	}
	if _, err := r.Agent.Consent(context.Background(), tok); err != nil {
		t.Fatalf("the same token once the store works: %v", err)
	}
}
