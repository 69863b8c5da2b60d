package store

import "slices"

// What the black-box tests need to see of the file's insides.

// DecodeRecord and EncodeRecord expose the record encoding to the fuzzer.
var (
	DecodeRecord = decodeRecord
	EncodeRecord = encodeRecord
)

// SealedImage returns the encrypted image of a record as stored.
func (tx *Tx) SealedImage(id string) []byte {
	return slices.Clone(tx.bucket(bucketImages).Get([]byte(id)))
}

// WrappedKey returns the subject's data key as stored, wrapped by the master
// key.
func (tx *Tx) WrappedKey(subject string) []byte {
	return slices.Clone(tx.bucket(bucketKeys).Get([]byte(subject)))
}
