package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Config is one witness, as the configuration's audit.witnesses lists it.
type Config struct {
	// Name names the witness in logs, audit events and metrics (default:
	// the key's name).
	Name string `yaml:"name"`
	// URL is the witness's submission prefix: the client POSTs to
	// URL/add-checkpoint.
	URL string `yaml:"url"`
	// Key is the witness's note verifier key (vkey), as its operator
	// publishes it.
	Key string `yaml:"key"`
}

// ConfigError is a mistake in the witnesses' configuration: Field ("name",
// "url" or "key") of the witness at Index, or the quorum (Field "quorum",
// Index -1).
type ConfigError struct {
	Index int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("witness %s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("witness %d: %s: %s", e.Index, e.Field, e.Msg)
}

// NewVerifier returns the verifier of a witness's cosignatures from its
// verifier key (vkey): an Ed25519 cosignature/v1 key (type 0x04; a plain
// Ed25519 note key, type 0x01, is read as one) or an ML-DSA-44 one (0x06).
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("not a witness verifier key (name+hash+base64, as the witness's operator publishes it): %w", err)
	}
	return v, nil
}

// Check validates the witnesses and the quorum (0 meaning all of them) and
// returns the witnesses' verifiers, in order, and the quorum.
func Check(witnesses []Config, quorum int) ([]note.Verifier, int, error) {
	var vs []note.Verifier
	names := map[string]bool{}
	for i, w := range witnesses {
		v, err := NewVerifier(w.Key)
		if err != nil {
			return nil, 0, &ConfigError{Index: i, Field: "key", Msg: err.Error()}
		}
		for j, u := range vs {
			if u.Name() == v.Name() && u.KeyHash() == v.KeyHash() {
				return nil, 0, &ConfigError{Index: i, Field: "key", Msg: fmt.Sprintf("the same key as witness %d: a witness counts once", j)}
			}
		}
		name := nameOf(w, v)
		if name == "" || len(name) > 128 || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			return nil, 0, &ConfigError{Index: i, Field: "name", Msg: fmt.Sprintf("must be 1 to 128 printable characters without spaces (got %q)", name)}
		}
		if names[name] {
			return nil, 0, &ConfigError{Index: i, Field: "name", Msg: fmt.Sprintf("%q names two witnesses", name)}
		}
		names[name] = true
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, 0, &ConfigError{Index: i, Field: "url", Msg: fmt.Sprintf("must be the witness's http:// or https:// submission prefix (got %q)", w.URL)}
		}
		vs = append(vs, v)
	}
	switch {
	case quorum < 0 || quorum > len(witnesses):
		return nil, 0, &ConfigError{Index: -1, Field: "quorum", Msg: fmt.Sprintf("must be between 1 and the number of witnesses, %d, or 0 for all (got %d)", len(witnesses), quorum)}
	case quorum == 0:
		quorum = len(witnesses)
	}
	return vs, quorum, nil
}

func nameOf(w Config, v note.Verifier) string {
	if w.Name != "" {
		return w.Name
	}
	return v.Name()
}

// Prover gives the log's consistency proofs; *store.DB is one.
type Prover interface {
	// ConsistencyProof returns the RFC 6962 proof that the tree of size
	// from is a prefix of the tree of size to.
	ConsistencyProof(from, to uint64) ([][]byte, error)
}

// Client pushes a log's checkpoints to its witnesses. Create it with
// NewClient; its methods are safe for concurrent use (pushes run one at a
// time).
type Client struct {
	// HTTP makes the add-checkpoint requests; its Timeout bounds each
	// (default 10 s).
	HTTP *http.Client
	// MaxSkip bounds the backoff: after n failures in a row a witness is
	// left out of the next min(2^(n-1) - 1, MaxSkip) pushes (default 15: a
	// witness that stays down is asked every 16th checkpoint).
	MaxSkip int

	logVerifier note.Verifier
	origin      string
	proofs      Prover
	quorum      int

	mu        sync.Mutex
	witnesses []*peer
}

