package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// Every identifier of a token has one size limit, checked where tokens are
// verified: a token with identifiers of the largest size is accepted and
// its outcome recorded; one byte more in any of them is refused as
// malformed, and the refusal recorded.
func TestIdentifierLimits(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.RefusalInterval = 100 * time.Millisecond })
	big := func(c byte) string { return strings.Repeat(string(c), consent.MaxIDSize) }
	now := time.Now()
	sign := func(c consent.Consent) []byte {
		c.Issuer, c.Purposes, c.Notice = "kiosk", []string{"channel-attribution"}, r.Notice.Hash()
		c.Audience, c.IssuedAt, c.NotBefore, c.Expires = consent.Audience(agenttest.Site, agenttest.Camera), now, now, now.Add(5*time.Minute)
		tok, err := consent.SignConsent(r.Issuer.Priv, r.Issuer.KID, c)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(tok)
	}

	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	if _, err := r.Agent.Consent(context.Background(), sign(consent.Consent{Visit: big('v'), Subject: big('s'), JTI: big('j')})); err != nil {
		t.Fatalf("identifiers of the largest size: %v", err)
	}
	saved := r.WaitEvent("capture.saved", agenttest.OfVisit(store.EventCaptureSaved, big('v')))
	if saved.Subject != big('s') {
		t.Errorf("capture.saved = %+v", saved)
	}

	for _, c := range []struct {
		name string
		c    consent.Consent
	}{
		{"visit", consent.Consent{Visit: big('v') + "v", Subject: "s", JTI: "j-1"}},
		{"subject", consent.Consent{Visit: "v", Subject: big('s') + "s", JTI: "j-2"}},
		{"jti", consent.Consent{Visit: "v", Subject: "s", JTI: big('j') + "j"}},
	} {
		before := refused(r.Events(), store.EventConsentRejected, "malformed")
		_, err := r.Agent.Consent(context.Background(), sign(c.c))
		if consent.ReasonOf(err) != consent.ReasonMalformed {
			t.Errorf("%s one byte over: %v, want malformed", c.name, err)
		}
		if !testenv.WaitUntil(5*time.Second, func() bool {
			return refused(r.Events(), store.EventConsentRejected, "malformed") == before+1
		}) {
			t.Errorf("%s one byte over: the refusal is not recorded:\n%s", c.name, agenttest.Dump(r.Events()))
		}
	}
	tok := []byte(r.RevokeToken(big('s')+"s", ""))
	if _, err := r.Agent.Revoke(context.Background(), tok); consent.ReasonOf(err) != consent.ReasonMalformed {
		t.Errorf("revoke of a subject one byte over: %v, want malformed", err)
	}
}

// refused counts the refusals of a type and reason the log records: an
// event with a count (refusals of unverified tokens, counted) stands for
// that many.
func refused(evs []store.Event, typ, reason string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type != typ || ev.Reason != reason {
			continue
		}
		if c, ok := ev.Detail["count"].(float64); ok {
			n += int(c)
		} else {
			n++
		}
	}
	return n
}

// Anyone can send tokens that do not verify: their refusals are counted,
// at most two events per reason an interval (the first at once, then the
// count), never one each; a refusal of a verified token is one event each.
func TestRefusalsCounted(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.RefusalInterval = 500 * time.Millisecond })
	before := len(r.Events())
	for i := range 200 {
		if _, err := r.Agent.Consent(context.Background(), []byte(fmt.Sprintf("not.a.token-%d", i))); consent.ReasonOf(err) != consent.ReasonMalformed {
			t.Fatalf("garbage: %v", err)
		}
	}
	for range 3 {
		if _, err := r.Agent.Revoke(context.Background(), []byte("garbage")); consent.ReasonOf(err) != consent.ReasonMalformed {
			t.Fatalf("garbage revoke: %v", err)
		}
	}
	if !testenv.WaitUntil(5*time.Second, func() bool {
		evs := r.Events()
		return refused(evs, store.EventConsentRejected, "malformed") == 200 && refused(evs, store.EventRevokeRejected, "malformed") == 3
	}) {
		t.Fatalf("the refusals are not all counted:\n%s", agenttest.Dump(r.Events()[before:]))
	}
	evs := r.Events()[before:]
	n := 0
	for _, ev := range evs {
		if ev.Type == store.EventConsentRejected {
			n++
			if ev.Visit != "" || ev.Subject != "" || ev.Actor != "" {
				t.Errorf("a refusal of an unverified token names claims: %+v", ev)
			}
			if c, ok := ev.Detail["count"]; ok && (ev.Detail["first"] == nil || ev.Detail["last"] == nil) {
				t.Errorf("a count of %v without first and last: %+v", c, ev)
			}
		}
	}
	if n > 2 {
		t.Errorf("%d consent.rejected events for 200 garbage tokens in one interval, want at most 2:\n%s", n, agenttest.Dump(evs))
	}

	// Verified tokens refused: one event each, naming them.
	now := time.Now()
	for i := range 3 {
		tok, err := consent.SignConsent(r.Issuer.Priv, r.Issuer.KID, consent.Consent{Issuer: "kiosk", Subject: "s", JTI: fmt.Sprint("stale-", i),
			Visit: fmt.Sprint("v-stale-", i), Purposes: []string{"channel-attribution"}, Notice: strings.Repeat("0", 64),
			Audience: consent.Audience(agenttest.Site, agenttest.Camera), IssuedAt: now, NotBefore: now, Expires: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		r.Agent.Consent(context.Background(), []byte(tok))
		r.WaitEvent("consent.rejected of a verified token", agenttest.OfVisit(store.EventConsentRejected, fmt.Sprint("v-stale-", i)))
	}
}

// The agent's log, at debug level, never holds a token, nor a subject id
// (a pseudonym, but personal data all the same): not when it accepts, not
// when it refuses, not when it revokes.
func TestNoTokenInLog(t *testing.T) {
	var logs agenttest.LogBuffer
	r := agenttest.New(t, time.Hour, nil, agenttest.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := context.Background()
	tok := r.ConsentToken("v-secret", "s-secret-subject", "channel-attribution")
	r.Agent.Consent(ctx, []byte(tok))
	r.Agent.Consent(ctx, []byte(tok))                                                   // replayed
	r.Agent.Consent(ctx, []byte(tok[:len(tok)-4]))                                      // bad signature
	r.Agent.Consent(ctx, []byte(r.ConsentToken("v-2", "s-other-subject", "marketing"))) // unknown purpose
	rev := r.RevokeToken("s-secret-subject", "")
	r.Agent.Revoke(ctx, []byte(rev))
	r.Agent.Revoke(ctx, []byte(rev))
	r.Stop()
	r.Start()
	log := logs.String()
	for _, secret := range []string{tok, rev, "s-secret-subject", "s-other-subject"} {
		for _, part := range strings.Split(secret, ".") {
			if len(part) > 8 && strings.Contains(log, part) {
				t.Errorf("the log holds %q…", part[:8])
			}
		}
	}
	if !strings.Contains(log, "consent rejected") {
		t.Fatalf("test set-up: nothing logged:\n%s", log)
	}
}
