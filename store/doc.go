// Package store is the box's only persistent state: the store file (records
// with their purpose tags and expiries, crops sealed under per-record data
// keys, the audit log as an RFC 6962 Merkle log with checkpoints, the MQTT
// outbox, the memory of spent token ids) and, beside it, the small key file
// of the data keys, wrapped by the master key.
//
// It must never hold a plaintext image on disk, nor a data key unwrapped or
// in the store file, and every state change commits in the same transaction
// as the audit events that describe it.
//
// Erasing destroys keys: a deleted record's data key is deleted from the key
// file at once, and Compact, the maintenance step after erasures, overwrites
// the key file's freed pages in place, so that the crop's ciphertext left in
// the store file can never be decrypted again; the store file is never
// rewritten (keyfile.go). VerifyLog, which needs no store, is what an
// auditor runs on a pulled log.
package store