// peer is a witness and what this client knows of it.
type peer struct {
	name     string
	endpoint string
	verifier note.Verifier

	size     uint64 // the size it last cosigned, as far as known (0: unknown)
	failures int    // in a row
	skip     int    // pushes left to sit out
	lastErr  *Error // the latest failure, nil after a cosignature
}

// NewClient returns a client pushing the checkpoints that logVerifier
// verifies (its key name is the log's origin) to the witnesses, with the
// consistency proofs of proofs. quorum is how many cosignatures a
// checkpoint needs (0: all). Configuration mistakes are *ConfigError.
func NewClient(logVerifier note.Verifier, proofs Prover, witnesses []Config, quorum int) (*Client, error) {
	if len(witnesses) == 0 {
		return nil, errors.New("witness client: no witnesses")
	}
	vs, quorum, err := Check(witnesses, quorum)
	if err != nil {
		return nil, err
	}
	c := &Client{
		HTTP:        &http.Client{Timeout: 10 * time.Second},
		MaxSkip:     15,
		logVerifier: logVerifier,
		origin:      logVerifier.Name(),
		proofs:      proofs,
		quorum:      quorum,
	}
	for i, w := range witnesses {
		c.witnesses = append(c.witnesses, &peer{
			name:     nameOf(w, vs[i]),
			endpoint: strings.TrimSuffix(w.URL, "/") + "/add-checkpoint",
			verifier: vs[i],
		})
	}
	return c, nil
}

// Quorum is how many cosignatures a checkpoint needs.
func (c *Client) Quorum() int { return c.quorum }

// Sizes returns, by witness name, the size of the latest checkpoint each
// witness cosigned, for those whose size this client knows.
func (c *Client) Sizes() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]uint64{}
	for _, w := range c.witnesses {
		if w.size > 0 {
			m[w.name] = w.size
		}
	}
	return m
}

// SetSizes tells the client the sizes witnesses last cosigned (Sizes of an
// earlier run), saving a round trip to each on the next push. A wrong size
// costs one more round trip (the witness answers 409 with its own); names
// not configured are ignored.
func (c *Client) SetSizes(sizes map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.witnesses {
		if s, ok := sizes[w.name]; ok {
			w.size = s
		}
	}
}

// Result is the outcome of pushing one checkpoint.
type Result struct {
	Origin string
	Size   uint64
	// Note is the checkpoint signed by the log, followed by the
	// cosignatures of the witnesses that cosigned it this time, in the
	// order of the configuration.
	Note []byte
	// Statuses has one entry per witness, in the order of the configuration.
	Statuses []Status
	// Quorum is how many cosignatures the checkpoint needs.
	Quorum int
}

// Cosigned is how many witnesses cosigned.
func (r *Result) Cosigned() int {
	n := 0
	for _, s := range r.Statuses {
		if s.Err == nil {
			n++
		}
	}
	return n
}

// QuorumMet reports whether enough witnesses cosigned.
func (r *Result) QuorumMet() bool { return r.Cosigned() >= r.Quorum }

// Status is what one witness did with a checkpoint.
type Status struct {
	Witness string
	// Err is nil when the witness cosigned, else an *Error.
	Err error
	// Skipped: the witness was not asked this time, backing off after
	// failures (Err is the latest).
	Skipped bool
	// Changed: the outcome differs from this witness's previous one: it
	// failed after cosigning (or at its first push), failed for another
	// reason than last time, or cosigned after failing (a recovery). The
	// caller records these transitions, not every repeat.
	Changed bool
	// Failures is how many pushes in a row failed, this one included; on
	// a recovery, how many had failed before it.
	Failures int
	// Old is the size the last request named as the one the witness had
	// cosigned before ("old N"); Requests how many add-checkpoint
	// requests were made (2 after a 409, 0 when skipped).
	Old      uint64
	Requests int
	// Time is the cosignature's timestamp, when the witness cosigned.
	Time time.Time

	sigs []note.Signature
}

