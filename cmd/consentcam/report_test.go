package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// report processing on a bundle whose log has known counts gives those
// counts, as JSON and as Markdown; the Markdown is docs/processing-example.md
// (go test ./cmd/consentcam -run ReportProcessing -update rewrites it).
func TestReportProcessing(t *testing.T) {
	box, _, _ := audittest.PeriodBox(t)
	bundle := box.WriteBundle()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		c := &ReportCommand{Stdout: &out, Stderr: &errOut, Now: func() time.Time { return time.Date(2026, 3, 6, 9, 0, 0, 0, time.UTC) }}
		err := c.Run(context.Background(), append([]string{"processing", "--bundle", bundle}, args...))
		return out.String(), err
	}

	out, err := run("--from", "2026-03-03", "--to", "2026-03-04", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var p audit.Processing
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if !p.From.Equal(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)) || !p.To.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("period %s to %s: --to names the last day, included", p.From, p.To)
	}
	c := p.Counts
	if c.Asked != 6 || c.Agreed != 4 || c.Declined != 2 || c.DeclinedNoGuardian != 1 || c.MinorsWithGuardian != 1 ||
		c.Captures != 3 || c.Skipped["multiple-faces"] != 1 || c.Erasures["retention ended"] != 1 ||
		c.Erasures["revoked: visitor withdrew"] != 1 || c.Accesses["channel-attribution"] != 1 || c.AccessesRefused != 1 ||
		p.AtEnd.Records != 3 || p.AtEnd.SubjectsStored != 3 || p.Filing.Status != "below" {
		t.Errorf("record of processing:\n%s", out)
	}

	md, err := run("--from", "2026-03-03", "--to", "2026-03-04")
	if err != nil {
		t.Fatal(err)
	}
	example := filepath.Join(testenv.Root(), "docs", "processing-example.md")
	if *update {
		if err := os.WriteFile(example, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if md != string(want) {
		t.Errorf("the Markdown differs from docs/processing-example.md (-update rewrites it):\n%s", md)
	}

	// The same box, from the day before: what happened then is counted too.
	out, err = run("--from", "2026-03-02", "--to", "2026-03-04", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	p = audit.Processing{}
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Counts.Asked != 9 || p.Counts.Captures != 5 {
		t.Errorf("from the day before: asked %d, captures %d; want 9, 5 (%v)", p.Counts.Asked, p.Counts.Captures, err)
	}
}

func TestReportProcessing_Usage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"report"}, "subcommand"},
		{[]string{"report", "processing", "--bundle", "b", "--to", "2026-03-04"}, "--from is required"},
		{[]string{"report", "processing", "--from", "2026-03-03", "--to", "2026-03-04"}, "either --bundle or --url"},
		{[]string{"report", "processing", "--url", "http://x", "--from", "2026-03-03", "--to", "2026-03-04"}, "--token-file"},
		{[]string{"report", "processing", "--bundle", "b", "--from", "March", "--to", "2026-03-04"}, "neither a day"},
		{[]string{"report", "processing", "--bundle", "b", "--from", "2026-03-05", "--to", "2026-03-04"}, "ends"},
		{[]string{"report", "processing", "--bundle", "b", "--from", "2026-03-03", "--to", "2026-03-04", "--format", "pdf"}, "markdown or json"},
	} {
		_, stderr, code := runArgs(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tt.args, code, stderr, tt.msg)
		}
	}
	_, stderr, code := runArgs(t, "report", "processing", "--bundle", t.TempDir(), "--from", "2026-03-03", "--to", "2026-03-04")
	if code != 1 || !strings.Contains(stderr, "manifest.json") {
		t.Errorf("an empty bundle: exit %d, %q", code, stderr)
	}
}
