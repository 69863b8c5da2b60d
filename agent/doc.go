// Package agent is the consentcam daemon: the capture-window state machine,
// MQTT (consent and revoke in; audit events, receipts, notice and checkpoints
// out, through the store's outbox), the HTTP API and, when it is turned on,
// the consent kiosk's pages, and the background jobs (retention sweep,
// compaction, checkpoints).
//
// It owns the small interfaces it consumes (Store, Source, Detector, ...),
// which the leaf packages capture, consent and store implement.
//
// It must never run the detector while no capture window is open, never keep
// a frame or a face without a valid consent token, and never put an image,
// a token or key material on the bus, in a log or in an audit event.
package agent