// Witness pushes a checkpoint note, signed by the log's key, to every
// witness at once, and returns it with the cosignatures obtained. A witness
// that fails does not fail the call: its Status says why. The error is for
// a checkpoint that is not the log's.
func (c *Client) Witness(ctx context.Context, checkpoint []byte) (*Result, error) {
	cp, _, n, err := log.ParseCheckpoint(checkpoint, c.origin, c.logVerifier)
	if err != nil {
		return nil, fmt.Errorf("witness: checkpoint of %s: %w", c.origin, err)
	}
	// Only the log's own signature goes to the witnesses and into the result.
	var sigs []note.Signature
	for _, s := range n.Sigs {
		if s.Name == c.logVerifier.Name() && s.Hash == c.logVerifier.KeyHash() {
			sigs = append(sigs, s)
		}
	}
	signed, err := note.Sign(&note.Note{Text: n.Text, Sigs: sigs})
	if err != nil {
		return nil, fmt.Errorf("witness: checkpoint: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	res := &Result{Origin: cp.Origin, Size: cp.Size, Quorum: c.quorum, Statuses: make([]Status, len(c.witnesses))}
	var wg sync.WaitGroup
	for i, w := range c.witnesses {
		wg.Go(func() { res.Statuses[i] = c.push(ctx, w, cp, n.Text, signed) })
	}
	wg.Wait()
	for _, s := range res.Statuses {
		sigs = append(sigs, s.sigs...)
	}
	if res.Note, err = note.Sign(&note.Note{Text: n.Text, Sigs: sigs}); err != nil {
		return nil, fmt.Errorf("witness: cosigned checkpoint: %w", err)
	}
	return res, nil
}

// push asks one witness to cosign and updates what the client knows of it.
func (c *Client) push(ctx context.Context, w *peer, cp *log.Checkpoint, text string, signed []byte) Status {
	st := Status{Witness: w.name}
	if w.skip > 0 {
		w.skip--
		st.Err, st.Skipped, st.Failures = w.lastErr, true, w.failures
		return st
	}
	r := c.add(ctx, w, cp, text, signed)
	st.Old, st.Requests = r.old, r.requests
	if r.err != nil {
		st.Changed = w.lastErr == nil || w.lastErr.Kind != r.err.Kind
		w.failures++
		w.skip = c.MaxSkip
		if w.failures <= 31 {
			w.skip = min(1<<(w.failures-1)-1, c.MaxSkip)
		}
		w.lastErr = r.err
		st.Err, st.Failures = r.err, w.failures
		return st
	}
	st.Changed, st.Failures = w.lastErr != nil, w.failures
	w.failures, w.skip, w.lastErr = 0, 0, nil
	w.size = cp.Size
	st.sigs = r.sigs
	if t, err := fnote.CoSigV1Timestamp(r.sigs[0]); err == nil {
		st.Time = t.UTC()
	}
	return st
}

type addResult struct {
	sigs     []note.Signature
	old      uint64
	requests int
	err      *Error
}

// add runs the add-checkpoint exchange with one witness: a request from the
// size it last cosigned (0 when unknown) and, on 409 Conflict, one more from
// the size it answers.
func (c *Client) add(ctx context.Context, w *peer, cp *log.Checkpoint, text string, signed []byte) addResult {
	fail := func(kind error, status int, err error, format string, args ...any) *Error {
		return &Error{Witness: w.name, Kind: kind, Status: status, Msg: fmt.Sprintf(format, args...), Err: err}
	}
	r := addResult{old: w.size}
	for {
		if r.old > cp.Size {
			r.err = fail(ErrFork, 0, nil, "it cosigned a tree of %d events, the log has %d: the log was rolled back or replaced", r.old, cp.Size)
			return r
		}
		var proof [][]byte
		if r.old > 0 && r.old < cp.Size {
			var err error
			if proof, err = c.proofs.ConsistencyProof(r.old, cp.Size); err != nil {
				r.err = fail(ErrLocal, 0, err, "no consistency proof from %d to %d", r.old, cp.Size)
				return r
			}
		}
		r.requests++
		status, ctype, body, err := c.post(ctx, w.endpoint, r.old, proof, signed)
		if err != nil {
			r.err = fail(ErrDown, 0, err, "POST %s", w.endpoint)
			return r
		}
		switch {
		case status == http.StatusOK:
			r.sigs, r.err = verifyAnswer(w, text, body)
			return r
		case status == http.StatusConflict:
			size, err := parseSize(ctype, body)
			switch {
			case err != nil:
				r.err = fail(ErrBadResponse, status, err, "409 Conflict without its tree size")
			case size > cp.Size:
				r.err = fail(ErrFork, status, nil, "it cosigned a tree of %d events, the log has %d: the log was rolled back or replaced", size, cp.Size)
			case size == r.old && r.old == cp.Size:
				r.err = fail(ErrFork, status, nil, "it cosigned another tree of %d events: the roots differ", size)
			case size == r.old:
				r.err = fail(ErrBadResponse, status, nil, "409 Conflict naming the size asked, %d", size)
			case r.requests > 1:
				r.err = fail(ErrFork, status, nil, "its tree moved from %d to %d events between two requests: another copy of this log is submitting checkpoints", r.old, size)
			}
			if r.err != nil {
				return r
			}
			w.size, r.old = size, size
		case status == http.StatusUnprocessableEntity:
			r.err = fail(ErrFork, status, nil, "the log of %d events is not an extension of the tree of %d events it cosigned (the consistency proof does not verify, or the roots differ)", cp.Size, r.old)
			return r
		case status == http.StatusForbidden:
			r.err = fail(ErrRefused, status, nil, "it does not trust the key that signed the checkpoint for %s", cp.Origin)
			return r
		case status == http.StatusNotFound:
			r.err = fail(ErrRefused, status, nil, "it does not know the log %s", cp.Origin)
			return r
		case status == http.StatusBadRequest:
			r.err = fail(ErrRefused, status, nil, "it found the request malformed: %s", snippet(body))
			return r
		case status == http.StatusTooManyRequests || status >= 500:
			r.err = fail(ErrDown, status, nil, "%d %s", status, http.StatusText(status))
			return r
		default:
			r.err = fail(ErrBadResponse, status, nil, "unexpected %d %s", status, http.StatusText(status))
			return r
		}
	}
}

// maxAnswer bounds a witness's answer.
const maxAnswer = 64 << 10

// post sends one add-checkpoint request (C2SP tlog-witness): the old size
// line, the proof lines, an empty line, the checkpoint.
func (c *Client) post(ctx context.Context, endpoint string, old uint64, proof [][]byte, signed []byte) (status int, ctype string, body []byte, err error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &b)
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, nil
}

// parseSize reads the tree size of a 409 answer: decimal, then a newline.
func parseSize(ctype string, body []byte) (uint64, error) {
	if ctype != "" && !strings.HasPrefix(ctype, "text/x.tlog.size") {
		return 0, fmt.Errorf("content type %q, want text/x.tlog.size", ctype)
	}
	s, ok := strings.CutSuffix(string(body), "\n")
	n, err := strconv.ParseUint(s, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("body %s is not a tree size", snippet(body))
	}
	return n, nil
}

// verifyAnswer checks the signature lines a witness answered with against
// its key and returns those that verify (at least one).
func verifyAnswer(w *peer, text string, body []byte) ([]note.Signature, *Error) {
	bad := func(err error, msg string) *Error {
		return &Error{Witness: w.name, Kind: ErrBadResponse, Status: http.StatusOK, Msg: msg, Err: err}
	}
	n, err := note.Open([]byte(text+"\n"+string(body)), note.VerifierList(w.verifier))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, bad(nil, fmt.Sprintf("no cosignature by its key %s+%08x in the answer", w.verifier.Name(), w.verifier.KeyHash()))
	case errors.As(err, &invalid):
		return nil, bad(nil, "its cosignature does not verify with its key")
	case err != nil:
		return nil, bad(err, fmt.Sprintf("the answer is not note signature lines: %s", snippet(body)))
	}
	return n.Sigs, nil
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	if len(b) > 80 {
		return strconv.Quote(string(b[:80])) + "…"
	}
	return strconv.Quote(string(b))
}
