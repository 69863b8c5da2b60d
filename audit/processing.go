package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// ProcessingFormat is the format string of the record of processing's JSON.
const ProcessingFormat = "consentcam-processing-record/1"

// LegalBasis is the legal basis of every purpose the box processes for: the
// visitor's separate consent, or a guardian's for a visitor under 14.
const LegalBasis = "separate consent of the visitor (PIPL art. 13(1), 29), of a guardian for a visitor under 14 (art. 31)"

// Processing is the record of processing of one box for a period (PIPL
// arts. 55-56; face-recognition measures art. 9): what the processor states
// (from the notice in force at the end of the period) and what the box did,
// counted from its own signed log by Check, never recounted.
type Processing struct {
	Format    string    `json:"format"`
	Site      string    `json:"site"`
	Camera    string    `json:"camera"`
	DeviceKey string    `json:"device_key"` // KeyFingerprint of the key that signs the log
	Source    string    `json:"source,omitempty"`
	From      time.Time `json:"from"` // included
	To        time.Time `json:"to"`   // not included
	Made      time.Time `json:"made"`
	Log       struct {
		Events uint64 `json:"events"` // the whole log, which verifies
		// RulesBroken are the rules of docs/AUDIT.md that the log breaks
		// (audit check), none when it passes.
		RulesBroken []int `json:"rules_broken"`
	} `json:"log"`

	// Notice is the hash of the notice in force at the end of the period;
	// the processor's statements below are its.
	Notice     string              `json:"notice"`
	Language   string              `json:"language"`
	Controller consent.Text        `json:"controller"`
	Contact    consent.Text        `json:"contact"`
	Compliance *consent.Compliance `json:"compliance"` // nil when the notice states none

	Purposes []ProcessingPurpose `json:"purposes"`
	Counts   ProcessingCounts    `json:"counts"`
	// AtEnd is what the box held at the end of the period.
	AtEnd struct {
		Records int `json:"records"`
		// SubjectsStored is the number of distinct people whose face
		// data the box holds.
		SubjectsStored int `json:"subjects_stored"`
	} `json:"at_end"`
	Filing FilingStatus `json:"filing"`
}

// ProcessingPurpose is one purpose: what visitors were told, its legal
// basis, how long it keeps a face, and what was done for it in the period.
type ProcessingPurpose struct {
	ID          string       `json:"id"`
	Description consent.Text `json:"description"`
	Retention   Duration     `json:"retention"`
	LegalBasis  string       `json:"legal_basis"`
	Agreed      int          `json:"agreed"`
	Accesses    int          `json:"accesses"`
}

// ProcessingCounts are the figures of the period.
type ProcessingCounts struct {
	Asked              int            `json:"asked"`  // answers visitors gave
	Agreed             int            `json:"agreed"` // consents accepted
	MinorsWithGuardian int            `json:"minors_with_guardian"`
	Declined           int            `json:"declined"` // "no" at the kiosk
	DeclinedNoGuardian int            `json:"declined_no_guardian"`
	TokensRefused      map[string]int `json:"tokens_refused"` // by reason
	Captures           int            `json:"captures"`       // faces saved
	Skipped            map[string]int `json:"skipped"`        // consents ended without a capture, by reason
	Erasures           map[string]int `json:"erasures"`       // records deleted, by cause
	Accesses           map[string]int `json:"accesses"`       // image reads, by purpose
	AccessesRefused    int            `json:"accesses_refused"`
	Revokes            int            `json:"revokes"`
	RevokesRefused     int            `json:"revokes_refused"`
}

// FilingStatus says where the box stands against the filing thresholds.
type FilingStatus struct {
	Thresholds []int `json:"thresholds"`
	// Crossed are the filing.threshold events up to the end of the period.
	Crossed []Filing `json:"crossed"`
	// Status is "below", "prepare" (80,000 reached) or "file" (100,000
	// reached); Note says it in words.
	Status string `json:"status"`
	Note   string `json:"note"`
}

