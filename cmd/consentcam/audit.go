package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
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

	consentcam audit pull --url URL --token-file F [--site S --camera C] [--after SEQ] [--checkpoint FILE]
	consentcam audit pull --url URL --token-file F [--site S --camera C] --bundle DIR
	consentcam audit verify --pubkey FILE [--checkpoint FILE [--witness KEY ... [--quorum N]]] [FILE]
	consentcam audit check [--report FILE.html] [--pubkey FILE] [--tolerance D] [--witness KEY ... [--quorum N]] BUNDLE

pull prints the audit log of an agent as JSON Lines; verify checks one;
check judges a bundle (log, evidence, notices, keys) against the rules of
docs/AUDIT.md.
`

const auditPullUsage = `Print an agent's audit log as JSON Lines, or write an audit bundle.

Usage:

	consentcam audit pull --url URL --token-file F [--site S --camera C] [--after SEQ] [--checkpoint FILE]
	consentcam audit pull --url URL --token-file F [--site S --camera C] --bundle DIR

Arguments:

	--url URL            the agent's HTTP address, such as http://127.0.0.1:8765,
	                     or the fleet monitor's
	--token-file F       a file holding an auditor bearer token
	--site S --camera C  the box, when --url is a fleet monitor (consentcam fleet)
	--after SEQ          print only the events after this seq
	--checkpoint FILE    also save the agent's latest checkpoint to FILE, taken
	                     before the events so that they cover it
	--bundle DIR         write an audit bundle into the new directory DIR: the
	                     whole log, its checkpoint, the evidence, the notices and
	                     the keys, for audit check
`

const auditVerifyUsage = `Check an audit log (JSON Lines, standard input without FILE): seq without
gaps, the Merkle root against every signed checkpoint, and the signatures.
With --witness, the checkpoint given must also carry valid cosignatures by
that many trusted witnesses. Exits 0 only when all hold, and says what failed
otherwise.

Usage:

	consentcam audit verify --pubkey FILE [--checkpoint FILE [--witness KEY ... [--quorum N]]] [FILE]

Arguments:

	--pubkey FILE        the device's public key (PKIX PEM)
	--checkpoint FILE    a checkpoint the log must match (audit pull --checkpoint,
	                     or …/checkpoint)
	--witness KEY        the verifier key (vkey) of a witness you trust, as its
	                     operator publishes it; repeat for each
	--quorum N           how many of them must have cosigned the checkpoint
	                     (default: all)
`

const auditCheckUsage = `Check an audit bundle offline: the log verifies (as audit verify checks it),
then each rule of docs/AUDIT.md holds. Prints each rule's verdict with the
seqs of the events that break it, and the counts of the period. Exits 0 only
when the log verifies and every rule holds.

Usage:

	consentcam audit check [--report FILE.html] [--pubkey FILE] [--tolerance D] [--witness KEY ... [--quorum N]] BUNDLE

Arguments:

	BUNDLE               the bundle directory (docs/AUDIT.md, "The bundle")
	--report FILE.html   also write the report as one HTML page to print
	--pubkey FILE        the device public key you hold (PKIX PEM): the bundle's
	                     must be the same
	--tolerance D        slack on every deadline, such as 5s, instead of the
	                     manifest's
	--witness KEY        the verifier key (vkey) of a witness you trust
	                     (repeatable): the bundle's checkpoint must carry its
	                     valid cosignature, or the log is not trusted
	--quorum N           how many of them must have cosigned it (default: all)
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
	bundle := fs.String("bundle", "", "")
	site := fs.String("site", "", "")
	camera := fs.String("camera", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*site == "") != (*camera == "") {
		return usagef("audit pull: --site and --camera go together")
	}
	if err := required(fs, "url", "token-file"); err != nil {
		return err
	}
	if *after < -1 {
		return usagef("audit pull: --after must be a seq (0 or more)")
	}
	if *bundle != "" && (*after != -1 || *cpOut != "") {
		return usagef("audit pull: --bundle takes the whole log and its checkpoint: no --after, no --checkpoint")
	}
	u, err := url.Parse(strings.TrimSuffix(*base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url must be http://host:port or https://host:port (got %q)", *base)
	}
	token, err := readSecretFile("--token-file", *tokenFile)
	if err != nil {
		return err
	}
	cl := &auditClient{ctx: ctx, base: u.String(), token: token, http: c.Client}
	if *site != "" {
		if err := checkAudience(*site, *camera); err != nil {
			return err
		}
		cl.box = url.Values{"site": {*site}, "camera": {*camera}}
	}
	if cl.http == nil {
		cl.http = &http.Client{Timeout: time.Minute}
	}
	if *bundle != "" {
		return c.pullBundle(cl, *bundle)
	}
	if *cpOut != "" {
		cp, err := cl.get("/v1/audit/checkpoint", nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*cpOut, cp, 0o644); err != nil {
			return err
		}
	}
	_, err = cl.pages("/v1/audit", *after, func(line []byte) error {
		_, err := c.Stdout.Write(append(line, '\n'))
		return err
	})
	return err
}

