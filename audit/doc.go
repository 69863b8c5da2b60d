// Package audit checks, offline, what a consentcam box did: it reads an
// audit bundle (the signed log, the consent and revoke evidence, the
// notices, the keys and a manifest; docs/AUDIT.md), verifies the log as
// `consentcam audit verify` does, replays it against the rules of
// docs/AUDIT.md, and writes a report for people, as text or as one HTML
// page.
//
// It is the auditor's side: it reuses consent's token verification and
// store's log verification, never the agent's internals, and it trusts
// nothing in a bundle that the device key does not sign, bar the keys and
// the tolerance, which the report states.
package audit