// NewProcessing checks the bundle's log (Check, with the period of opt)
// and makes the record of processing of the period. A log that does not
// verify gives no record: its counts could not be vouched for.
func NewProcessing(b *Bundle, opt Options, made time.Time) (*Processing, error) {
	if opt.From.IsZero() || opt.To.IsZero() || !opt.From.Before(opt.To) {
		return nil, fmt.Errorf("the period must have a start before its end (got %s to %s)", stamp(opt.From), stamp(opt.To))
	}
	rep, err := Check(b, opt)
	if err != nil {
		return nil, err
	}
	if rep.Integrity != nil {
		return nil, rep.Integrity
	}
	p := &Processing{
		Format: ProcessingFormat, Site: rep.Site, Camera: rep.Camera, DeviceKey: rep.DeviceKey, Source: rep.Source,
		From: opt.From.UTC(), To: opt.To.UTC(), Made: made.UTC(), Notice: rep.NoticeAtEnd,
	}
	p.Log.Events = rep.Events
	p.Log.RulesBroken = append([]int{}, rep.Failed()...)

	var notice consent.Notice
	if n := b.Notices[rep.NoticeAtEnd]; n != nil {
		if err := json.Unmarshal(n.JSON, &notice); err != nil {
			return nil, bundleErr(DirNotices+"/"+n.Hash+".json", "%v", err)
		}
	}
	p.Language = notice.Language
	if p.Language == "" {
		p.Language = consent.LangEnglish // version 1 of the notice
	}
	p.Controller, p.Contact, p.Compliance = notice.Controller, notice.Contact, notice.Compliance

	c := rep.Counts
	seen := map[string]bool{}
	add := func(id string, desc consent.Text, retention time.Duration) {
		seen[id] = true
		p.Purposes = append(p.Purposes, ProcessingPurpose{ID: id, Description: desc, Retention: Duration(retention),
			LegalBasis: LegalBasis, Agreed: c.Agreed[id], Accesses: c.Reads[id]})
	}
	for _, np := range notice.Purposes {
		add(np.ID, np.Description, time.Duration(np.RetentionSeconds)*time.Second)
	}
	// Purposes the box kept or used that the notice in force does not
	// name (an earlier notice's): listed all the same.
	var kept map[string]Duration
	if len(rep.Runs) > 0 {
		kept = rep.Runs[len(rep.Runs)-1].Settings.Purposes
	}
	others := slices.Collect(maps.Keys(kept))
	others = append(others, slices.Collect(maps.Keys(c.Agreed))...)
	others = append(others, slices.Collect(maps.Keys(c.Reads))...)
	slices.Sort(others)
	for _, id := range slices.Compact(others) {
		if !seen[id] {
			add(id, nil, time.Duration(kept[id]))
		}
	}

	p.Counts = ProcessingCounts{
		Asked: c.Asked, Agreed: c.Accepted, MinorsWithGuardian: c.Minors,
		Declined: c.Declined, DeclinedNoGuardian: c.NoGuardian, TokensRefused: c.Rejected,
		Captures: c.Saved, Skipped: c.Skipped, Erasures: c.Erased, Accesses: c.Reads,
		AccessesRefused: c.ReadsRefused, Revokes: c.Revokes, RevokesRefused: c.RevokesRejected,
	}
	p.AtEnd.Records, p.AtEnd.SubjectsStored = c.LiveRecords, c.SubjectsStored
	p.Filing = filingStatus(rep.Filing, c.SubjectsStored)
	return p, nil
}

