package store

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Awaiting is an accepted consent whose outcome (capture.saved or
// capture.skipped) is not recorded yet. The agent puts it in the
// transaction of its consent.accepted and deletes it in the one of its
// outcome, so that after a crash the consents that lost their outcome are
// known, and closed, at the next start.
type Awaiting struct {
	Seq      uint64   `json:"seq"` // of its consent.accepted; the key
	Visit    string   `json:"visit"`
	Subject  string   `json:"subject"`
	Purposes []string `json:"purposes"`
	Actor    string   `json:"actor"`
	Opened   bool     `json:"opened"` // its window was opened
}

// PutAwaiting keeps (or replaces) an awaiting consent.
func (tx *Tx) PutAwaiting(a Awaiting) error {
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("awaiting consent %d: %w", a.Seq, err)
	}
	if err := tx.bucket(bucketAwaiting).Put(encodeUint64(a.Seq), v); err != nil {
		return fmt.Errorf("awaiting consent %d: %w", a.Seq, err)
	}
	return nil
}

// DeleteAwaiting forgets an awaiting consent once its outcome is recorded.
func (tx *Tx) DeleteAwaiting(seq uint64) error {
	if err := tx.bucket(bucketAwaiting).Delete(encodeUint64(seq)); err != nil {
		return fmt.Errorf("settle consent %d: %w", seq, err)
	}
	return nil
}

// Awaiting lists the awaiting consents in the order they were accepted.
func (tx *Tx) Awaiting() ([]Awaiting, error) {
	var out []Awaiting
	err := tx.bucket(bucketAwaiting).ForEach(func(k, v []byte) error {
		var a Awaiting
		if err := json.Unmarshal(v, &a); err != nil || a.Seq != decodeUint64(k) {
			return fmt.Errorf("awaiting consent %x: bad entry %q", k, v)
		}
		a.Purposes = slices.Clone(a.Purposes)
		out = append(out, a)
		return nil
	})
	return out, err
}
