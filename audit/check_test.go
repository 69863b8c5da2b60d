package audit_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

const (
	channel  = audittest.PurposeChannel
	security = audittest.PurposeSecurity
)

// mustCheck opens and checks a bundle, failing the test on an error.
func mustCheck(t *testing.T, dir string) *audit.Report {
	t.Helper()
	b, err := audit.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Check(b, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Integrity != nil {
		t.Fatalf("the log does not verify: %v", r.Integrity)
	}
	return r
}

// wantOnly fails the test unless exactly the given rule fails, and returns
// its violations.
func wantOnly(t *testing.T, r *audit.Report, rule int) []audit.Violation {
	t.Helper()
	var got []audit.Violation
	for _, rr := range r.Rules {
		switch {
		case rr.Rule == rule && rr.Passed():
			t.Errorf("rule %d passes, want it broken", rule)
		case rr.Rule == rule:
			got = rr.Violations
		case !rr.Passed():
			t.Errorf("rule %d fails too: %s", rr.Rule, describe(rr.Violations))
		}
	}
	if r.Passed() {
		t.Error("the report passes")
	}
	return got
}

func wantPass(t *testing.T, r *audit.Report) {
	t.Helper()
	for _, rr := range r.Rules {
		if !rr.Passed() {
			t.Errorf("rule %d fails: %s", rr.Rule, describe(rr.Violations))
		}
	}
	if !r.Passed() {
		t.Error("the report does not pass")
	}
}

func describe(vs []audit.Violation) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n\tseq %v: %s", v.Seqs, v.Msg)
	}
	return b.String()
}

// wantViolation fails unless one violation says want and names seq.
func wantViolation(t *testing.T, vs []audit.Violation, seq uint64, want string) {
	t.Helper()
	for _, v := range vs {
		if strings.Contains(v.Msg, want) {
			for _, s := range v.Seqs {
				if s == seq {
					return
				}
			}
			t.Errorf("violation %q names seqs %v, not %d", v.Msg, v.Seqs, seq)
			return
		}
	}
	t.Errorf("no violation says %q:%s", want, describe(vs))
}

// lawfulWeek is a week and more of a box that keeps every rule: visits with
// one or two purposes, a refusal, a visit without a face, reads, a tag and
// then a record expiring, a revoke, a restart, a minor with a guardian.
func lawfulWeek(b *audittest.Box) map[string]*audittest.Visitor {
	v := map[string]*audittest.Visitor{}
	b.Start()
	v["one"] = b.Visit()
	b.Advance(2 * time.Minute)
	v["two"] = b.Visit(audittest.Purposes(channel, security))
	b.Advance(time.Minute)
	b.Decline()
	v["noface"] = b.Accept()
	b.Open(v["noface"])
	b.Skip(v["noface"], "no-face")
	b.Advance(time.Hour)
	b.Read(v["one"], channel)
	b.Read(v["two"], security)
	b.Read(v["two"], channel)
	b.Advance(25 * time.Hour) // two's security tag expires
	v["again"] = b.Visit(audittest.Subject(v["one"].Subject))
	b.Advance(10 * time.Minute)
	b.Revoke(v["one"].Subject, "", "visitor withdrew")
	b.Advance(time.Hour)
	b.Stop()
	b.Advance(8 * time.Hour)
	b.Start()
	v["minor"] = b.Visit(audittest.Minor(true))
	b.Advance(31 * 24 * time.Hour) // two's and minor's records expire
	b.Stop()
	return v
}

func TestLawfulBoxPasses(t *testing.T) {
	b := audittest.NewBox(t)
	lawfulWeek(b)
	r := mustCheck(t, b.WriteBundle())
	wantPass(t, r)
	c := r.Counts
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"asked", c.Asked, 6},
		{"accepted", c.Accepted, 5},
		{"declined", c.Declined, 1},
		{"agreed", c.Agreed, map[string]int{channel: 5, security: 1}},
		{"saved", c.Saved, 4},
		{"skipped", c.Skipped, map[string]int{"no-face": 1}},
		{"erased", c.Erased, map[string]int{"retention ended": 2, "revoked: visitor withdrew": 2}},
		{"reads", c.Reads, map[string]int{channel: 2, security: 1}},
		{"revokes", c.Revokes, 1},
		{"live records at the end", c.LiveRecords, 0},
		{"runs", len(r.Runs), 2},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if !r.Runs[0].Signed || r.Runs[1].Settings.SweepInterval != audit.Duration(time.Minute) {
		t.Errorf("runs %+v", r.Runs)
	}
	if r.Site != audittest.Site || r.Camera != audittest.Camera || !r.From.Equal(audittest.Epoch) || r.Events == 0 {
		t.Errorf("report of %s/%s from %v, %d events", r.Site, r.Camera, r.From, r.Events)
	}
}

