package audit

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// human writes a duration in days when it is whole days.
func human(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp":  stamp,
	"seqs":   seqList,
	"sorted": func(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) },
	"sum":    sum,
	"retentions": func(s *Settings) string {
		if s == nil {
			return ""
		}
		var parts []string
		for _, p := range slices.Sorted(maps.Keys(s.Purposes)) {
			parts = append(parts, p+": "+human(time.Duration(s.Purposes[p])))
		}
		return strings.Join(parts, "; ")
	},
	"duration": func(d time.Duration) string { return d.String() },
	"minus1":   func(n uint64) uint64 { return n - 1 },
}).Parse(reportHTML))

// htmlReport is what the template shows.
type htmlReport struct {
	*Report
	Verdict string
	Failed  string
}

// WriteHTML writes the report as one self-contained HTML page (inline CSS,
// no script, nothing fetched) that prints on A4: the box, the period, the
// counts, each rule's verdict and every violation.
func (r *Report) WriteHTML(w io.Writer) error {
	h := htmlReport{Report: r, Verdict: "PASS"}
	if !r.Passed() {
		h.Verdict = "FAIL"
		if r.Integrity == nil {
			h.Failed = joinInts(r.Failed())
		}
	}
	if err := reportTemplate.Execute(w, h); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}
