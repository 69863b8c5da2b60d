package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// AuditCommand dispatches the audit subcommands.
type AuditCommand struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Client is the HTTP client of audit pull (tests set a short timeout).
	Client *http.Client
}

const auditUsage = `Usage:

	consentcam audit pull --url URL --token-file F [--after SEQ] [--checkpoint FILE]
	consentcam audit verify --pubkey FILE [--checkpoint FILE] [FILE]
	consentcam audit check [--report FILE.html] [--pubkey FILE] [--tolerance D] BUNDLE

pull prints the audit log of an agent as JSON Lines; verify checks one;
check judges a bundle (log, evidence, notices, keys) against the rules of
docs/AUDIT.md.
`

const auditPullUsage = `Print an agent's audit log as JSON Lines.

Usage:

	consentcam audit pull --url URL --token-file F [--after SEQ] [--checkpoint FILE]

Arguments:

	--url URL            the agent's HTTP address, such as http://127.0.0.1:8765
	--token-file F       a file holding an auditor bearer token
	--after SEQ          print only the events after this seq
	--checkpoint FILE    also save the agent's latest checkpoint to FILE, taken
	                     before the events so that they cover it
`

const auditVerifyUsage = `Check an audit log (JSON Lines, standard input without FILE): seq without
gaps, the Merkle root against every signed checkpoint, and the signatures.
Exits 0 only when all hold, and says what failed otherwise.

Usage:

	consentcam audit verify --pubkey FILE [--checkpoint FILE] [FILE]

Arguments:

	--pubkey FILE        the device's public key (PKIX PEM)
	--checkpoint FILE    a checkpoint the log must match (audit pull --checkpoint,
	                     or …/checkpoint)
`

const auditCheckUsage = `Check an audit bundle offline: the log verifies (as audit verify checks it),
then each rule of docs/AUDIT.md holds. Prints each rule's verdict with the
seqs of the events that break it, and the counts of the period. Exits 0 only
when the log verifies and every rule holds.

Usage:

	consentcam audit check [--report FILE.html] [--pubkey FILE] [--tolerance D] BUNDLE

Arguments:

	BUNDLE               the bundle directory (docs/AUDIT.md, "The bundle")
	--report FILE.html   also write the report as one HTML page to print
	--pubkey FILE        the device public key you hold (PKIX PEM): the bundle's
	                     must be the same
	--tolerance D        slack on every deadline, such as 5s, instead of the
	                     manifest's
`

// Run runs audit pull, audit verify or audit check.
func (c *AuditCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, auditUsage)
		return usagef("audit needs a subcommand: pull, verify or check")
	}
	switch args[0] {
	case "pull":
		return c.pull(ctx, args[1:])
	case "verify":
		return c.verify(args[1:])
	case "check":
		return c.check(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stderr, auditUsage)
		return nil
	default:
		return usagef("unknown audit subcommand %q (pull, verify or check)", args[0])
	}
}

// pageSize is how many events audit pull asks for at a time.
const pageSize = 1000

func (c *AuditCommand) pull(ctx context.Context, args []string) error {
	fs := newFlagSet("audit pull", auditPullUsage, c.Stderr)
	base := fs.String("url", "", "")
	tokenFile := fs.String("token-file", "", "")
	after := fs.Int64("after", -1, "")
	cpOut := fs.String("checkpoint", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "url", "token-file"); err != nil {
		return err
	}
	if *after < -1 {
		return usagef("audit pull: --after must be a seq (0 or more)")
	}
	u, err := url.Parse(strings.TrimSuffix(*base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url must be http://host:port or https://host:port (got %q)", *base)
	}
	token, err := readSecretFile("--token-file", *tokenFile)
	if err != nil {
		return err
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: time.Minute}
	}
	get := func(path string, q url.Values) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+path+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			var e struct{ Error string }
			json.Unmarshal(body, &e)
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, e.Error)
		}
		return body, nil
	}

	if *cpOut != "" {
		cp, err := get("/v1/audit/checkpoint", nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*cpOut, cp, 0o644); err != nil {
			return err
		}
	}
	next := *after
	for {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if next >= 0 {
			q.Set("after", strconv.FormatInt(next, 10))
		}
		body, err := get("/v1/audit", q)
		if err != nil {
			return err
		}
		lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
		if len(body) == 0 {
			lines = nil
		}
		for _, line := range lines {
			var ev struct {
				Seq *int64 `json:"seq"`
			}
			if err := json.Unmarshal(line, &ev); err != nil || ev.Seq == nil || *ev.Seq != next+1 {
				return fmt.Errorf("the agent sent an event out of order after seq %d", next)
			}
			next = *ev.Seq
			if _, err := c.Stdout.Write(append(line, '\n')); err != nil {
				return err
			}
		}
		if len(lines) < pageSize {
			return nil
		}
	}
}

