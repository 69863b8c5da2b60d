// Package consent owns the notice (what the visitor is told, and its hash),
// consent tokens and revoke commands (EdDSA JWTs), revoke receipts, and the
// Ed25519 keys that sign them.
//
// It does no I/O beyond reading and writing key files, and it never logs a
// token or key material. Refusals carry the exact reasons of the product
// contract.
package consent