func filingStatus(crossed []Filing, subjects int) FilingStatus {
	f := FilingStatus{Thresholds: []int{store.FilingWarnThreshold, store.FilingThreshold}, Crossed: append([]Filing{}, crossed...), Status: "below"}
	first := map[int]*Filing{}
	for i := range crossed {
		if first[crossed[i].Threshold] == nil {
			first[crossed[i].Threshold] = &crossed[i]
		}
	}
	// when says when the box first reached threshold t.
	when := func(t int) string {
		if r := first[t]; r != nil {
			return fmt.Sprintf("first reached %s people with stored face data on %s (seq %d)", thousands(t), r.Time.UTC().Format(time.DateOnly), r.Seq)
		}
		return fmt.Sprintf("holds the face data of %s people or more (no filing.threshold event records when it first did)", thousands(t))
	}
	atEnd := fmt.Sprintf("%s people at the end of the period.", thousands(subjects))
	switch {
	case first[store.FilingThreshold] != nil || subjects >= store.FilingThreshold:
		f.Status = "file"
		f.Note = fmt.Sprintf("The box %s: the processor must file with the cyberspace administration of the province within "+
			"30 working days of that date (face-recognition measures, art. 15). %s", when(store.FilingThreshold), atEnd)
	case first[store.FilingWarnThreshold] != nil || subjects >= store.FilingWarnThreshold:
		f.Status = "prepare"
		f.Note = fmt.Sprintf("The box %s. %s At %s, the processor must file with the cyberspace administration of the "+
			"province within 30 working days (face-recognition measures, art. 15): prepare the filing.",
			when(store.FilingWarnThreshold), atEnd, thousands(store.FilingThreshold))
	default:
		f.Note = fmt.Sprintf("%s people with stored face data at the end of the period, below the filing threshold of %s "+
			"(face-recognition measures, art. 15); the box records when it first reaches %s and %s.",
			thousands(subjects), thousands(store.FilingThreshold), thousands(store.FilingWarnThreshold), thousands(store.FilingThreshold))
	}
	return f
}

// thousands writes n with a comma between thousands: 100,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteJSON writes the record as indented JSON.
func (p *Processing) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(p)
}

