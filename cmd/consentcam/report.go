package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/consent"
)

// ReportCommand dispatches the report subcommands.
type ReportCommand struct {
	Stdout io.Writer
	Stderr io.Writer
	// Client is the HTTP client that pulls the log (tests set a short
	// timeout).
	Client *http.Client
	// Now is the time the record says it was made (tests fix it).
	Now func() time.Time
}

const reportUsage = `Usage:

	consentcam report processing (--bundle DIR | --url URL --token-file F) --from DATE --to DATE [--format markdown|json]

processing prints the record of processing of one box for a period (PIPL
arts. 55-56; face-recognition measures art. 9), from the box's own signed
log: purposes, legal basis and retention, the visitors asked, agreeing per
purpose and declining, captures, erasures by cause, image reads by purpose,
the people whose face data is stored at the end, and the filing threshold.
`

const reportProcessingUsage = `Print the record of processing of one box for a period, from its signed
audit log: pulled from the box's auditor endpoints, or read from an audit
bundle (consentcam audit pull --bundle). The log must verify; the counts are
those of audit check, for the period.

Usage:

	consentcam report processing (--bundle DIR | --url URL --token-file F) --from DATE --to DATE [--format markdown|json]

Arguments:

	--bundle DIR         an audit bundle (docs/AUDIT.md)
	--url URL            the box's HTTP API, such as http://192.0.2.10:8765
	--token-file F       a file holding an auditor token of the box
	--from DATE          the first day of the period, 2026-03-01 (UTC), or an
	                     RFC 3339 time
	--to DATE            the last day of the period, included, or an RFC 3339
	                     time, not included
	--format F           markdown (default) or json
	--pubkey FILE        the device public key you hold (PKIX PEM): the box's
	                     must be the same
`

// Run runs report processing.
func (c *ReportCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, reportUsage)
		return usagef("report needs a subcommand: processing")
	}
	switch args[0] {
	case "processing":
		return c.processing(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stderr, reportUsage)
		return nil
	default:
		return usagef("unknown report subcommand %q (processing)", args[0])
	}
}

func (c *ReportCommand) processing(ctx context.Context, args []string) error {
	fs := newFlagSet("report processing", reportProcessingUsage, c.Stderr)
	bundle := fs.String("bundle", "", "")
	base := fs.String("url", "", "")
	tokenFile := fs.String("token-file", "", "")
	fromArg := fs.String("from", "", "")
	toArg := fs.String("to", "", "")
	format := fs.String("format", "markdown", "")
	pubPath := fs.String("pubkey", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "from", "to"); err != nil {
		return err
	}
	if (*bundle == "") == (*base == "") {
		fs.Usage()
		return usagef("report processing: give either --bundle or --url (with --token-file)")
	}
	if *base != "" && *tokenFile == "" {
		return usagef("report processing: --url needs --token-file")
	}
	if *format != "markdown" && *format != "json" {
		return usagef("report processing: --format must be markdown or json (got %q)", *format)
	}
	from, err := periodTime(*fromArg, false)
	if err != nil {
		return usagef("report processing: --from: %v", err)
	}
	to, err := periodTime(*toArg, true)
	if err != nil {
		return usagef("report processing: --to: %v", err)
	}
	if !from.Before(to) {
		return usagef("report processing: the period ends (%s) before it starts (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	opt := audit.Options{From: from, To: to}
	if *pubPath != "" {
		if opt.Device, err = consent.ReadPublicKey(*pubPath); err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
	}

	dir := *bundle
	if *base != "" {
		tmp, err := os.MkdirTemp("", "consentcam-report-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "bundle")
		pull := &AuditCommand{Stdout: io.Discard, Stderr: c.Stderr, Client: c.Client}
		if err := pull.pull(ctx, []string{"--url", *base, "--token-file", *tokenFile, "--bundle", dir}); err != nil {
			return fmt.Errorf("pull the log from %s: %w", *base, err)
		}
	}
	b, err := audit.Open(dir)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	p, err := audit.NewProcessing(b, opt, now())
	if err != nil {
		what := "bundle " + dir
		if *base != "" {
			what = "the log of " + *base
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if *base != "" {
		if u, err := url.Parse(*base); err == nil {
			p.Source = u.Redacted()
		}
	}
	if *format == "json" {
		return p.WriteJSON(c.Stdout)
	}
	return p.WriteMarkdown(c.Stdout)
}

// periodTime reads a bound of the period: a day (UTC; the end of the
// period is the end of that day) or an RFC 3339 time.
func periodTime(s string, end bool) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a day such as 2026-03-01 nor an RFC 3339 time", strings.TrimSpace(s))
	}
	return t.UTC(), nil
}
