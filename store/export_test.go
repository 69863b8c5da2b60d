package store

import (
	"slices"

	"go.etcd.io/bbolt"
)

// What the black-box tests need to see of the files' insides.

// DecodeRecord and EncodeRecord expose the record encoding to the fuzzer,
// DecodeBlock and EncodeBlock that of a block of events.
var (
	DecodeRecord = decodeRecord
	EncodeRecord = encodeRecord
	DecodeBlock  = decodeBlock
	EncodeBlock  = encodeBlock
)

// EventBlock is how many events a block holds.
const EventBlock = eventBlock

// DataKeyAD is the additional data of a record's wrapped data key.
var DataKeyAD = dataKeyAD

// SealedImage returns the encrypted image of a record as stored (its
// chunks put together), nil if there is no such record.
func (tx *Tx) SealedImage(id string) []byte {
	r, err := tx.Record(id)
	if err != nil {
		return nil
	}
	return tx.sealedCrop(r)
}

// WrappedKey returns the record's data key as stored in the key file,
// wrapped by the master key; nil if there is none.
func (db *DB) WrappedKey(id string) []byte {
	var wrapped []byte
	db.keys.View(func(ktx *bbolt.Tx) error {
		wrapped = slices.Clone(ktx.Bucket(keyBucketKeys).Get([]byte(id)))
		return nil
	})
	return wrapped
}

// DataKey returns the record's data key, unwrapped.
func (tx *Tx) DataKey(id string) ([]byte, error) { return tx.dataKey(id) }

// SetNoSync turns off fsync, for benchmarks that build big stores. Set it
// before Open.
func (db *DB) SetNoSync(noSync bool) { db.noSync = noSync }

// SetHook sets a function called between the steps of a write that spans
// both files, with the name of the step just done.
func (db *DB) SetHook(fn func(step string)) { db.hook = fn }

// Steps of writes that span both files.
const (
	StepKeysCommitted = stepKeysCommitted
	StepRecordsGone   = stepRecordsGone
	StepKeysDeleted   = stepKeysDeleted
	StepPagesWiped    = stepPagesWiped
	StepMigrated      = stepMigrated
)
