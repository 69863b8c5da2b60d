// Package agent is the core of the consentcam daemon: the control loop
// that owns the capture window and the queue of accepted consents, runs the
// detector only while a window is open, carries out revokes, and runs the
// background jobs (retention sweep, checkpoints, compaction); and the typed
// API the transports call (Consent, Revoke, Withdraw, Decline, Records,
// ReadImage, VisitStatus, Snapshot).
//
// It knows nothing of HTTP or MQTT: agent/httpapi and agent/mqttbus hold a
// narrow interface to it. Every state change commits with its audit events
// in one store transaction; whoever needs to hear of events (the outbox
// publisher, metrics, the visit tracker) subscribes to the store's commits.
// It owns the small interfaces it consumes (Store, Verifier, Detector),
// which the leaf packages capture, consent and store implement.
//
// It must never run the detector while no capture window is open, never keep
// a frame or a face without a valid consent token, and never put an image,
// a token or key material in a log or in an audit event.
package agent
