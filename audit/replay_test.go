package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/store"
)

// replayBox feeds a box's log to a Replay, event by event, with its
// notices, and returns the findings.
func replayBox(t *testing.T, b *audittest.Box) []audit.Finding {
	t.Helper()
	p := audit.NewReplay(audit.ReplayOptions{Site: audittest.Site, Camera: audittest.Camera})
	notices, err := b.DB.Notices()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range notices {
		if _, err := p.Notice(n); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := b.DB.Events(0, 1<<31)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Finding
	for _, line := range raw {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var ev store.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		f, err := p.Add(&ev)
		if err != nil {
			t.Fatalf("seq %d: %v", ev.Seq, err)
		}
		out = append(out, f...)
	}
	return out
}

// flatten lists a report's violations as findings.
func flatten(r *audit.Report) []string {
	var out []string
	for _, rr := range r.Rules {
		for _, v := range rr.Violations {
			out = append(out, audit.Finding{Rule: rr.Rule, Title: rr.Title, Violation: v}.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestReplayFindsWhatCheckFinds: fed one event at a time, a Replay reports
// the violations audit check reports on the bundle (those that need no
// evidence), each once, as the event that reveals it arrives.
func TestReplayFindsWhatCheckFinds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		play  func(b *audittest.Box)
		rules []int
	}{
		{"a lawful week", func(b *audittest.Box) { lawfulWeek(b) }, nil},
		{"a retention of 2s with a sweep every hour", func(b *audittest.Box) {
			b.Settings.Purposes[channel] = audit.Duration(2 * time.Second)
			b.Settings.SweepInterval = audit.Duration(time.Hour)
			b.Start()
			b.Visit()
			b.Advance(2 * time.Hour)
			b.Stop()
		}, []int{audit.RuleRetention}},
		{"a minor without a guardian", func(b *audittest.Box) {
			b.Start()
			b.Visit(audittest.Minor(false))
			b.Advance(time.Hour)
			b.Stop()
		}, []int{audit.RuleMinor}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := audittest.NewBox(t)
			tc.play(b)
			want := flatten(mustCheck(t, b.WriteBundle()))
			var got []string
			rules := map[int]bool{}
			for _, f := range replayBox(t, b) {
				got = append(got, f.String())
				rules[f.Rule] = true
			}
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("replay found\n\t%v\naudit check found\n\t%v", got, want)
			}
			for _, r := range tc.rules {
				if !rules[r] {
					t.Errorf("rule %d not broken", r)
				}
			}
		})
	}
}

// TestReplayWithoutEvidence: a Replay has no tokens, so a consent it
// cannot back with evidence is not a violation there (audit check, on the
// box's bundle, judges it).
func TestReplayWithoutEvidence(t *testing.T) {
	b := audittest.NewBox(t)
	b.Start()
	v := b.Accept()
	b.Open(v)
	b.Save(v)
	b.Revoke(v.Subject, "", "visitor withdrew")
	b.Stop()
	if f := replayBox(t, b); len(f) != 0 {
		t.Errorf("findings %v", f)
	}
}

// TestReplayNeedsAgentStarted: a log that does not start with
// agent.started cannot be judged.
func TestReplayNeedsAgentStarted(t *testing.T) {
	p := audit.NewReplay(audit.ReplayOptions{Site: audittest.Site, Camera: audittest.Camera})
	_, err := p.Add(&store.Event{Seq: 0, Time: audittest.Epoch, Type: store.EventConsentDeclined, Site: audittest.Site, Camera: audittest.Camera})
	if err == nil {
		t.Fatal("a log starting with consent.declined judged without settings")
	}
}
