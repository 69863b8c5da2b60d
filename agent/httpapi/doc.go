// Package httpapi is the box's HTTP API (docs/SPEC.md, "HTTP"): health,
// metrics, the notice, the auditor's log and proofs, the operator's records
// and images, POST /v1/visits, and, when it is turned on, the consent kiosk's
// pages and API (docs/KIOSK.md).
//
// It holds the agent through the narrow Core interface and reads the audit
// log through AuditLog; it keeps no state of the agent's. Every error is
// answered by Server.Error from one table (status and reason); a failure of
// the box is logged once there and answered with a generic message.
//
// It must never answer with a token, key material or the inside of an
// error, and never serve an image but to the operator role, for a purpose
// the record is tagged with, with the read audited by the core.
package httpapi
