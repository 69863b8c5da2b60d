package audit

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/witness"
)

// The rules of docs/AUDIT.md, by number.
const (
	RuleConsent   = 1 // every window follows a consent with valid evidence
	RuleCapture   = 2 // every capture inside its window, within its consent
	RuleMinor     = 3 // no minor without a guardian
	RuleRetention = 4 // every record gone by the end of its retention
	RuleRevoke    = 5 // every revoke erases all it names, on a valid order
	RuleAccess    = 6 // every read for a purpose still tagged
	RuleClock     = 7 // honest clock, timely checkpoints
)

// ruleTitles are the rules in a line each, as the reports print them.
var ruleTitles = map[int]string{
	RuleConsent:   "Every capture window follows a consent of its visit, backed by a valid signed token",
	RuleCapture:   "Every saved face lies inside its visit's window, within the purposes agreed, one per consent",
	RuleMinor:     "No consent of a minor without a guardian",
	RuleRetention: "Every record is gone by the end of its retention",
	RuleRevoke:    "Every revoke, ordered by a valid signed command, erases at once every record it names",
	RuleAccess:    "Every image read names a purpose the record is still tagged with",
	RuleClock:     "The clock never goes back; every event is signed into a checkpoint in time",
}

// Report is what Check found.
type Report struct {
	Site, Camera string
	// DeviceKey is the fingerprint (KeyFingerprint) of the device key that
	// signs the log.
	DeviceKey string
	Source    string
	Made      time.Time
	Tolerance time.Duration

	// From and To are the times of the first and the last event.
	From, To    time.Time
	Events      uint64
	Checkpoints int
	// Witnessed is what the bundle's checkpoint carries from the trusted
	// witnesses (Options.Witnesses), nil when none were given.
	Witnessed *witness.Cosigned
	// Uncovered counts the last events that no checkpoint signs yet.
	Uncovered uint64
	// Runs are the agent's runs, one per agent.started.
	Runs []Run

	// Integrity is why the log does not verify (what `consentcam audit
	// verify` checks), nil when it does. The rules are checked only on a
	// log that verifies.
	Integrity error
	Rules     []*RuleResult
	Counts    Counts

	// PeriodFrom and PeriodTo bound the period counted (zero: unbounded;
	// Options.From and To).
	PeriodFrom, PeriodTo time.Time
	// NoticeAtEnd is the hash of the notice in force at the end of the
	// period.
	NoticeAtEnd string
	// Filing are the filing.threshold events up to the end of the period.
	Filing []Filing
}

// Filing is a filing threshold crossed: the distinct subjects whose face
// data the box stores reached it (the 2025 face-recognition measures, art.
// 15).
type Filing struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Threshold int       `json:"threshold"`
	Subjects  int       `json:"subjects"`
}

// Run is one run of the agent: its agent.started event and the settings the
// rules used for it.
type Run struct {
	Seq      uint64
	Time     time.Time
	Version  string
	Detector string
	Settings *Settings
	// Signed is true when the settings come from agent.started, false when
	// they come from the manifest (the agent stated none).
	Signed bool
}

// RuleResult is the verdict on one rule.
type RuleResult struct {
	Rule       int
	Title      string
	Violations []Violation
}

// Passed reports whether nothing breaks the rule.
func (r *RuleResult) Passed() bool { return len(r.Violations) == 0 }

// Violation is one breach of a rule: the events that show it and what is
// wrong.
type Violation struct {
	Seqs []uint64
	Time time.Time
	Msg  string
}

// Counts are the figures of the period, for people.
type Counts struct {
	// Asked is the number of answers visitors gave: Accepted + Declined.
	Asked    int
	Accepted int
	Declined int
	// NoGuardian counts, among those declined, visitors under 14 whom no
	// guardian could agree for (reason guardian-required).
	NoGuardian int
	// Minors counts, among those accepted, the consents a guardian gave
	// for a visitor under 14.
	Minors int
	// Agreed counts the accepted consents by purpose.
	Agreed map[string]int
	// Rejected counts the tokens refused, by reason.
	Rejected map[string]int
	Saved    int
	// Skipped counts the consents that ended without a capture, by reason.
	Skipped map[string]int
	// Erased counts the records deleted, by cause: "retention ended", or
	// "revoked: " and the revoke's reason.
	Erased map[string]int
	// Reads counts the image reads, by purpose; ReadsRefused those refused
	// (access.refused).
	Reads        map[string]int
	ReadsRefused int
	Revokes      int
	// RevokesRejected counts revoke commands refused.
	RevokesRejected int
	// EvidenceExpired counts the evidence deleted at the end of its
	// retention.
	EvidenceExpired int
	// LiveRecords is the number of records still kept at the end of the
	// log (of the period), and SubjectsStored the distinct subjects they
	// are of: the people whose face data the box holds.
	LiveRecords    int
	SubjectsStored int
}