// TestRule1 breaks rule 1 in each of its ways.
func TestRule1(t *testing.T) {
	otherKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	for _, tc := range []struct {
		name   string
		break_ func(b *audittest.Box) uint64 // returns the seq the violation names
		want   string
	}{
		{"a window without a consent", func(b *audittest.Box) uint64 {
			v := &audittest.Visitor{Consent: b.NewConsent()}
			b.Open(v)
			b.Save(v)
			return b.DB.Size() - 3
		}, "opened without a consent.accepted"},
		{"a window after the token expired", func(b *audittest.Box) uint64 {
			v := b.Accept()
			b.Advance(11 * time.Minute)
			b.Open(v)
			b.Save(v)
			return v.Seq
		}, "after its token expired"},
		{"a token signed by a key the box does not trust", func(b *audittest.Box) uint64 {
			c := b.NewConsent()
			tok, err := consent.SignConsent(otherKey, audittest.IssuerKID, c)
			if err != nil {
				t.Fatal(err)
			}
			v := b.AcceptToken(c, tok)
			b.Open(v)
			b.Save(v)
			return v.Seq
		}, "bad-signature"},
		{"the evidence token has another jti", func(b *audittest.Box) uint64 {
			c := b.NewConsent()
			other := c
			other.JTI = "jti-other"
			v := b.AcceptToken(c, b.Sign(other))
			b.Open(v)
			b.Save(v)
			return v.Seq
		}, `the evidence token's jti is "jti-other"`},
		{"the evidence is another visit's token", func(b *audittest.Box) uint64 {
			c, other := b.NewConsent(), b.NewConsent()
			other.JTI = c.JTI
			v := b.AcceptToken(c, b.Sign(other))
			b.Open(v)
			b.Save(v)
			return v.Seq
		}, "the evidence token is of visit"},
		{"a notice the box never published", func(b *audittest.Box) uint64 {
			c := b.NewConsent()
			c.Notice = strings.Repeat("ab", 32)
			v := b.AcceptToken(c, b.Sign(c))
			b.Open(v)
			b.Save(v)
			return v.Seq
		}, "stale-notice"},
		{"a purpose not configured", func(b *audittest.Box) uint64 {
			v := b.Accept(audittest.Purposes("marketing"))
			b.Open(v)
			b.Skip(v, "no-face")
			return v.Seq
		}, "unknown-purpose"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := audittest.NewBox(t)
			b.Start()
			b.Visit()
			seq := tc.break_(b)
			b.Advance(time.Hour)
			b.Stop()
			wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleConsent), seq, tc.want)
		})
	}
	t.Run("the issuer key the box trusted is not in the bundle", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.Stop()
		dir := b.WriteBundle()
		rewrite(t, dir, audit.FileTrust, func(data []byte) []byte {
			var trust audit.Trust
			if err := json.Unmarshal(data, &trust); err != nil {
				t.Fatal(err)
			}
			trust.Issuers[audittest.IssuerKID] = trust.Operators[audittest.OperatorKID]
			out, _ := json.Marshal(trust)
			return out
		})
		wantViolation(t, wantOnly(t, mustCheck(t, dir), audit.RuleConsent), v.Seq, `the box trusted kid "kiosk-1" with key sha256:`)
	})
	t.Run("evidence missing from the bundle", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.Visit()
		b.Stop()
		dir := b.WriteBundle()
		rewrite(t, dir, audit.FileEvidence, func(data []byte) []byte {
			lines := strings.SplitAfter(string(data), "\n")
			return []byte(strings.Join(lines[1:], ""))
		})
		wantViolation(t, wantOnly(t, mustCheck(t, dir), audit.RuleConsent), v.Seq, "no evidence")
	})
}

func TestRule2(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(b *audittest.Box) uint64
		want   string
	}{
		{"a face saved after the window closed", func(b *audittest.Box) uint64 {
			v := b.Accept()
			b.Open(v)
			b.Skip(v, "no-face")
			b.Save(v)
			return b.DB.Size() - 2
		}, "no window of that visit open"},
		{"a face saved for a purpose not agreed", func(b *audittest.Box) uint64 {
			v := b.Accept()
			b.Open(v)
			v.Purposes = []string{channel, security}
			b.Save(v)
			return b.DB.Size() - 2
		}, `purpose "entry-security", which the consent does not name`},
		{"two faces on one consent", func(b *audittest.Box) uint64 {
			v := b.Accept()
			b.Open(v)
			b.SaveInWindow(v)
			b.Save(v)
			return b.DB.Size() - 2
		}, "a second face"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := audittest.NewBox(t)
			b.Start()
			b.Visit()
			seq := tc.break_(b)
			b.Advance(time.Hour)
			b.Stop()
			wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleCapture), seq, tc.want)
		})
	}
}

