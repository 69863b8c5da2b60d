package main

import (
	"bufio"
	"bytes"
	"context"
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

	consentcam audit pull --url URL --token-file F [--after SEQ] [--checkpoint FILE]
	consentcam audit verify --pubkey FILE [--checkpoint FILE [--witness KEY ... [--quorum N]]] [FILE]

pull prints the audit log of an agent as JSON Lines; verify checks one.
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

// Run runs audit pull or audit verify.
func (c *AuditCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, auditUsage)
		return usagef("audit needs a subcommand: pull or verify")
	}
	switch args[0] {
	case "pull":
		return c.pull(ctx, args[1:])
	case "verify":
		return c.verify(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stderr, auditUsage)
		return nil
	default:
		return usagef("unknown audit subcommand %q (pull or verify)", args[0])
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
	var witnessKeys stringList
	fs.Var(&witnessKeys, "witness", "")
	quorum := fs.Int("quorum", 0, "")
	if err := parseFlagsArgs(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "pubkey"); err != nil {
		return err
	}
	witnesses, err := witnessVerifiers(witnessKeys, *quorum, *cpPath != "", isSet(fs, "quorum"))
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
		var by []string
		for _, c := range cos.Witnesses {
			by = append(by, fmt.Sprintf("%s at %s", c.Name, c.Time.Format(time.RFC3339)))
		}
		fmt.Fprintf(w, "checkpoint cosigned by %d of %d trusted witnesses (%s)\n", len(cos.Witnesses), len(witnesses), strings.Join(by, ", "))
	}
	fmt.Fprintln(w, "OK")
	return nil
}

// witnessVerifiers reads the --witness keys of audit verify and checks
// --quorum against them.
func witnessVerifiers(keys []string, quorum int, haveCheckpoint, quorumSet bool) ([]note.Verifier, error) {
	switch {
	case len(keys) == 0 && quorumSet:
		return nil, usagef("audit verify: --quorum needs --witness")
	case len(keys) == 0:
		return nil, nil
	case !haveCheckpoint:
		return nil, usagef("audit verify: --witness needs --checkpoint: the checkpoints inside the log carry no cosignatures, the one the agent publishes does")
	case quorumSet && (quorum < 1 || quorum > len(keys)):
		return nil, usagef("audit verify: --quorum %d: must be between 1 and the %d witnesses given", quorum, len(keys))
	}
	var vs []note.Verifier
	for i, k := range keys {
		v, err := witness.NewVerifier(k)
		if err != nil {
			return nil, usagef("audit verify: --witness %q: %v", k, err)
		}
		if slices.ContainsFunc(vs, func(u note.Verifier) bool { return u.Name() == v.Name() && u.KeyHash() == v.KeyHash() }) {
			return nil, usagef("audit verify: --witness %q is given twice (witness %d)", k, i+1)
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
