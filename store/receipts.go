package store

import (
	"fmt"
	"slices"
)

// PutReceipt keeps the signed receipt of a carried-out revoke under its
// request id, for as long as the id is remembered as spent (the sweep
// forgets both): a revoke given again (a broker redelivering it after a
// crash) gets the same receipt instead of a refusal.
func (tx *Tx) PutReceipt(jti string, signed []byte) error {
	if err := tx.bucket(bucketReceipts).Put([]byte(jti), signed); err != nil {
		return fmt.Errorf("keep the receipt of %q: %w", jti, err)
	}
	return nil
}

// Receipt returns the signed receipt kept for a request id, or nil.
func (tx *Tx) Receipt(jti string) []byte {
	return slices.Clone(tx.bucket(bucketReceipts).Get([]byte(jti)))
}
