package store

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/transparency-dev/merkle/compact"
)

// Kinds of LogError, checked with errors.Is.
var (
	// ErrLogMalformed: a line is not an event as consentcam writes it.
	ErrLogMalformed = errors.New("malformed event")
	// ErrLogSequence: a seq is missing, repeated or out of order.
	ErrLogSequence = errors.New("broken sequence")
	// ErrLogCheckpoint: a checkpoint is malformed, wrongly signed, or for
	// another log.
	ErrLogCheckpoint = errors.New("bad checkpoint")
	// ErrLogRoot: the events do not hash to the root a checkpoint signed.
	ErrLogRoot = errors.New("root mismatch")
	// ErrLogTruncated: the log has fewer events than the checkpoint covers.
	ErrLogTruncated = errors.New("log shorter than checkpoint")
)

// LogError says where and why VerifyLog refused a log.
type LogError struct {
	// Line is the 1-based line of the log, or 0 for the checkpoint given
	// apart from the log.
	Line int
	// Seq is the seq expected at that line (the number of events before it).
	Seq uint64
	// Kind is one of the ErrLog… values.
	Kind error
	// Msg says what exactly failed.
	Msg string
}

func (e *LogError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("checkpoint: %v: %s", e.Kind, e.Msg)
	}
	return fmt.Sprintf("line %d (seq %d): %v: %s", e.Line, e.Seq, e.Kind, e.Msg)
}

func (e *LogError) Unwrap() error { return e.Kind }

// LogReport is what VerifyLog found in a log that verifies.
type LogReport struct {
	// Events is the number of events; LastSeq the last one's seq (when
	// Events > 0).
	Events  uint64
	LastSeq uint64
	// Root is the Merkle root hash of all the events.
	Root []byte
	// Checkpoints lists the tree sizes of the checkpoints verified, those
	// carried by the log then the one given, in that order.
	Checkpoints []uint64
	// Uncovered counts the trailing events that no verified checkpoint
	// signs. A log verifies even when nothing signs it; callers decide
	// whether that is enough.
	Uncovered uint64
}

// maxLine bounds a log line.
const maxLine = 1 << 20

// VerifyLog checks an audit log given as JSON Lines (the events' stored
// bytes, one per line, seq from 0): each line is an event exactly as
// consentcam writes it, the seqs run from 0 without gap or repeat, all events
// are of one site and camera, and every checkpoint event's note is signed by
// pub for the log's origin and states the size (its own seq) and root of the
// events before it. When checkpoint is not nil, it must be a note signed by
// pub for the log's origin whose root is that of the first size events, and
// the log must have at least that many. Every failure of the log or the
// checkpoint is a *LogError; other errors are of the reader or of pub.
func VerifyLog(events io.Reader, checkpoint []byte, pub ed25519.PublicKey) (*LogReport, error) {
	return VerifyLogEach(events, checkpoint, pub, nil)
}