func TestRule3(t *testing.T) {
	b := audittest.NewBox(t)
	b.Start()
	b.Visit(audittest.Minor(true))
	v := b.Visit(audittest.Minor(false))
	b.Advance(time.Hour)
	b.Stop()
	vs := wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleMinor)
	wantViolation(t, vs, v.Seq, "without a guardian")
	if len(vs) != 1 {
		t.Errorf("%d violations, want 1 (the event and its token say the same):%s", len(vs), describe(vs))
	}
}

func TestRule4(t *testing.T) {
	t.Run("a retention of 2s with a sweep every hour", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Settings.Purposes[channel] = audit.Duration(2 * time.Second)
		b.Settings.SweepInterval = audit.Duration(time.Hour)
		b.Start()
		v := b.Visit()
		b.Advance(2 * time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRetention), v.Seq+2, "still tagged for channel-attribution")
	})
	t.Run("an idle box that does not sweep, pulled while it runs", func(t *testing.T) {
		// Nothing happens after the capture, so no event of the log shows
		// the deadline passed: the bundle's making does.
		b := audittest.NewBox(t)
		b.Settings.Purposes[security] = audit.Duration(2 * time.Second)
		b.Start()
		v := b.Visit(audittest.Purposes(security))
		// The tag expires 2 s after the capture, the sweep may take the
		// retention again (2 s), then the tolerance; the bundle's clock is
		// given the tolerance once more.
		b.AdvanceWith(2*time.Second+2*time.Second+2*audit.DefaultTolerance-time.Second, false, true)
		wantPass(t, mustCheck(t, b.WriteBundle()))
		b.AdvanceWith(2*time.Second, false, true)
		vs := wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRetention)
		wantViolation(t, vs, v.Seq+2, "when the bundle was made")
		b.Stop() // and a box stopped before its deadline is not to blame
	})
	t.Run("a box stopped before the deadline, pulled later", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Settings.Purposes[security] = audit.Duration(2 * time.Second)
		b.Start()
		b.Visit(audittest.Purposes(security))
		b.Stop()
		b.AdvanceWith(time.Hour, false, false)
		wantPass(t, mustCheck(t, b.WriteBundle()))
	})
	t.Run("a sweep that does not run", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit(audittest.Purposes(security))
		b.AdvanceWith(26*time.Hour, false, true)
		b.Decline()
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRetention), v.Seq+2, "its retention ended at")
	})
	t.Run("a retention longer than the notice announces", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Notice.Purposes = []consent.Purpose{
			consent.NewPurpose(channel, consent.Same("Tell which sales channel brought you"), 720*time.Hour),
			consent.NewPurpose(security, consent.Same("Keep the entrance safe"), 24*time.Hour),
		}
		b.Settings.Purposes[channel] = audit.Duration(1440 * time.Hour)
		b.Start()
		b.Visit()
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRetention), 1, "announces that channel-attribution records are kept 720h0m0s; the box keeps them 1440h0m0s")
	})
	t.Run("a record due while the box is off goes at the next start", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		b.Visit(audittest.Purposes(security))
		b.Advance(time.Hour)
		b.Stop()
		b.AdvanceWith(48*time.Hour, false, false)
		b.Start() // sweeps
		b.Advance(time.Hour)
		b.Stop()
		wantPass(t, mustCheck(t, b.WriteBundle()))
	})
}

