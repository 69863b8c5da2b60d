package audit

import (
	"fmt"
	"time"

	"github.com/consentcam/consentcam/store"
)

// Replay judges a log as it grows, one event at a time, against the same
// rules as Check, for a monitor that mirrors a box's log as it arrives
// (the fleet). It holds no evidence (consent tokens and revoke commands
// never leave the box), so it checks everything the rules say but the
// tokens behind consent.accepted and consent.revoked: those are audit
// check's, on a bundle pulled from the box. Events must be given in seq
// order, from seq 0, each once, and only once verified (a signed
// checkpoint covers them). A Replay is not safe for concurrent use.
type Replay struct {
	c *checker
	r *Report
}

// ReplayOptions say which box's log a Replay judges.
type ReplayOptions struct {
	Site, Camera string
	// Tolerance is the slack on every deadline (DefaultTolerance when 0).
	Tolerance time.Duration
}

// Finding is a violation of one rule that an event revealed.
type Finding struct {
	Rule  int
	Title string
	Violation
}

func (f Finding) String() string {
	return fmt.Sprintf("rule %d: %s: %s", f.Rule, seqList(f.Seqs), f.Msg)
}

// NewReplay returns a Replay of an empty log.
func NewReplay(opt ReplayOptions) *Replay {
	if opt.Tolerance <= 0 {
		opt.Tolerance = DefaultTolerance
	}
	b := &Bundle{
		Manifest: Manifest{Format: Format, Site: opt.Site, Camera: opt.Camera, Tolerance: Duration(opt.Tolerance)},
		Evidence: map[uint64]*store.Evidence{},
		Notices:  map[string]*Notice{},
	}
	r := &Report{Site: opt.Site, Camera: opt.Camera, Tolerance: opt.Tolerance, Counts: newCounts()}
	return &Replay{c: newChecker(b, r), r: r}
}

// Notice makes a notice the box published known to the rules (as a
// bundle's notices/HASH.json): rule 4 holds the box to the retention the
// notice in force announces. It returns the notice's hash, or an error
// when data is not a notice whose hash is its own.
func (p *Replay) Notice(data []byte) (string, error) {
	n, err := parseNotice(data)
	if err != nil {
		return "", err
	}
	p.c.b.Notices[n.Hash] = n
	return n.Hash, nil
}

// Add takes the next event of the log and returns the violations it
// revealed, if any. An error means the log cannot be judged from there on
// (it does not start with agent.started, or a run's settings are
// malformed): the Replay should not be given more events.
func (p *Replay) Add(ev *store.Event) ([]Finding, error) {
	if err := p.c.event(ev); err != nil {
		return nil, err
	}
	p.r.Events++
	var out []Finding
	for _, rr := range p.r.Rules {
		for _, v := range rr.Violations {
			out = append(out, Finding{Rule: rr.Rule, Title: rr.Title, Violation: v})
		}
		rr.Violations = rr.Violations[:0]
	}
	return out, nil
}

// Counts are the counts of the log so far (visitors asked, faces saved…).
func (p *Replay) Counts() Counts { return p.r.Counts }

// Runs are the agent runs seen so far, with the settings each signed.
func (p *Replay) Runs() []Run { return p.r.Runs }