func (c *AuditCommand) verify(args []string) error {
	fs := newFlagSet("audit verify", auditVerifyUsage, c.Stderr)
	pubPath := fs.String("pubkey", "", "")
	cpPath := fs.String("checkpoint", "", "")
	if err := parseFlagsArgs(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "pubkey"); err != nil {
		return err
	}
	pub, err := consent.ReadPublicKey(*pubPath)
	if err != nil {
		return fmt.Errorf("--pubkey: %w", err)
	}
	var checkpoint []byte
	if *cpPath != "" {
		if checkpoint, err = os.ReadFile(*cpPath); err != nil {
			return fmt.Errorf("--checkpoint: %w", err)
		}
	}
	in := c.Stdin
	name := "standard input"
	if fs.NArg() == 1 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}
	rep, err := store.VerifyLog(bufio.NewReader(in), checkpoint, pub)
	if err != nil {
		var lerr *store.LogError
		if errors.As(err, &lerr) {
			return fmt.Errorf("%s does not verify: %w", name, err)
		}
		return err
	}
	w := c.Stdout
	if rep.Events == 0 {
		fmt.Fprintf(w, "%s: empty log\n", name)
	} else {
		fmt.Fprintf(w, "%s: %d events, seq 0 to %d without gaps\n", name, rep.Events, rep.LastSeq)
	}
	if len(rep.Checkpoints) == 0 {
		return fmt.Errorf("%s does not verify: no signed checkpoint in the log, and none given with --checkpoint: nothing signs these events", name)
	}
	fmt.Fprintf(w, "%d signed checkpoints verified (tree sizes %s)\n", len(rep.Checkpoints), sizes(rep.Checkpoints))
	if rep.Uncovered > 0 {
		fmt.Fprintf(w, "the last %d events are not covered by a checkpoint yet\n", rep.Uncovered)
	}
	fmt.Fprintln(w, "OK")
	return nil
}

func sizes(s []uint64) string {
	if len(s) > 6 {
		return fmt.Sprintf("%d, %d, %d, …, %d", s[0], s[1], s[2], s[len(s)-1])
	}
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatUint(v, 10)
	}
	return strings.Join(parts, ", ")
}

func (c *AuditCommand) check(args []string) error {
	fs := newFlagSet("audit check", auditCheckUsage, c.Stderr)
	reportPath := fs.String("report", "", "")
	pubPath := fs.String("pubkey", "", "")
	tolerance := fs.Duration("tolerance", 0, "")
	// The bundle may come before the flags, as the usage line writes it.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append(args[1:len(args):len(args)], args[0])
	}
	if err := parseFlagsArgs(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usagef("audit check: name the bundle directory")
	}
	if *tolerance < 0 {
		return usagef("audit check: --tolerance must not be negative")
	}
	opt := audit.Options{Tolerance: *tolerance}
	if *pubPath != "" {
		pub, err := consent.ReadPublicKey(*pubPath)
		if err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
		opt.Device = pub
	}
	dir := fs.Arg(0)
	b, err := audit.Open(dir)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	rep, err := audit.Check(b, opt)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := rep.WriteText(c.Stdout); err != nil {
		return err
	}
	if *reportPath != "" {
		var page bytes.Buffer
		if err := rep.WriteHTML(&page); err != nil {
			return err
		}
		if err := os.WriteFile(*reportPath, page.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	switch {
	case rep.Integrity != nil:
		return fmt.Errorf("bundle %s: %w", dir, rep.Integrity)
	case !rep.Passed():
		return fmt.Errorf("bundle %s: rules %s broken", dir, joinRules(rep.Failed()))
	}
	return nil
}

func joinRules(n []int) string {
	parts := make([]string, len(n))
	for i, v := range n {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ", ")
}
