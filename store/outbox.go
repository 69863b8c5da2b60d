package store

import (
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// Message is an audit event waiting in the outbox to be published.
type Message struct {
	Seq     uint64
	Payload []byte // the event's JSON as stored
}

// Pending returns up to limit unacknowledged events, in seq order.
func (db *DB) Pending(limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("pending: limit %d, want > 0", limit)
	}
	var msgs []Message
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		log := newLogReader(btx)
		c := btx.Bucket(bucketOutbox).Cursor()
		for k, _ := c.First(); k != nil && len(msgs) < limit; k, _ = c.Next() {
			v, err := log.event(decodeUint64(k))
			if err != nil {
				return fmt.Errorf("pending: outbox holds seq %d: %w", decodeUint64(k), err)
			}
			msgs = append(msgs, Message{Seq: decodeUint64(k), Payload: slices.Clone(v)})
		}
		return nil
	})
	return msgs, err
}

// Ack removes the acknowledged events from the outbox, in one transaction.
// A seq not in the outbox (acknowledged twice) is ignored.
func (db *DB) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := db.boltTx(true, func(btx *bbolt.Tx) error {
		outbox := btx.Bucket(bucketOutbox)
		n := 0
		for _, seq := range seqs {
			k := encodeUint64(seq)
			if !has(outbox, k) {
				continue
			}
			if err := outbox.Delete(k); err != nil {
				return err
			}
			n++
		}
		return addUint64(btx.Bucket(bucketMeta), metaPending, -n)
	})
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// PendingCount is the number of events not yet acknowledged.
func (db *DB) PendingCount() (int, error) { return db.counter(metaPending) }
