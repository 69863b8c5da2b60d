// Package fleet is the head office's monitor of every box (`consentcam
// fleet`): subscribed to the central MQTT broker that the site brokers
// bridge to, it mirrors each box's audit events and checkpoints into
// PostgreSQL, verifies every checkpoint against the mirrored leaves (a
// compact Merkle range per box), judges the log against the rules of
// docs/AUDIT.md as it grows (audit.Replay), raises alarms as Prometheus
// metrics and log lines, and serves the state of the boxes and, to
// auditors, each box's log as a box serves it.
//
// It imports consent, store and audit, never agent: it trusts nothing a
// box says that the box's device key does not sign. An event is served to
// auditors and judged only once a checkpoint signed by the box covers it;
// anything malformed, unsigned, forked or from an unknown box is an alarm
// with the payload's SHA-256, never a stored fact and never a crash.
package fleet
