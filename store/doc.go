// Package store is the box's only persistent state, one bbolt file: records
// with their purpose tags and expiries, per-subject data keys wrapped by the
// master key, the audit log (an RFC 6962 Merkle log with checkpoints), the
// MQTT outbox, and the memory of spent token ids.
//
// It must never hold a plaintext image on disk, and every state change commits
// in the same transaction as the audit events that describe it.
//
// Erasing deletes; Compact then rewrites the file so that no freed page keeps
// the erased bytes. VerifyLog, which needs no store, is what an auditor runs
// on a pulled log.
package store
