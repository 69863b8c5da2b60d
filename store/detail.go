package store

// DetailKeys is the allow-list of what an event's detail may hold: for each
// event type (every type of SPEC, "Audit log"), the only keys its detail
// may have. It is the one place the list is kept: docs/SPEC.md documents
// it, and the privacy tests check every event the agent records and
// publishes against it, so a new key (an image, a token, a client's
// address) fails them until it is added here, in review, and to SPEC.
var DetailKeys = map[string][]string{
	EventAgentStarted: {"version", "detector", "purposes", "checkpoint_interval", "sweep_interval", "clock_skew",
		"evidence_retention", "issuers", "operators"},
	EventAgentStopped:     nil,
	EventNoticePublished:  {"hash"},
	EventConsentAccepted:  {"notice", "expires", "jti", "token_sha256", "minor", "guardian"},
	EventConsentRejected:  {"count", "first", "last"}, // refusals of unverified tokens, counted
	EventConsentDeclined:  {"notice"},
	EventWindowOpened:     {"window"},
	EventWindowClosed:     nil,
	EventCaptureSaved:     {"detector", "score", "box", "expires"},
	EventCaptureSkipped:   nil,
	EventRecordAccessed:   nil,
	EventRecordExpired:    {"deleted"},
	EventRecordErased:     nil,
	EventConsentRevoked:   {"request", "erased", "token_sha256"},
	EventRevokeRejected:   {"request", "count", "first", "last"},
	EventStoreCompacted:   {"bytes_before", "bytes_after"},
	EventSourceFailed:     {"error"},
	EventSourceRecovered:  nil,
	EventCheckpoint:       {"size", "root", "note"},
	EventWitnessFailed:    {"witness", "size", "error", "status"},
	EventWitnessRecovered: {"witness", "size", "failures"},
	EventAccessRefused:    nil,
	EventEvidenceExpired:  {"jti", "kind", "seq"},
	EventFilingThreshold:  {"threshold", "subjects"},
}
