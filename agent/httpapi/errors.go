package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// Reasons of the JSON errors besides the refusal reasons of consent tokens
// (docs/SPEC.md, "HTTP"; docs/KIOSK.md).
const (
	ReasonBadRequest        = "bad-request"
	ReasonUnauthorized      = "unauthorized"
	ReasonForbidden         = "forbidden"
	ReasonNotFound          = "not-found"
	ReasonTooLarge          = "too-large"
	ReasonPurposeNotAllowed = "purpose-not-allowed"
	ReasonNoCheckpoint      = "no-checkpoint"
	ReasonQueueFull         = agent.ReasonQueueFull
	ReasonStopping          = "stopping"
	ReasonUnavailable       = "unavailable"
	ReasonInternal          = "internal"
	ReasonRateLimited       = "rate-limited" // 429: too many requests from this address, or with this code
	ReasonUnknownHost       = "unknown-host" // 421: a Host the box is not known by (DNS rebinding)
	ReasonCrossOrigin       = "cross-origin" // 403: a page of another site
	ReasonNoPurpose         = "no-purpose"   // kiosk: agreeing to nothing
	ReasonBadCode           = "bad-code"     // kiosk: not a withdrawal code of this box
)

// Error is an answer other than success: its status, its reason and a
// message for the client. Handlers return one for what they refuse
// themselves; Error maps the core's errors to one.
type Error struct {
	Status int
	Reason string
	Msg    string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Msg }

// badRequest is a 400 bad-request with a message.
func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON error of docs/SPEC.md.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// errorTable maps the errors of the core and the store to answers. The
// first entry err matches decides. A failure of the box (failure) is
// logged, once, and answered with the sentinel's message; otherwise the
// message is err's own (these never hold a token, a key or an image).
var errorTable = []struct {
	is      error
	status  int
	reason  string
	failure bool
}{
	{agent.ErrUnavailable, http.StatusServiceUnavailable, ReasonUnavailable, true},
	{agent.ErrQueueFull, http.StatusServiceUnavailable, ReasonQueueFull, false},
	{agent.ErrStopped, http.StatusServiceUnavailable, ReasonStopping, false},
	{store.ErrNotFound, http.StatusNotFound, ReasonNotFound, false},
	{store.ErrPurpose, http.StatusForbidden, ReasonPurposeNotAllowed, false},
	{context.Canceled, http.StatusServiceUnavailable, ReasonStopping, false},
}

// refusalStatus is the status of a refused consent token or revoke command
// by reason; any other refusal is 403.
var refusalStatus = map[consent.Reason]int{
	consent.ReasonTooLarge:  http.StatusRequestEntityTooLarge,
	consent.ReasonMalformed: http.StatusBadRequest,
	consent.ReasonReplayed:  http.StatusConflict,
}

// Error answers a request with the JSON error for err. An error that is
// neither an *Error, a refusal nor in the table is a failure of the box: it
// is logged, once, here, and answered 500 with a generic message, for the
// client has no use for the inside of the box.
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	var herr *Error
	var cerr *consent.Error
	switch {
	case errors.As(err, &herr):
	case errors.As(err, &cerr):
		status, ok := refusalStatus[cerr.Reason]
		if !ok {
			status = http.StatusForbidden
		}
		herr = &Error{Status: status, Reason: string(cerr.Reason), Msg: cerr.Error()}
	default:
		for _, e := range errorTable {
			if !errors.Is(err, e.is) {
				continue
			}
			msg := err.Error()
			if e.failure {
				s.logFailure(r, err)
				msg = e.is.Error()
			}
			herr = &Error{Status: e.status, Reason: e.reason, Msg: msg}
			break
		}
	}
	if herr == nil {
		s.logFailure(r, err)
		herr = &Error{Status: http.StatusInternalServerError, Reason: ReasonInternal,
			Msg: "the box failed to do this; its log says why"}
	}
	writeJSON(w, herr.Status, errorBody{Error: herr.Msg, Reason: herr.Reason})
}

// logFailure logs a failure of the box while answering r.
func (s *Server) logFailure(r *http.Request, err error) {
	s.Logger.Error("http request failed", logKeyMethod, r.Method, logKeyPath, r.URL.Path, logKeyError, err)
}
