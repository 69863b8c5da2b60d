// Package mqttbus is the agent's MQTT session (docs/SPEC.md, "MQTT"):
// consent tokens and revoke commands in, acknowledged to the broker only
// once the core has made their outcome durable; audit events out from the
// store's outbox in seq order, at least once; revoke receipts; and the
// retained notice, latest checkpoint and availability.
//
// It holds the agent through the narrow Core interface and hears of
// committed events by subscribing to the store. It must never put an image,
// a token or key material on the bus, and never count an event as delivered
// without the broker's acknowledgement on the connection it was sent on.
package mqttbus