// WriteMarkdown writes the record as a Markdown page.
func (p *Processing) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	period := fmt.Sprintf("%s to %s", stamp(p.From), stamp(p.To))
	if p.From.Equal(p.From.Truncate(24*time.Hour)) && p.To.Equal(p.To.Truncate(24*time.Hour)) {
		period = fmt.Sprintf("%s to %s", day(p.From), day(p.To.Add(-24*time.Hour)))
	}
	fmt.Fprintf(&b, "# Record of processing: %s/%s, %s\n\n", p.Site, p.Camera, period)
	fmt.Fprintf(&b, "Face captures at the entrance camera `%s/%s`, from %s to %s (UTC; the end not included), "+
		"counted from the box's own signed audit log (PIPL arts. 55-56; face-recognition measures, art. 9). "+
		"The log, seq 0 to %d, verifies against the device key sha256:%s", p.Site, p.Camera, stamp(p.From), stamp(p.To),
		p.Log.Events-1, p.DeviceKey)
	if len(p.Log.RulesBroken) == 0 {
		b.WriteString(", and every rule of `consentcam audit check` holds.\n\n")
	} else {
		fmt.Fprintf(&b, "; it **breaks rules %s** of `consentcam audit check`: run it for the details.\n\n", joinInts(p.Log.RulesBroken))
	}
	fmt.Fprintf(&b, "Made %s", stamp(p.Made))
	if p.Source != "" {
		fmt.Fprintf(&b, " from %s", p.Source)
	}
	b.WriteString(".\n\n## Processor\n\n| | |\n|---|---|\n")
	text := func(t consent.Text) string { return mdText(t, p.Language) }
	fmt.Fprintf(&b, "| Controller | %s |\n| Contact | %s |\n", text(p.Controller), text(p.Contact))
	if c := p.Compliance; c != nil {
		fmt.Fprintf(&b, "| Personal information protection impact assessment (PIPL arts. 55-56) | %s, %s |\n", mdEscape(c.PIAReference), mdEscape(c.PIADate))
		fmt.Fprintf(&b, "| Personal information contact | %s |\n", text(c.DPOContact))
	} else {
		b.WriteString("| Personal information protection impact assessment (PIPL arts. 55-56) | **not stated in the notice** (configuration `compliance`) |\n")
	}
	fmt.Fprintf(&b, "| Notice in force at the end | `%s`, binding language %s |\n", p.Notice, p.Language)
	b.WriteString("| What is collected | one crop of the visitor's face per consent, encrypted on the box; never the whole frame |\n\n")

	b.WriteString("## Purposes\n\n| purpose | as the notice says | legal basis | kept | agreed | image reads |\n|---|---|---|---|---|---|\n")
	for _, pp := range p.Purposes {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %d | %d |\n", pp.ID, text(pp.Description), pp.LegalBasis, days(time.Duration(pp.Retention)), pp.Agreed, pp.Accesses)
	}

	c := p.Counts
	b.WriteString("\n## In the period\n\n| | count |\n|---|---:|\n")
	row := func(name string, n int) { fmt.Fprintf(&b, "| %s | %d |\n", name, n) }
	row("Visitors asked (answers given)", c.Asked)
	row("… who agreed", c.Agreed)
	row("… of them under 14, with a guardian's consent", c.MinorsWithGuardian)
	row("… who declined", c.Declined)
	row("… of them under 14, with no guardian to agree", c.DeclinedNoGuardian)
	row("Consent tokens refused", sum(c.TokensRefused))
	byName(&b, c.TokensRefused, "`%s`")
	row("Faces captured", c.Captures)
	row("Consents ended without a capture", sum(c.Skipped))
	byName(&b, c.Skipped, "`%s`")
	row("Records erased", sum(c.Erasures))
	byName(&b, c.Erasures, "%s")
	row("Image reads", sum(c.Accesses))
	byName(&b, c.Accesses, "for `%s`")
	row("Image reads refused (purpose not allowed)", c.AccessesRefused)
	row("Withdrawals and revoke orders carried out", c.Revokes)
	row("Revoke orders refused", c.RevokesRefused)

	fmt.Fprintf(&b, "\n## At the end of the period\n\n| | count |\n|---|---:|\n| Records kept | %d |\n| **People whose face data is stored** (distinct subjects) | **%d** |\n",
		p.AtEnd.Records, p.AtEnd.SubjectsStored)

	fmt.Fprintf(&b, "\n## Filing threshold (face-recognition measures, art. 15)\n\n%s\n", p.Filing.Note)
	if len(p.Filing.Crossed) > 0 {
		b.WriteString("\n| threshold | first reached | seq | people then |\n|---:|---|---:|---:|\n")
		for _, f := range p.Filing.Crossed {
			fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", thousands(f.Threshold), stamp(f.Time), f.Seq, thousands(f.Subjects))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// byName writes the rows of counts by name, indented under their total.
func byName(b *strings.Builder, m map[string]int, format string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "| &emsp;"+format+" | %d |\n", mdEscape(k), m[k])
	}
}

// mdText writes a text in its binding language first, then in each other
// language that says something else.
func mdText(t consent.Text, binding string) string {
	if len(t) == 0 {
		return "—"
	}
	first, ok := t[binding]
	if !ok {
		for _, l := range consent.Languages {
			if s, ok := t[l]; ok {
				first, binding = s, l
				break
			}
		}
	}
	parts := []string{mdEscape(first)}
	for _, l := range slices.Sorted(maps.Keys(t)) {
		if l != binding && t[l] != first {
			parts = append(parts, mdEscape(t[l])+" ("+l+")")
		}
	}
	return strings.Join(parts, " / ")
}

// mdEscape keeps a text from breaking a Markdown table or adding markup.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", "[", `\[`).Replace(s)
}

// days writes a retention in days and hours, as people count it.
func days(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	if d%(24*time.Hour) == 0 {
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