// auditClient asks an agent's auditor endpoints.
type auditClient struct {
	ctx   context.Context
	base  string
	token string
	http  *http.Client
	// box names the box to a fleet monitor (?site=S&camera=C), nil for a box.
	box url.Values
}

// get returns the body of a GET answered 200.
func (cl *auditClient) get(path string, q url.Values) ([]byte, error) {
	if cl.box != nil {
		if q == nil {
			q = url.Values{}
		}
		for k, v := range cl.box {
			q[k] = v
		}
	}
	req, err := http.NewRequestWithContext(cl.ctx, http.MethodGet, cl.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	resp, err := cl.http.Do(req)
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

// pages reads a JSON Lines endpoint paged by seq (?after=SEQ&limit=N),
// from after on, handing each line to fn; the lines' seqs must grow. It
// returns the last seq read, or after.
func (cl *auditClient) pages(path string, after int64, fn func(line []byte) error) (int64, error) {
	next := after
	for {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if next >= 0 {
			q.Set("after", strconv.FormatInt(next, 10))
		}
		body, err := cl.get(path, q)
		if err != nil {
			return next, err
		}
		var lines [][]byte
		if len(body) > 0 {
			lines = bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
		}
		for _, line := range lines {
			var v struct {
				Seq *int64 `json:"seq"`
			}
			if err := json.Unmarshal(line, &v); err != nil || v.Seq == nil || *v.Seq <= next {
				return next, fmt.Errorf("%s: the agent sent a line out of order after seq %d", path, next)
			}
			if path == "/v1/audit" && *v.Seq != next+1 {
				return next, fmt.Errorf("the agent sent an event out of order after seq %d", next)
			}
			next = *v.Seq
			if err := fn(line); err != nil {
				return next, err
			}
		}
		if len(lines) < pageSize {
			return next, nil
		}
	}
}

// pullBundle writes an audit bundle (docs/SPEC.md, "Audit bundle"): the
// checkpoint first, so that the log covers it, then the log, the evidence of
// its events, the notices and the keys.
func (c *AuditCommand) pullBundle(cl *auditClient, dir string) error {
	cp, err := cl.get("/v1/audit/checkpoint", nil)
	if err != nil {
		return err
	}
	var log bytes.Buffer
	var first, lastStarted *store.Event
	last, err := cl.pages("/v1/audit", -1, func(line []byte) error {
		log.Write(line)
		log.WriteByte('\n')
		var ev store.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("/v1/audit: %w", err)
		}
		if first == nil {
			first = &ev
		}
		if ev.Type == store.EventAgentStarted {
			lastStarted = &ev
		}
		return nil
	})
	if err != nil {
		return err
	}
	if first == nil {
		return errors.New("the agent's audit log is empty")
	}
	var evidence []store.Evidence
	if _, err := cl.pages("/v1/audit/evidence", -1, func(line []byte) error {
		var e store.Evidence
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("/v1/audit/evidence: %w", err)
		}
		if int64(e.Seq) <= last { // newer than the log pulled: not part of it
			evidence = append(evidence, e)
		}
		return nil
	}); err != nil {
		return err
	}
	body, err := cl.get("/v1/audit/notices", nil)
	if err != nil {
		return err
	}
	var notices [][]byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			notices = append(notices, line)
		}
	}
	body, err = cl.get("/v1/audit/keys", nil)
	if err != nil {
		return err
	}
	var keys struct {
		Device    string            `json:"device"`
		Issuers   map[string]string `json:"issuers"`
		Operators map[string]string `json:"operators"`
	}
	if err := json.Unmarshal(body, &keys); err != nil {
		return fmt.Errorf("/v1/audit/keys: %w", err)
	}
	contents := &audit.Contents{
		Site: first.Site, Camera: first.Camera, Source: cl.base, Made: time.Now(), Tolerance: audit.DefaultTolerance,
		Log: log.Bytes(), Checkpoint: cp, Evidence: evidence, Notices: notices,
	}
	if contents.Device, err = consent.ParsePublicKey([]byte(keys.Device)); err != nil {
		return fmt.Errorf("/v1/audit/keys: device: %w", err)
	}
	if contents.Issuers, err = parsePEMs(keys.Issuers); err != nil {
		return fmt.Errorf("/v1/audit/keys: issuers: %w", err)
	}
	if contents.Operators, err = parsePEMs(keys.Operators); err != nil {
		return fmt.Errorf("/v1/audit/keys: operators: %w", err)
	}
	if lastStarted != nil {
		// The settings the box signed last, stated for the reader.
		if contents.Settings, err = audit.StartedSettings(lastStarted); err != nil {
			return fmt.Errorf("agent.started at seq %d: %w", lastStarted.Seq, err)
		}
	}
	m, err := audit.Write(dir, contents)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%s: %d events (seq 0 to %d), %d pieces of evidence, %d notices, %d files\n",
		dir, last+1, last, len(evidence), len(notices), len(m.Files)+1)
	return nil
}

