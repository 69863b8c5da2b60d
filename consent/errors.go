package consent

import "errors"

// Reason is why a consent token or a revoke command was refused: one of the
// exact strings of the product contract, used in audit events and logs.
type Reason string

// The refusal reasons of docs/SPEC.md ("Consent token").
const (
	ReasonTooLarge         Reason = "too-large"         // over MaxTokenSize bytes; nothing was parsed
	ReasonMalformed        Reason = "malformed"         // not a compact JWS with JSON header and claims of the right types
	ReasonWrongType        Reason = "wrong-type"        // typ is not consent+jwt (or revoke+jwt for a revoke)
	ReasonBadSignature     Reason = "bad-signature"     // alg is not EdDSA, or the signature does not verify
	ReasonUnknownKey       Reason = "unknown-key"       // kid names no trusted key of the right list
	ReasonMissingClaim     Reason = "missing-claim"     // a required claim is absent or empty
	ReasonWrongAudience    Reason = "wrong-audience"    // aud names another site or camera
	ReasonExpired          Reason = "expired"           // past exp, beyond the clock skew
	ReasonNotYetValid      Reason = "not-yet-valid"     // before nbf or iat, beyond the clock skew
	ReasonLifetimeTooLong  Reason = "lifetime-too-long" // exp - iat over MaxLifetime
	ReasonGuardianRequired Reason = "guardian-required" // minor without guardian: true
	ReasonUnknownPurpose   Reason = "unknown-purpose"   // a purpose that is not configured
	ReasonStaleNotice      Reason = "stale-notice"      // the visitor was shown another notice than the one in force
	ReasonReplayed         Reason = "replayed"          // the jti was already spent
)

// Error is a refusal: the contract's reason and what exactly was wrong. The
// message never contains the token or key material.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the refusal reason carried by err, or "" when err is nil or
// is not a refusal (such as a failure of the store).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(r Reason, err error) *Error { return &Error{Reason: r, Err: err} }