// VerifyLogEach is VerifyLog that also hands each event, once its line has
// passed the checks that line alone allows, to fn (when not nil), in seq
// order, so that a caller can check more without decoding the log again. The
// events are proven only when VerifyLogEach returns no error. An error of fn
// stops the verification and is returned as it is.
func VerifyLogEach(events io.Reader, checkpoint []byte, pub ed25519.PublicKey, fn func(*Event) error) (*LogReport, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify log: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	v := logVerifier{pub: pub, tree: rangeFactory.NewEmptyRange(0)}
	if checkpoint != nil {
		c, err := openCheckpoint(checkpoint, pub)
		if err != nil {
			return nil, &LogError{Kind: ErrLogCheckpoint, Msg: err.Error()}
		}
		v.given = c
		if err := v.checkGiven(); err != nil {
			return nil, err
		}
	}

	sc := bufio.NewScanner(events)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		ev, err := v.add(line, sc.Bytes())
		if err != nil {
			return nil, err
		}
		if fn != nil {
			if err := fn(ev); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, v.errorf(line+1, ErrLogMalformed, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("verify log: read: %w", err)
	}
	return v.report()
}

type logVerifier struct {
	pub         ed25519.PublicKey
	tree        *compact.Range
	first       *Event            // the first event, which fixes site and camera
	given       *parsedCheckpoint // the checkpoint given apart, if any
	checkpoints []uint64          // sizes verified
}

func (v *logVerifier) errorf(line int, kind error, format string, args ...any) *LogError {
	return &LogError{Line: line, Seq: v.tree.End(), Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// add verifies the event on a line, appends it to the tree and returns it.
func (v *logVerifier) add(line int, b []byte) (*Event, error) {
	b = bytes.TrimSuffix(b, []byte("\r"))
	seq := v.tree.End()
	ev, err := parseEvent(b)
	if err != nil {
		return nil, v.errorf(line, ErrLogMalformed, "%v", err)
	}
	switch {
	case ev.Seq < seq:
		return nil, v.errorf(line, ErrLogSequence, "seq %d where %d was expected: repeated or out of order", ev.Seq, seq)
	case ev.Seq > seq:
		return nil, v.errorf(line, ErrLogSequence, "seq %d where %d was expected: %d missing", ev.Seq, seq, ev.Seq-seq)
	}
	if v.first == nil {
		v.first = ev
		if v.given != nil && v.given.origin != v.origin() {
			return nil, &LogError{Kind: ErrLogCheckpoint, Msg: fmt.Sprintf("origin %q, but the log is of %q", v.given.origin, v.origin())}
		}
	} else if ev.Site != v.first.Site || ev.Camera != v.first.Camera {
		return nil, v.errorf(line, ErrLogMalformed, "site/camera %s/%s, but the log is of %s/%s", ev.Site, ev.Camera, v.first.Site, v.first.Camera)
	}
	if ev.Type == EventCheckpoint {
		if err := v.checkEmbedded(line, ev); err != nil {
			return nil, err
		}
	}
	if err := v.tree.Append(hasher.HashLeaf(b), nil); err != nil {
		return nil, fmt.Errorf("verify log: %w", err)
	}
	return ev, v.checkGiven()
}

func (v *logVerifier) origin() string { return Origin(v.first.Site, v.first.Camera) }

// checkEmbedded verifies a checkpoint event against the events before it.
func (v *logVerifier) checkEmbedded(line int, ev *Event) error {
	size, ok1 := ev.Detail["size"].(json.Number)
	root64, ok2 := ev.Detail["root"].(string)
	msg, ok3 := ev.Detail["note"].(string)
	if !ok1 || !ok2 || !ok3 || len(ev.Detail) != 3 {
		return v.errorf(line, ErrLogCheckpoint, "detail must hold exactly size, root and note")
	}
	c, err := openCheckpoint([]byte(msg), v.pub)
	if err != nil {
		return v.errorf(line, ErrLogCheckpoint, "note: %v", err)
	}
	root, err := rootOf(v.tree)
	if err != nil {
		return fmt.Errorf("verify log: %w", err)
	}
	switch {
	case c.origin != v.origin():
		return v.errorf(line, ErrLogCheckpoint, "note origin %q, want %q", c.origin, v.origin())
	case size.String() != strconv.FormatUint(c.size, 10) || root64 != base64.StdEncoding.EncodeToString(c.root):
		return v.errorf(line, ErrLogCheckpoint, "detail size/root differ from the note's")
	case c.size != ev.Seq:
		return v.errorf(line, ErrLogCheckpoint, "note signs size %d, want %d (the events before it)", c.size, ev.Seq)
	case !bytes.Equal(c.root, root):
		return v.errorf(line, ErrLogRoot, "the %d events before it hash to %s, the note signs %s",
			c.size, base64.StdEncoding.EncodeToString(root), base64.StdEncoding.EncodeToString(c.root))
	}
	v.checkpoints = append(v.checkpoints, c.size)
	return nil
}

// checkGiven verifies the given checkpoint once the tree reaches its size.
func (v *logVerifier) checkGiven() error {
	if v.given == nil || v.tree.End() != v.given.size {
		return nil
	}
	root, err := rootOf(v.tree)
	if err != nil {
		return fmt.Errorf("verify log: %w", err)
	}
	if !bytes.Equal(root, v.given.root) {
		return &LogError{Seq: v.given.size, Kind: ErrLogRoot, Msg: fmt.Sprintf("the first %d events hash to %s, the checkpoint signs %s",
			v.given.size, base64.StdEncoding.EncodeToString(root), base64.StdEncoding.EncodeToString(v.given.root))}
	}
	return nil
}

func (v *logVerifier) report() (*LogReport, error) {
	n := v.tree.End()
	if v.given != nil {
		if n < v.given.size {
			return nil, &LogError{Seq: n, Kind: ErrLogTruncated, Msg: fmt.Sprintf("the log has %d events, the checkpoint signs %d", n, v.given.size)}
		}
		v.checkpoints = append(v.checkpoints, v.given.size)
	}
	root, err := rootOf(v.tree)
	if err != nil {
		return nil, fmt.Errorf("verify log: %w", err)
	}
	r := &LogReport{Events: n, Root: root, Checkpoints: v.checkpoints, Uncovered: n}
	if n > 0 {
		r.LastSeq = n - 1
	}
	if len(v.checkpoints) > 0 {
		r.Uncovered = n - slices.Max(v.checkpoints)
	}
	return r, nil
}

// parseEvent decodes a log line and checks it is an event exactly as Append
// writes it: the fields of Event and nothing else, in its order and encoding,
// a known type, a site and camera, a time in UTC.
func parseEvent(b []byte) (*Event, error) {
	if len(b) == 0 {
		return nil, errors.New("empty line")
	}
	ev, err := decodeEvent(b)
	if err != nil {
		return nil, fmt.Errorf("not an event: %v", err)
	}
	switch {
	case !slices.Contains(eventTypes, ev.Type):
		return nil, fmt.Errorf("unknown type %q", ev.Type)
	case !namePattern.MatchString(ev.Site) || !namePattern.MatchString(ev.Camera):
		return nil, fmt.Errorf("bad site/camera %q/%q", ev.Site, ev.Camera)
	case ev.Time.IsZero():
		return nil, errors.New("no time")
	}
	if _, offset := ev.Time.Zone(); offset != 0 {
		return nil, errors.New("time not in UTC")
	}
	canonical, err := json.Marshal(ev)
	if err != nil || !bytes.Equal(canonical, b) {
		return nil, errors.New("not in the form consentcam writes (fields, order, escaping or spacing differ)")
	}
	return ev, nil
}
