package audit

import (
	"bufio"
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

// ActorVisitor is the actor of a consent.revoked that the visitor ordered
// at the kiosk with the withdrawal code of their receipt: it references no
// revoke command.
const ActorVisitor = "visitor"

// Options change how Check judges a bundle.
type Options struct {
	// Tolerance, when positive, replaces the manifest's.
	Tolerance time.Duration
	// Device, when set, is the device key the auditor holds (from the
	// installer, not from the box): the bundle's must be the same.
	Device ed25519.PublicKey
	// From and To, when set, bound the period whose events are counted
	// (From included, To not); the rules are checked on the whole log, and
	// what is kept is counted as it stands at To.
	From, To time.Time
	// Witnesses, when set, are the witnesses the auditor trusts: the
	// bundle's checkpoint must carry valid cosignatures by Quorum of them
	// (0: all), or the log is not trusted and no rule is checked.
	Witnesses []note.Verifier
	Quorum    int
}

// Check verifies the bundle's log as `consentcam audit verify` does
// (store.VerifyLog, against the bundle's checkpoint and device key), then
// replays it against the rules of docs/AUDIT.md. A log that does not verify
// gives a report whose Integrity says why, with no rule checked. A bundle
// that cannot be judged (its settings missing, evidence for events that are
// not in the log) is a *BundleError.
func Check(b *Bundle, opt Options) (*Report, error) {
	m := &b.Manifest
	r := &Report{
		Site: m.Site, Camera: m.Camera, Source: m.Source, Made: m.Made,
		DeviceKey: KeyFingerprint(b.Device), Tolerance: time.Duration(m.Tolerance),
		Counts: newCounts(),
	}
	if opt.Tolerance > 0 {
		r.Tolerance = opt.Tolerance
	}
	r.PeriodFrom, r.PeriodTo = opt.From, opt.To
	if opt.Device != nil && !opt.Device.Equal(b.Device) {
		return nil, bundleErr(FileDevice, "not the device key given (sha256:%s, the bundle has sha256:%s)",
			KeyFingerprint(opt.Device), r.DeviceKey)
	}
	f, err := b.fsys.Open(FileLog)
	if err != nil {
		return nil, &BundleError{File: FileLog, Err: unwrapPathError(err)}
	}
	defer f.Close()

	c := newChecker(b, r)
	c.withEvidence = true
	rep, err := verifyAndReplay(bufio.NewReaderSize(f, 1<<20), b, c)
	var lerr *store.LogError
	var berr *BundleError
	switch {
	case errors.As(err, &berr):
		return nil, err
	case errors.As(err, &lerr):
		return r.untrusted(fmt.Errorf("%s does not verify against %s and %s: %w", FileLog, FileDevice, FileCheckpoint, err)), nil
	case err != nil:
		return nil, &BundleError{File: FileLog, Err: err}
	}
	if rep.Events > 0 && (c.first.Site != m.Site || c.first.Camera != m.Camera) {
		return nil, bundleErr(FileManifest, "of %s/%s, but the log is of %s/%s", m.Site, m.Camera, c.first.Site, c.first.Camera)
	}
	r.Events, r.Uncovered = rep.Events, rep.Uncovered
	r.Checkpoints = len(rep.Checkpoints)
	if len(opt.Witnesses) > 0 {
		lv, err := store.NewCheckpointVerifier(store.Origin(m.Site, m.Camera), b.Device)
		if err != nil {
			return nil, bundleErr(FileDevice, "%v", err)
		}
		cos, err := witness.VerifyCosigned(b.Checkpoint, lv, opt.Witnesses, opt.Quorum)
		if err != nil {
			return r.untrusted(fmt.Errorf("%s is not cosigned as required: %w", FileCheckpoint, err)), nil
		}
		r.Witnessed = cos
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// untrusted makes r the report of a log that cannot be trusted, for why:
// what the replay found so far means nothing, and no rule is checked.
func (r *Report) untrusted(why error) *Report {
	r.Integrity = why
	r.Rules, r.Runs, r.Counts, r.Filing = nil, nil, newCounts(), nil
	return r
}

// replayBatch is how many events the verifier hands the checker at a time.
const replayBatch = 512

// verifyAndReplay verifies the log and replays its events against the rules
// at the same time, on two cores: the verifier checks the checkpoints'
// signatures while the checker checks the tokens'. The verification goes to
// the end even when the checker fails, since a log that does not verify
// explains whatever the checker found odd: its error comes first.
func verifyAndReplay(log io.Reader, b *Bundle, c *checker) (*store.LogReport, error) {
	batches := make(chan []*store.Event, 8)
	checked := make(chan error, 1)
	go func() {
		var err error
		for batch := range batches {
			for _, ev := range batch {
				if err == nil {
					err = c.event(ev)
				}
			}
		}
		checked <- err
	}()
	batch := make([]*store.Event, 0, replayBatch)
	rep, err := store.VerifyLogEach(log, b.Checkpoint, b.Device, func(ev *store.Event) error {
		batch = append(batch, ev)
		if len(batch) == replayBatch {
			batches <- batch
			batch = make([]*store.Event, 0, replayBatch)
		}
		return nil
	})
	if len(batch) > 0 && err == nil {
		batches <- batch
	}
	close(batches)
	if cerr := <-checked; err == nil && cerr != nil {
		return nil, cerr
	}
	return rep, err
}

// checker replays the log, one event at a time, against the rules.
type checker struct {
	b   *Bundle
	r   *Report
	tol time.Duration
	// withEvidence: the bundle holds the evidence, and the rules check it.
	// A Replay has none (tokens never go on the bus): it leaves those
	// checks to audit check.
	withEvidence bool

	first      *store.Event
	prev       *store.Event
	settings   *Settings // of the current run
	lastSigned *Settings // the last settings agent.started carried
	verifier   *consent.Verifier
	verifyAt   time.Time
	missingKey map[string]string // kid → fingerprint the run trusts, absent from trust.json
	notice     string            // hash of the notice in force

	// Rule 1 and 2: accepted consents waiting for their window, by visit,
	// and the open windows, by visit.
	pending map[string][]*consentState
	windows map[string]*consentState
	// Evidence the bundle lacks, by seq, until evidence.expired explains it.
	missing map[uint64]*missingEvidence

	// Rules 4-6: the records alive, and when each tag must be gone.
	records   map[string]*recordState
	bySubject map[string]map[string]bool
	byVisit   map[string]map[string]bool
	everSaved map[string]uint64
	deadlines deadlineHeap
	// Rule 4: the last time the agent went down and came back.
	downFrom, downUntil time.Time
	// Rule 5: the record.erased events just before the current event.
	erased []erasure

	// Rule 7.
	running   bool
	uncovered []stamped

	rules map[int]*RuleResult

	// cnt is where the event at hand is counted: the report's counts in
	// the period, elsewhere scratch; ended is set once an event at or after
	// the period's end has been seen, and the state then taken.
	cnt     *Counts
	scratch Counts
	ended   bool
}

type consentState struct {
	seq      uint64
	visit    string
	subject  string
	purposes []string
	expires  time.Time // of the token
	saved    int
	orphan   bool // a window opened without a consent: no consent to compare with
}

type missingEvidence struct {
	seq       uint64
	kind      string
	time      time.Time
	retention time.Duration
}

type recordState struct {
	id, visit, subject string
	saved              uint64 // seq of capture.saved
	tags               map[string]time.Time
}

type erasure struct {
	seq uint64
	rec *recordState
}

type stamped struct {
	seq  uint64
	time time.Time
}

func newChecker(b *Bundle, r *Report) *checker {
	c := &checker{
		b: b, r: r, tol: r.Tolerance,
		pending: map[string][]*consentState{}, windows: map[string]*consentState{},
		missing: map[uint64]*missingEvidence{}, records: map[string]*recordState{},
		bySubject: map[string]map[string]bool{}, byVisit: map[string]map[string]bool{},
		everSaved: map[string]uint64{}, rules: map[int]*RuleResult{},
		scratch: newCounts(),
	}
	for n := RuleConsent; n <= RuleClock; n++ {
		rr := &RuleResult{Rule: n, Title: ruleTitles[n]}
		c.rules[n] = rr
		r.Rules = append(r.Rules, rr)
	}
	return c
}

// violate records a breach of a rule.
func (c *checker) violate(rule int, t time.Time, seqs []uint64, format string, args ...any) {
	rr := c.rules[rule]
	rr.Violations = append(rr.Violations, Violation{Seqs: seqs, Time: t, Msg: fmt.Sprintf(format, args...)})
}

// logError is an error in the log that makes a bundle impossible to judge.
func logError(ev *store.Event, format string, args ...any) error {
	return &BundleError{File: FileLog, Line: int(ev.Seq) + 1, Err: fmt.Errorf(format, args...)}
}

// event takes the next verified event.
func (c *checker) event(ev *store.Event) error {
	if c.first == nil {
		c.first = ev
		c.r.From = ev.Time
	}
	c.r.To = ev.Time
	c.period(ev)
	if e := c.b.Evidence[ev.Seq]; e != nil && ev.Type != store.EventConsentAccepted && ev.Type != store.EventConsentRevoked {
		return &BundleError{File: FileEvidence, Err: fmt.Errorf("evidence %q is kept for seq %d (%s), an event that references none", e.JTI, ev.Seq, ev.Type)}
	}
	if ev.Type == store.EventAgentStarted {
		if err := c.started(ev); err != nil {
			return err
		}
	} else if c.settings == nil {
		if err := c.useManifestSettings(ev); err != nil {
			return err
		}
	}
	if len(c.erased) > 0 && ev.Type != store.EventRecordErased && ev.Type != store.EventConsentRevoked {
		c.violate(RuleRevoke, ev.Time, erasureSeqs(c.erased), "records erased without the consent.revoked that ordered them in the same transaction")
		c.erased = nil
	}
	c.clock(ev)
	c.checkDeadlines(ev.Time, ev)

	switch ev.Type {
	case store.EventAgentStopped:
		c.running = false
	case store.EventNoticePublished:
		c.published(ev)
	case store.EventConsentAccepted:
		c.accepted(ev)
	case store.EventConsentDeclined:
		c.cnt.Declined++
		c.cnt.Asked++
		if ev.Reason == string(consent.ReasonGuardianRequired) {
			c.cnt.NoGuardian++
		}
	case store.EventConsentRejected:
		c.cnt.Rejected[ev.Reason]++
	case store.EventWindowOpened:
		c.windowOpened(ev)
	case store.EventWindowClosed:
		delete(c.windows, ev.Visit)
	case store.EventCaptureSaved:
		c.saved(ev)
	case store.EventCaptureSkipped:
		c.cnt.Skipped[ev.Reason]++
		if c.windows[ev.Visit] == nil {
			c.takePending(ev.Visit)
		}
	case store.EventRecordAccessed:
		c.accessed(ev)
	case store.EventRecordExpired:
		c.expired(ev)
	case store.EventRecordErased:
		c.erase(ev)
	case store.EventConsentRevoked:
		c.revoked(ev)
	case store.EventRevokeRejected:
		c.cnt.RevokesRejected++
	case store.EventEvidenceExpired:
		c.evidenceExpired(ev)
	case store.EventAccessRefused:
		c.cnt.ReadsRefused++
	case store.EventFilingThreshold:
		if !c.ended {
			n, _ := ev.Detail["threshold"].(json.Number)
			t, _ := n.Int64()
			m, _ := ev.Detail["subjects"].(json.Number)
			subjects, _ := m.Int64()
			c.r.Filing = append(c.r.Filing, Filing{Seq: ev.Seq, Time: ev.Time, Threshold: int(t), Subjects: int(subjects)})
		}
	}
	c.prev = ev
	return nil
}

// period counts ev in the report when it falls in the period, and takes
// the state kept at the period's end before the first event after it.
func (c *checker) period(ev *store.Event) {
	to := c.r.PeriodTo
	if !to.IsZero() && !ev.Time.Before(to) {
		c.endPeriod()
	}
	if c.ended || ev.Time.Before(c.r.PeriodFrom) {
		c.cnt = &c.scratch
	} else {
		c.cnt = &c.r.Counts
	}
}

// endPeriod takes what is kept at the end of the period, once.
func (c *checker) endPeriod() {
	if c.ended {
		return
	}
	c.ended = true
	c.r.Counts.LiveRecords = len(c.records)
	c.r.Counts.SubjectsStored = len(c.bySubject)
	c.r.NoticeAtEnd = c.notice
}

// started begins a run: its settings, its trusted keys, an empty queue.
func (c *checker) started(ev *store.Event) error {
	s, err := StartedSettings(ev)
	if err != nil {
		return logError(ev, "agent.started: settings: %v", err)
	}
	run := Run{Seq: ev.Seq, Time: ev.Time, Version: detailString(ev, "version"), Detector: detailString(ev, "detector"),
		Settings: s, Signed: s != nil}
	if s == nil {
		if c.b.Manifest.Settings == nil {
			return bundleErr(FileManifest, "states no settings, and agent.started at seq %d carries none: the rules need them", ev.Seq)
		}
		run.Settings = c.b.Manifest.Settings
	} else {
		c.lastSigned = s
	}
	c.r.Runs = append(c.r.Runs, run)
	c.setSettings(run.Settings)

	// The agent starts with no queue and no window: those of a run that
	// ended without closing them are gone.
	clear(c.pending)
	clear(c.windows)
	if c.prev != nil {
		c.downFrom, c.downUntil = c.prev.Time, ev.Time
	}
	// Events of a run that ended without its checkpoint (a crash) are
	// signed by the first checkpoint of this one.
	c.uncovered = c.uncovered[:0]
	c.running = true
	return nil
}

func (c *checker) useManifestSettings(ev *store.Event) error {
	if c.b.Manifest.Settings == nil {
		return bundleErr(FileManifest, "states no settings, and the log starts at seq %d without agent.started: the rules need them", ev.Seq)
	}
	c.setSettings(c.b.Manifest.Settings)
	return nil
}

// published takes the notice in force, and checks that the box keeps no
// record longer than it announces (rule 4).
func (c *checker) published(ev *store.Event) {
	c.notice = detailString(ev, "hash")
	n := c.b.Notices[c.notice]
	if n == nil {
		return // rule 1 says so for each consent that names it
	}
	for _, p := range slices.Sorted(maps.Keys(c.settings.Purposes)) {
		kept := time.Duration(c.settings.Purposes[p])
		if announced, ok := n.Purposes[p]; ok && kept > announced {
			c.violate(RuleRetention, ev.Time, []uint64{ev.Seq}, "the notice in force announces that %s records are kept %v; the box keeps them %v",
				p, announced, kept)
		}
	}
}

// setSettings makes s the settings of the current run and builds the
// verifier of its tokens: the keys of trust.json that the run trusts.
func (c *checker) setSettings(s *Settings) {
	c.settings = s
	c.missingKey = map[string]string{}
	pick := func(fps map[string]string, keys map[string]ed25519.PublicKey) map[string]ed25519.PublicKey {
		if len(fps) == 0 {
			return keys
		}
		out := map[string]ed25519.PublicKey{}
		for kid, fp := range fps {
			if k, ok := keys[kid]; ok && KeyFingerprint(k) == fp {
				out[kid] = k
			} else {
				c.missingKey[kid] = fp
			}
		}
		return out
	}
	purposes := make([]string, 0, len(s.Purposes))
	for p := range s.Purposes {
		purposes = append(purposes, p)
	}
	c.verifier = &consent.Verifier{
		Site: c.b.Manifest.Site, Camera: c.b.Manifest.Camera,
		Issuers:   pick(s.Issuers, c.b.Issuers),
		Operators: pick(s.Operators, c.b.Operators),
		Purposes:  purposes,
		ClockSkew: time.Duration(s.ClockSkew),
		Now:       func() time.Time { return c.verifyAt },
	}
}

// refusal explains why the verifier refused a token.
func (c *checker) refusal(err error) string {
	var cerr *consent.Error
	if errors.As(err, &cerr) && cerr.Reason == consent.ReasonUnknownKey {
		for kid, fp := range c.missingKey {
			if strings.Contains(cerr.Error(), fmt.Sprintf("%q", kid)) {
				return fmt.Sprintf("%v (the box trusted kid %q with key sha256:%s, which trust.json lacks)", err, kid, fp)
			}
		}
	}
	return err.Error()
}

// verify runs a token check at the time of ev, with the tolerance on the
// time checks: a token valid within the tolerance of the event is valid.
func (c *checker) verify(ev *store.Event, check func() error) error {
	c.verifyAt = ev.Time
	err := check()
	switch consent.ReasonOf(err) {
	case consent.ReasonExpired:
		c.verifyAt = ev.Time.Add(-c.tol)
		err = check()
	case consent.ReasonNotYetValid:
		c.verifyAt = ev.Time.Add(c.tol)
		err = check()
	}
	return err
}

// clock checks that time does not go back and that every event of a run is
// signed into a checkpoint in time (rule 7).
func (c *checker) clock(ev *store.Event) {
	if c.prev != nil && ev.Time.Before(c.prev.Time.Add(-time.Duration(c.settings.ClockSkew))) {
		c.violate(RuleClock, ev.Time, []uint64{c.prev.Seq, ev.Seq}, "time goes back %v, from %s to %s: more than the clock skew of %v",
			c.prev.Time.Sub(ev.Time), stamp(c.prev.Time), stamp(ev.Time), c.settings.ClockSkew)
	}
	limit := 2*time.Duration(c.settings.CheckpointInterval) + c.tol
	// The oldest event waiting is the first late (times go back only
	// within the skew), so most events cost one comparison.
	if c.running && len(c.uncovered) > 0 && ev.Time.Sub(c.uncovered[0].time) > limit-time.Duration(c.settings.ClockSkew) {
		var late []uint64
		kept := c.uncovered[:0]
		for _, u := range c.uncovered {
			if ev.Time.Sub(u.time) > limit {
				late = append(late, u.seq)
			} else {
				kept = append(kept, u)
			}
		}
		c.uncovered = kept
		if len(late) > 0 {
			c.violate(RuleClock, ev.Time, late, "not signed into a checkpoint within %v (twice the checkpoint interval, and the tolerance): still unsigned at seq %d, %s",
				limit, ev.Seq, stamp(ev.Time))
		}
	}
	switch {
	case ev.Type == store.EventCheckpoint:
		c.uncovered = c.uncovered[:0]
	case c.running:
		c.uncovered = append(c.uncovered, stamped{ev.Seq, ev.Time})
	}
}

// accepted checks a consent.accepted event and its evidence (rules 1 and 3).
func (c *checker) accepted(ev *store.Event) {
	cnt := c.cnt
	cnt.Accepted++
	cnt.Asked++
	for _, p := range ev.Purposes {
		cnt.Agreed[p]++
	}
	cs := &consentState{seq: ev.Seq, visit: ev.Visit, subject: ev.Subject, purposes: ev.Purposes}
	cs.expires, _ = time.Parse(time.RFC3339, detailString(ev, "expires"))
	c.pending[ev.Visit] = append(c.pending[ev.Visit], cs)

	minor, _ := ev.Detail["minor"].(bool)
	guardian, _ := ev.Detail["guardian"].(bool)
	if minor && guardian {
		cnt.Minors++
	}
	minorFlagged := false
	if minor && !guardian {
		c.violate(RuleMinor, ev.Time, []uint64{ev.Seq}, "consent of a minor (visit %s) accepted without a guardian", ev.Visit)
		minorFlagged = true
	}
	if !c.withEvidence {
		return
	}

	e := c.b.Evidence[ev.Seq]
	if e == nil {
		c.missing[ev.Seq] = &missingEvidence{seq: ev.Seq, kind: store.EvidenceConsent, time: ev.Time,
			retention: time.Duration(c.settings.EvidenceRetention)}
		return
	}
	bad := func(format string, args ...any) {
		c.violate(RuleConsent, ev.Time, []uint64{ev.Seq}, "consent of visit %s: "+format, append([]any{ev.Visit}, args...)...)
	}
	if !c.matchesEvidence(ev, e, store.EvidenceConsent, "jti", bad) {
		return
	}
	c.verifier.NoticeHash = c.notice
	cl, verr := c.verifyConsent(ev, e)
	switch consent.ReasonOf(verr) {
	case "":
		if verr != nil {
			bad("the evidence token cannot be checked: %v", verr)
			return
		}
	case consent.ReasonGuardianRequired:
		if !minorFlagged {
			c.violate(RuleMinor, ev.Time, []uint64{ev.Seq}, "the consent token of visit %s is a minor's without a guardian", ev.Visit)
		}
		// The verifier stops at guardian-required: the checks after it.
		for _, p := range cl.Purposes {
			if _, ok := c.settings.Purposes[p]; !ok {
				bad("the evidence token names purpose %q, which is not configured", p)
			}
		}
		if cl.Notice != c.notice {
			bad("the evidence token names notice %s, not the notice in force %s", cl.Notice, c.notice)
		}
	default:
		bad("the evidence token is refused: %s", c.refusal(verr))
		return
	}
	switch {
	case cl.JTI != e.JTI:
		bad("the evidence token's jti is %q, not %q", cl.JTI, e.JTI)
	case cl.Visit != ev.Visit || cl.Subject != ev.Subject:
		bad("the evidence token is of visit %s, subject %s; the event says visit %s, subject %s", cl.Visit, cl.Subject, ev.Visit, ev.Subject)
	case !slices.Equal(cl.Purposes, ev.Purposes):
		bad("the evidence token agrees to %v, the event says %v", cl.Purposes, ev.Purposes)
	case cl.KeyID != ev.Actor:
		bad("the evidence token is signed by kid %q, the event names %q", cl.KeyID, ev.Actor)
	case cl.Minor != minor || cl.Guardian != guardian:
		bad("the evidence token says minor %v, guardian %v; the event says %v, %v", cl.Minor, cl.Guardian, minor, guardian)
	case c.b.Notices[cl.Notice] == nil:
		bad("the notice it names, %s, is not in the bundle", cl.Notice)
	}
	cs.expires = cl.Expires
}

func (c *checker) verifyConsent(ev *store.Event, e *store.Evidence) (*consent.Consent, error) {
	var cl *consent.Consent
	err := c.verify(ev, func() error {
		var err error
		cl, err = c.verifier.VerifyConsent([]byte(e.Token))
		return err
	})
	return cl, err
}

// matchesEvidence checks that e is the evidence ev references: its kind,
// its jti (detail[jtiField]) and its SHA-256 (detail.token_sha256).
func (c *checker) matchesEvidence(ev *store.Event, e *store.Evidence, kind, jtiField string, bad func(string, ...any)) bool {
	sum := sha256.Sum256([]byte(e.Token))
	switch jti := detailString(ev, jtiField); {
	case e.Kind != kind:
		bad("the evidence kept for it is a %s, not a %s", e.Kind, kind)
	case jti == "" || jti != e.JTI:
		bad("the event names token id %q, the evidence %q", jti, e.JTI)
	case detailString(ev, "token_sha256") != hex.EncodeToString(sum[:]):
		bad("the evidence token's SHA-256 is not the detail.token_sha256 of the event")
	default:
		return true
	}
	return false
}

// takePending resolves the oldest accepted consent of a visit still waiting.
func (c *checker) takePending(visit string) *consentState {
	q := c.pending[visit]
	if len(q) == 0 {
		return nil
	}
	cs := q[0]
	if len(q) == 1 {
		delete(c.pending, visit)
	} else {
		c.pending[visit] = q[1:]
	}
	return cs
}

// windowOpened checks rule 1 for a window.opened event.
func (c *checker) windowOpened(ev *store.Event) {
	cs := c.takePending(ev.Visit)
	if cs == nil {
		c.violate(RuleConsent, ev.Time, []uint64{ev.Seq}, "window of visit %s opened without a consent.accepted of that visit waiting for it", ev.Visit)
		c.windows[ev.Visit] = &consentState{seq: ev.Seq, visit: ev.Visit, subject: ev.Subject, purposes: ev.Purposes, orphan: true}
		return
	}
	seqs := []uint64{cs.seq, ev.Seq}
	switch {
	case ev.Subject != cs.subject || !slices.Equal(ev.Purposes, cs.purposes):
		c.violate(RuleConsent, ev.Time, seqs, "window of visit %s opened for subject %s, purposes %v; the consent was of subject %s, purposes %v",
			ev.Visit, ev.Subject, ev.Purposes, cs.subject, cs.purposes)
	case !cs.expires.IsZero() && !ev.Time.Before(cs.expires.Add(c.tol)):
		c.violate(RuleConsent, ev.Time, seqs, "window of visit %s opened at %s, after its token expired at %s", ev.Visit, stamp(ev.Time), stamp(cs.expires))
	}
	c.windows[ev.Visit] = cs
}

// saved checks rule 2 for a capture.saved event, and starts following the
// record for rules 4 to 6.
func (c *checker) saved(ev *store.Event) {
	c.cnt.Saved++
	w := c.windows[ev.Visit]
	switch {
	case w == nil:
		c.violate(RuleCapture, ev.Time, []uint64{ev.Seq}, "face of visit %s saved with no window of that visit open", ev.Visit)
	case w.orphan:
	case ev.Subject != w.subject:
		c.violate(RuleCapture, ev.Time, []uint64{w.seq, ev.Seq}, "face saved as subject %s in the window of subject %s", ev.Subject, w.subject)
	default:
		for _, p := range ev.Purposes {
			if !slices.Contains(w.purposes, p) {
				c.violate(RuleCapture, ev.Time, []uint64{w.seq, ev.Seq}, "face of visit %s saved for purpose %q, which the consent does not name", ev.Visit, p)
			}
		}
	}
	if w != nil {
		w.saved++
		if w.saved > 1 && !w.orphan {
			c.violate(RuleCapture, ev.Time, []uint64{w.seq, ev.Seq}, "a second face saved on the consent of visit %s", ev.Visit)
		}
	}
	if ev.Record == "" {
		c.violate(RuleCapture, ev.Time, []uint64{ev.Seq}, "capture.saved names no record")
		return
	}
	if first, ok := c.everSaved[ev.Record]; ok {
		c.violate(RuleCapture, ev.Time, []uint64{first, ev.Seq}, "record id %s saved twice", ev.Record)
		return
	}
	c.everSaved[ev.Record] = ev.Seq

	rec := &recordState{id: ev.Record, visit: ev.Visit, subject: ev.Subject, saved: ev.Seq, tags: map[string]time.Time{}}
	said, _ := ev.Detail["expires"].(map[string]any)
	for _, p := range ev.Purposes {
		retention, ok := c.settings.Purposes[p]
		if !ok {
			// Not configured: rule 1 or 2 says so; keep the tag as the
			// event states it, if it does.
			t, err := time.Parse(time.RFC3339, fmt.Sprint(said[p]))
			if err == nil {
				rec.tags[p] = t
			}
			continue
		}
		expires := ev.Time.Add(time.Duration(retention))
		if s, ok := said[p].(string); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil && t.After(expires.Add(c.tol)) {
				c.violate(RuleRetention, ev.Time, []uint64{ev.Seq}, "record %s tagged for %s until %s, past its retention of %v (%s)",
					ev.Record, p, s, retention, stamp(expires))
			}
		}
		rec.tags[p] = expires
		// The sweep may keep a tag past its expiry by one interval, but
		// never by more than the retention itself.
		slack := min(time.Duration(c.settings.SweepInterval), time.Duration(retention))
		heap.Push(&c.deadlines, deadline{
			at:      expires.Add(slack + c.tol),
			expires: expires, sweep: slack,
			record: ev.Record, purpose: p, seq: ev.Seq,
		})
	}
	c.records[rec.id] = rec
	addIndex(c.bySubject, rec.subject, rec.id)
	addIndex(c.byVisit, rec.visit, rec.id)
}

func addIndex(idx map[string]map[string]bool, name, id string) {
	if idx[name] == nil {
		idx[name] = map[string]bool{}
	}
	idx[name][id] = true
}

func dropIndex(idx map[string]map[string]bool, name, id string) {
	delete(idx[name], id)
	if len(idx[name]) == 0 {
		delete(idx, name)
	}
}

func (c *checker) dropRecord(rec *recordState) {
	delete(c.records, rec.id)
	dropIndex(c.bySubject, rec.subject, rec.id)
	dropIndex(c.byVisit, rec.visit, rec.id)
}

// expired follows a record.expired event: tags dropped, the record deleted
// when none is left.
func (c *checker) expired(ev *store.Event) {
	rec := c.records[ev.Record]
	if rec == nil {
		return
	}
	for _, p := range ev.Purposes {
		delete(rec.tags, p)
	}
	if deleted, _ := ev.Detail["deleted"].(bool); deleted || len(rec.tags) == 0 {
		c.dropRecord(rec)
		c.cnt.Erased["retention ended"]++
	}
}

// checkDeadlines reports the tags still alive past their deadline at time
// now (rule 4): before the event ev, or, with ev nil, when the bundle was
// made. A deadline that falls while the agent was down moves to the sweep at
// its next start.
func (c *checker) checkDeadlines(now time.Time, ev *store.Event) {
	for len(c.deadlines) > 0 && now.After(c.deadlines[0].at) {
		d := heap.Pop(&c.deadlines).(deadline)
		rec := c.records[d.record]
		if rec == nil {
			continue
		}
		if _, alive := rec.tags[d.purpose]; !alive {
			continue
		}
		if c.downUntil.After(d.expires) && c.downFrom.Before(d.expires.Add(d.sweep)) {
			if restart := c.downUntil.Add(c.tol); restart.After(d.at) {
				d.at = restart
				if !now.After(d.at) {
					heap.Push(&c.deadlines, d)
					continue
				}
			}
		}
		seqs, when := []uint64{d.seq}, "when the bundle was made, "+stamp(now)
		if ev != nil {
			seqs, when = append(seqs, ev.Seq), "at "+stamp(now)
		}
		c.violate(RuleRetention, now, seqs, "record %s still tagged for %s %s: its retention ended at %s, the sweep had until %s",
			d.record, d.purpose, when, stamp(d.expires), stamp(d.at))
	}
}

// deadline is when a record's tag must be gone.
type deadline struct {
	at, expires     time.Time
	sweep           time.Duration
	record, purpose string
	seq             uint64 // of capture.saved
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// erase follows a record.erased event, which must be part of a revoke.
func (c *checker) erase(ev *store.Event) {
	rec := c.records[ev.Record]
	if rec == nil {
		c.violate(RuleRevoke, ev.Time, []uint64{ev.Seq}, "record %s erased, but no such record was kept", ev.Record)
		return
	}
	c.dropRecord(rec)
	c.erased = append(c.erased, erasure{ev.Seq, rec})
}

func erasureSeqs(es []erasure) []uint64 {
	s := make([]uint64, len(es))
	for i, e := range es {
		s[i] = e.seq
	}
	return s
}

// revoked checks rule 5 for a consent.revoked event: the records erased
// just before it, in its transaction, are all those of its subject or visit
// that were alive, and a valid revoke command ordered it.
func (c *checker) revoked(ev *store.Event) {
	cnt := c.cnt
	cnt.Revokes++
	erased := c.erased
	c.erased = nil
	if len(erased) > 0 {
		cnt.Erased["revoked: "+ev.Reason] += len(erased)
	}
	what, idx := "subject "+ev.Subject, c.bySubject[ev.Subject]
	if ev.Visit != "" && ev.Subject == "" {
		what, idx = "visit "+ev.Visit, c.byVisit[ev.Visit]
	}
	if (ev.Subject == "") == (ev.Visit == "") {
		c.violate(RuleRevoke, ev.Time, []uint64{ev.Seq}, "a revoke must name exactly one of subject and visit")
		return
	}
	for _, e := range erased {
		if (ev.Subject != "" && e.rec.subject != ev.Subject) || (ev.Subject == "" && e.rec.visit != ev.Visit) {
			c.violate(RuleRevoke, ev.Time, []uint64{e.seq, ev.Seq}, "the revoke of %s erased record %s of subject %s, visit %s",
				what, e.rec.id, e.rec.subject, e.rec.visit)
		}
	}
	var left []string
	for id := range idx {
		left = append(left, id)
	}
	slices.Sort(left)
	for _, id := range left {
		rec := c.records[id]
		c.violate(RuleRevoke, ev.Time, []uint64{rec.saved, ev.Seq}, "the revoke of %s left record %s (saved at seq %d) alive", what, id, rec.saved)
	}
	if n, ok := ev.Detail["erased"].(json.Number); ok && n.String() != fmt.Sprint(len(erased)) {
		c.violate(RuleRevoke, ev.Time, append(erasureSeqs(erased), ev.Seq), "the revoke says it erased %s records, the log shows %d", n, len(erased))
	}

	if !c.withEvidence {
		return
	}
	bad := func(format string, args ...any) {
		c.violate(RuleRevoke, ev.Time, []uint64{ev.Seq}, "revoke of %s: "+format, append([]any{what}, args...)...)
	}
	e := c.b.Evidence[ev.Seq]
	if e == nil && ev.Actor == ActorVisitor {
		return // the visitor withdrew at the kiosk, with the receipt's code: no command to keep
	}
	if e == nil {
		c.missing[ev.Seq] = &missingEvidence{seq: ev.Seq, kind: store.EvidenceRevoke, time: ev.Time,
			retention: time.Duration(c.settings.EvidenceRetention)}
		return
	}
	if !c.matchesEvidence(ev, e, store.EvidenceRevoke, "request", bad) {
		return
	}
	var cmd *consent.Revoke
	err := c.verify(ev, func() error {
		var err error
		cmd, err = c.verifier.VerifyRevoke([]byte(e.Token))
		return err
	})
	switch {
	case err != nil:
		bad("the revoke command is refused: %s", c.refusal(err))
	case cmd.JTI != e.JTI:
		bad("the revoke command's jti is %q, not %q", cmd.JTI, e.JTI)
	case cmd.Subject != ev.Subject || cmd.Visit != ev.Visit:
		bad("the revoke command names subject %q, visit %q", cmd.Subject, cmd.Visit)
	case cmd.KeyID != ev.Actor:
		bad("the revoke command is signed by kid %q, the event names %q", cmd.KeyID, ev.Actor)
	case cmd.Reason != ev.Reason:
		bad("the revoke command gives reason %q, the event %q", cmd.Reason, ev.Reason)
	}
}

// accessed checks rule 6 for a record.accessed event.
func (c *checker) accessed(ev *store.Event) {
	for _, p := range ev.Purposes {
		c.cnt.Reads[p]++
	}
	seqs := []uint64{ev.Seq}
	bad := func(format string, args ...any) {
		c.violate(RuleAccess, ev.Time, seqs, "read of record %s: "+format, append([]any{ev.Record}, args...)...)
	}
	rec := c.records[ev.Record]
	if rec == nil {
		bad("no such record was kept then")
		return
	}
	seqs = []uint64{rec.saved, ev.Seq}
	if len(ev.Purposes) != 1 {
		bad("names %d purposes, want exactly one", len(ev.Purposes))
		return
	}
	p := ev.Purposes[0]
	switch expires, ok := rec.tags[p]; {
	case !ok:
		bad("the record is not tagged for %q", p)
	case !ev.Time.Before(expires):
		bad("its tag for %q expired at %s", p, stamp(expires))
	}
}

// evidenceExpired accounts for evidence deleted at the end of its
// retention.
func (c *checker) evidenceExpired(ev *store.Event) {
	c.cnt.EvidenceExpired++
	n, _ := ev.Detail["seq"].(json.Number)
	var seq uint64
	if _, err := fmt.Sscan(n.String(), &seq); err != nil {
		return
	}
	m := c.missing[seq]
	if m == nil {
		return
	}
	delete(c.missing, seq)
	if due := m.time.Add(m.retention); ev.Time.Before(due.Add(-c.tol)) {
		rule := RuleConsent
		if m.kind == store.EvidenceRevoke {
			rule = RuleRevoke
		}
		c.violate(rule, ev.Time, []uint64{seq, ev.Seq}, "the %s evidence of seq %d was deleted at %s, before the end of its retention of %v (%s)",
			m.kind, seq, stamp(ev.Time), m.retention, stamp(due))
	}
}

// finish reports what only the end of the log shows.
func (c *checker) finish() error {
	for seq, e := range c.b.Evidence {
		if seq >= c.r.Events {
			return &BundleError{File: FileEvidence, Err: fmt.Errorf("evidence %q is kept for seq %d, beyond the log's %d events", e.JTI, seq, c.r.Events)}
		}
	}
	if len(c.erased) > 0 {
		c.violate(RuleRevoke, c.r.To, erasureSeqs(c.erased), "records erased without the consent.revoked that ordered them in the same transaction")
	}
	seqs := make([]uint64, 0, len(c.missing))
	for seq := range c.missing {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		m := c.missing[seq]
		if m.kind == store.EvidenceConsent {
			c.violate(RuleConsent, m.time, []uint64{seq}, "no evidence: the bundle holds no consent token for this consent.accepted")
		} else {
			c.violate(RuleRevoke, m.time, []uint64{seq}, "no evidence: the bundle holds no revoke command for this consent.revoked")
		}
	}
	// A box still running when the bundle was made had until then to sweep
	// (less the tolerance, the bundle's clock being the auditor's): its log
	// holds every erasure made before the pull, and an idle box appends no
	// event that would show a deadline passed.
	if c.running && c.prev != nil {
		made := c.b.Manifest.Made.Add(-c.tol)
		if made.After(c.prev.Time) {
			c.checkDeadlines(made, nil)
		}
	}
	if c.lastSigned != nil && c.b.Manifest.Settings != nil {
		if d := c.b.Manifest.Settings.differences(c.lastSigned); len(d) > 0 {
			return bundleErr(FileManifest, "settings differ from those the box signed in its last agent.started: %v", d)
		}
	}
	c.endPeriod()
	for _, rr := range c.r.Rules {
		slices.SortStableFunc(rr.Violations, func(a, b Violation) int {
			return cmpSeqs(a.Seqs, b.Seqs)
		})
	}
	return nil
}

func cmpSeqs(a, b []uint64) int {
	return slices.Compare(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// detailString returns a string member of an event's detail, "" if absent.
func detailString(ev *store.Event, key string) string {
	s, _ := ev.Detail[key].(string)
	return s
}