func TestRule5(t *testing.T) {
	otherKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	t.Run("a revoke that leaves a record of its subject", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		first := b.Visit()
		second := b.Visit(audittest.Subject(first.Subject))
		b.Advance(time.Minute)
		r, tok := b.RevokeCommand(first.Subject, "", "visitor withdrew")
		seq := b.RevokeWith(r, tok, func(tx *store.Tx) ([]*store.Record, error) {
			return tx.Erase(store.Selector{Visit: first.Visit})
		})
		b.Advance(time.Hour)
		b.Stop()
		vs := wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRevoke)
		wantViolation(t, vs, seq, "left record "+second.Record+" (saved at seq")
		if len(vs) != 1 {
			t.Errorf("%d violations, want 1:%s", len(vs), describe(vs))
		}
	})
	t.Run("a revoke command signed by a key the box does not trust", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		r, _ := b.RevokeCommand(v.Subject, "", "visitor withdrew")
		tok, err := consent.SignRevoke(otherKey, audittest.OperatorKID, r)
		if err != nil {
			t.Fatal(err)
		}
		seq := b.RevokeWith(r, tok, func(tx *store.Tx) ([]*store.Record, error) {
			return tx.Erase(store.Selector{Subject: v.Subject})
		})
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRevoke), seq, "bad-signature")
	})
	t.Run("a visitor's withdrawal at the kiosk needs no command", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.Advance(time.Minute)
		b.Withdraw(v.Subject)
		b.Advance(time.Hour)
		b.Stop()
		r := mustCheck(t, b.WriteBundle())
		wantPass(t, r)
		if r.Counts.Erased["revoked: withdrawn by the visitor at the kiosk"] != 1 {
			t.Errorf("erasures %v", r.Counts.Erased)
		}
	})
	t.Run("records erased apart from the revoke", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		r, tok := b.RevokeCommand(v.Subject, "", "visitor withdrew")
		var erased []*store.Record
		b.Update(func(tx *store.Tx) error {
			var err error
			if erased, err = tx.Erase(store.Selector{Subject: v.Subject}); err != nil {
				return err
			}
			return tx.Append(&store.Event{Type: store.EventRecordErased, Record: v.Record, Visit: v.Visit, Subject: v.Subject, Purposes: v.Purposes})
		})
		b.Decline()
		b.RevokeWith(r, tok, func(*store.Tx) ([]*store.Record, error) { return nil, nil })
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleRevoke), v.Seq+4, "without the consent.revoked")
		if len(erased) != 1 {
			t.Fatalf("erased %d records", len(erased))
		}
	})
}

func TestRule6(t *testing.T) {
	read := func(b *audittest.Box, v *audittest.Visitor, purpose string) uint64 {
		b.Append(&store.Event{Type: store.EventRecordAccessed, Record: v.Record, Visit: v.Visit, Subject: v.Subject,
			Purposes: []string{purpose}, Actor: "operator"})
		return b.DB.Size() - 1
	}
	t.Run("a purpose the record is not tagged with", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.Read(v, channel)
		seq := read(b, v, security)
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleAccess), seq, `not tagged for "entry-security"`)
	})
	t.Run("a tag that has expired", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit(audittest.Purposes(channel, security))
		b.Advance(25 * time.Hour)
		seq := read(b, v, security)
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleAccess), seq, `not tagged for "entry-security"`)
	})
	t.Run("a record that is gone", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.Revoke(v.Subject, "", "visitor withdrew")
		seq := read(b, v, channel)
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleAccess), seq, "no such record")
	})
}

func TestRule7(t *testing.T) {
	t.Run("the clock goes back", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		b.Visit()
		b.Clock.Set(b.Now().Add(-2 * time.Minute))
		b.Decline()
		seq := b.DB.Size() - 1
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleClock), seq, "time goes back 2m0s")
	})
	t.Run("no checkpoint for ten minutes", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		v := b.Visit()
		b.AdvanceWith(10*time.Minute, true, false)
		b.Decline()
		b.Advance(time.Hour)
		b.Stop()
		wantViolation(t, wantOnly(t, mustCheck(t, b.WriteBundle()), audit.RuleClock), v.Seq, "not signed into a checkpoint within 2m5s")
	})
	t.Run("a crash before the checkpoint", func(t *testing.T) {
		b := audittest.NewBox(t)
		b.Start()
		b.Visit()
		b.AdvanceWith(10*time.Minute, true, false) // the box is off: no checkpoint, no agent.stopped
		b.Start()
		b.Advance(time.Hour)
		b.Stop()
		wantPass(t, mustCheck(t, b.WriteBundle()))
	})
}

// TestEvidenceExpiry: evidence deleted at the end of its retention is not
// missing; deleted before, it breaks rule 1.
func TestEvidenceExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stated  time.Duration // in agent.started
		actual  time.Duration // what the box keeps it for
		wantErr bool
	}{
		{"on time", 48 * time.Hour, 48 * time.Hour, false},
		{"too soon", 72 * time.Hour, 48 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := audittest.NewBox(t)
			b.Settings.EvidenceRetention = audit.Duration(tc.stated)
			b.EvidenceKeptFor = tc.actual
			b.Settings.Purposes[channel] = audit.Duration(time.Hour)
			b.Start()
			v := b.Visit()
			b.Advance(50 * time.Hour)
			b.Stop()
			r := mustCheck(t, b.WriteBundle())
			if r.Counts.EvidenceExpired != 1 {
				t.Errorf("%d evidence expired, want 1", r.Counts.EvidenceExpired)
			}
			if !tc.wantErr {
				wantPass(t, r)
				return
			}
			wantViolation(t, wantOnly(t, r, audit.RuleConsent), v.Seq, "before the end of its retention")
		})
	}
}