func parsePEMs(pems map[string]string) (map[string]ed25519.PublicKey, error) {
	keys := make(map[string]ed25519.PublicKey, len(pems))
	for kid, p := range pems {
		k, err := consent.ParsePublicKey([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", kid, err)
		}
		keys[kid] = k
	}
	return keys, nil
}

func (c *AuditCommand) verify(args []string) error {
	fs := newFlagSet("audit verify", auditVerifyUsage, c.Stderr)
	pubPath := fs.String("pubkey", "", "")
	cpPath := fs.String("checkpoint", "", "")
	var witnessKeys stringList
	fs.Var(&witnessKeys, "witness", "")
	quorum := fs.Int("quorum", 0, "")
	if err := parseFlagsArgs(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "pubkey"); err != nil {
		return err
	}
	witnesses, err := witnessVerifiers(fs, witnessKeys, *quorum, *cpPath != "")
	if err != nil {
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
	if len(witnesses) > 0 {
		// VerifyLog checked the checkpoint's origin against the log's.
		origin, _, _ := strings.Cut(string(checkpoint), "\n")
		logVerifier, err := store.NewCheckpointVerifier(origin, pub)
		if err != nil {
			return err
		}
		cos, err := witness.VerifyCosigned(checkpoint, logVerifier, witnesses, *quorum)
		if err != nil {
			return fmt.Errorf("%s: %w", *cpPath, err)
		}
		fmt.Fprintf(w, "checkpoint %s\n", cos.Summary())
	}
	fmt.Fprintln(w, "OK")
	return nil
}

// witnessVerifiers reads the --witness keys of audit verify or check and
// checks --quorum against them.
func witnessVerifiers(fs *flag.FlagSet, keys []string, quorum int, haveCheckpoint bool) ([]note.Verifier, error) {
	quorumSet := isSet(fs, "quorum")
	switch {
	case len(keys) == 0 && quorumSet:
		return nil, usagef("%s: --quorum needs --witness", fs.Name())
	case len(keys) == 0:
		return nil, nil
	case !haveCheckpoint:
		return nil, usagef("%s: --witness needs --checkpoint: the checkpoints inside the log carry no cosignatures, the one the agent publishes does", fs.Name())
	case quorumSet && (quorum < 1 || quorum > len(keys)):
		return nil, usagef("%s: --quorum %d: must be between 1 and the %d witnesses given", fs.Name(), quorum, len(keys))
	}
	var vs []note.Verifier
	for i, k := range keys {
		v, err := witness.NewVerifier(k)
		if err != nil {
			return nil, usagef("%s: --witness %q: %v", fs.Name(), k, err)
		}
		if slices.ContainsFunc(vs, func(u note.Verifier) bool { return u.Name() == v.Name() && u.KeyHash() == v.KeyHash() }) {
			return nil, usagef("%s: --witness %q is given twice (witness %d)", fs.Name(), k, i+1)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// isSet reports whether a flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
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
	var witnessKeys stringList
	fs.Var(&witnessKeys, "witness", "")
	quorum := fs.Int("quorum", 0, "")
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
	witnesses, err := witnessVerifiers(fs, witnessKeys, *quorum, true)
	if err != nil {
		return err
	}
	opt := audit.Options{Tolerance: *tolerance, Witnesses: witnesses, Quorum: *quorum}
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