func newCounts() Counts {
	return Counts{Agreed: map[string]int{}, Rejected: map[string]int{}, Skipped: map[string]int{},
		Erased: map[string]int{}, Reads: map[string]int{}}
}

// Passed reports whether the log verifies and every rule passes.
func (r *Report) Passed() bool {
	if r.Integrity != nil || len(r.Rules) == 0 {
		return false
	}
	for _, rr := range r.Rules {
		if !rr.Passed() {
			return false
		}
	}
	return true
}

// Failed lists the numbers of the rules broken.
func (r *Report) Failed() []int {
	var n []int
	for _, rr := range r.Rules {
		if !rr.Passed() {
			n = append(n, rr.Rule)
		}
	}
	return n
}

// textViolations is how many violations of a rule WriteText prints.
const textViolations = 20

// WriteText writes the report as plain text, at most 20 violations per
// rule (the HTML report has them all).
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "box %s/%s, device key sha256:%s\n", r.Site, r.Camera, r.DeviceKey)
	if r.Events > 0 {
		fmt.Fprintf(&b, "period %s to %s: %d events, %d agent runs\n", stamp(r.From), stamp(r.To), r.Events, len(r.Runs))
	}
	if r.Integrity != nil {
		fmt.Fprintf(&b, "log     FAIL  %v\n", r.Integrity)
		fmt.Fprintln(&b, "the rules are not checked on a log that does not verify")
		fmt.Fprintln(&b, "FAIL")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "log     PASS  seq 0 to %d without gaps, %d signed checkpoints", r.Events-1, r.Checkpoints)
	if r.Uncovered > 0 {
		fmt.Fprintf(&b, ", %d after the last", r.Uncovered)
	}
	b.WriteString("\n")
	if r.Witnessed != nil {
		fmt.Fprintf(&b, "witness PASS  the checkpoint %s\n", r.Witnessed.Summary())
	}
	for _, rr := range r.Rules {
		verdict := "PASS"
		if !rr.Passed() {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "rule %d  %s  %s\n", rr.Rule, verdict, rr.Title)
		for i, v := range rr.Violations {
			if i == textViolations {
				fmt.Fprintf(&b, "        … and %d more (--report writes them all)\n", len(rr.Violations)-i)
				break
			}
			fmt.Fprintf(&b, "        %s: %s\n", seqList(v.Seqs), v.Msg)
		}
	}
	c := r.Counts
	fmt.Fprintf(&b, "visitors asked %d: agreed %d (%s), declined %d\n", c.Asked, c.Accepted, countList(c.Agreed), c.Declined)
	fmt.Fprintf(&b, "captures saved %d, skipped %d (%s)\n", c.Saved, sum(c.Skipped), countList(c.Skipped))
	fmt.Fprintf(&b, "records erased %d (%s), %d kept at the end, of %d people\n", sum(c.Erased), countList(c.Erased), c.LiveRecords, c.SubjectsStored)
	fmt.Fprintf(&b, "image reads %d (%s)\n", sum(c.Reads), countList(c.Reads))
	if r.Passed() {
		fmt.Fprintln(&b, "PASS")
	} else {
		fmt.Fprintf(&b, "FAIL: rules %s broken\n", joinInts(r.Failed()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// countList writes counts by name, "none" when there are none.
func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func joinInts(n []int) string {
	parts := make([]string, len(n))
	for i, v := range n {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ", ")
}

// seqList writes seqs, runs of consecutive ones as ranges: "seq 4, 7-9".
func seqList(seqs []uint64) string {
	if len(seqs) == 0 {
		return "log"
	}
	s := slices.Clone(seqs)
	slices.Sort(s)
	s = slices.Compact(s)
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatUint(s[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", s[i], s[j]))
		}
		i = j + 1
	}
	return "seq " + strings.Join(parts, ", ")
}
