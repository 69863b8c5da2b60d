package witness

import (
	"errors"
	"fmt"
)

// Kinds of Error, checked with errors.Is.
var (
	// ErrDown: the witness could not be reached, timed out, failed (5xx) or
	// asked to be left alone for now (429). Trying later may work.
	ErrDown = errors.New("down")
	// ErrRefused: the witness refused the checkpoint for a reason other
	// than its history: it does not know the log (404), does not trust the
	// box's key for it (403), or found the request malformed (400). Its
	// configuration, or the box's, must change.
	ErrRefused = errors.New("refused")
	// ErrFork: the witness cosigned a checkpoint the log does not extend: the
	// consistency proof from that checkpoint does not verify (422), the roots
	// differ at the same size, the witness has seen a larger tree than the
	// log holds, or another copy of the log is submitting checkpoints. The
	// log was rolled back, replaced or forked: an alarm, never a glitch.
	ErrFork = errors.New("fork")
	// ErrBadResponse: the witness answered outside the protocol, or with no
	// valid cosignature by its configured key.
	ErrBadResponse = errors.New("bad response")
	// ErrLocal: the client could not make the request (the log could not
	// give a consistency proof).
	ErrLocal = errors.New("local error")
)

// Error is why one witness did not cosign a checkpoint.
type Error struct {
	// Witness is the witness's name.
	Witness string
	// Kind is one of the Err… values above.
	Kind error
	// Status is the HTTP status of the witness's answer, 0 if none.
	Status int
	// Msg says what happened.
	Msg string
	// Err is the underlying error, if any (a network error).
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("witness %s: %v: %s", e.Witness, e.Kind, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Reason names the kind of a witness error as audit events and metrics do:
// "down", "refused", "fork", "bad-response", or "error" for any other error;
// "" for nil.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDown):
		return "down"
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, ErrFork):
		return "fork"
	case errors.Is(err, ErrBadResponse):
		return "bad-response"
	default:
		return "error"
	}
}
