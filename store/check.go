package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"go.etcd.io/bbolt"
)

// Check runs bbolt's consistency check and verifies the store's own
// invariants: the log is gap-free, every event is well formed and the stored
// Merkle nodes are those its leaves hash to; the outbox and counters agree
// with what they count; every record decodes, has its image (which decrypts
// under its data key) and exactly its chunks and index entries; the key file
// holds a data key for each record and no other; spent token ids and their
// index agree; the evidence indexes agree and each piece is referenced by
// its event. It reads both files whole: for tests and inspections, not for
// the daemon's hot path.
func (db *DB) Check() error {
	// bbolt's check reads the freelist, which only a writable transaction
	// keeps from concurrent writers. It runs on a goroutine of its own,
	// where a panic on a damaged page could not be recovered: walk reads
	// every page first, under guard.
	return guard(db.path, func() error { return db.Update(db.check) })
}

func (db *DB) check(tx *Tx) error {
	if err := walk(db.path, tx.tx); err != nil {
		return err
	}
	{
		var errs []error
		for err := range tx.tx.Check() {
			errs = append(errs, fmt.Errorf("bbolt: %w", err))
		}
		errs = append(errs, tx.db.checkKeyFile()...)
		errs = append(errs, tx.checkLog()...)
		errs = append(errs, tx.checkRecords()...)
		errs = append(errs, tx.checkSpent()...)
		errs = append(errs, tx.checkEvidence()...)
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("check %s: %w", tx.db.path, err)
		}
		return nil
	}
}

// checkKeyFile runs bbolt's check on the key file. writeMu must be held.
func (db *DB) checkKeyFile() []error {
	ktx, err := db.keys.Begin(true)
	if err != nil {
		return []error{fmt.Errorf("key file: %w", err)}
	}
	defer ktx.Rollback()
	var errs []error
	for err := range ktx.Check() {
		errs = append(errs, fmt.Errorf("key file: bbolt: %w", err))
	}
	return errs
}

func (tx *Tx) checkLog() []error {
	var errs []error
	meta := tx.bucket(bucketMeta)
	size := getUint64(meta, metaSize)
	tree := rangeFactory.NewEmptyRange(0)
	nodes := tx.bucket(bucketNodes)
	visit := func(id compact.NodeID, hash []byte) {
		if id.Level < nodeMinLevel {
			return
		}
		if got := nodes.Get(nodeKey(id)); !bytes.Equal(got, hash) {
			errs = append(errs, fmt.Errorf("merkle node level %d index %d: stored %x, leaves give %x", id.Level, id.Index, got, hash))
		}
	}
	if err := checkLogEnd(tx.tx, size); err != nil {
		errs = append(errs, err)
	}
	err := newLogReader(tx.tx).each(0, size, func(seq uint64, v []byte) bool {
		ev, err := parseEvent(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("event %d: %w", seq, err))
		case ev.Seq != seq || ev.Site != tx.db.Site || ev.Camera != tx.db.Camera:
			errs = append(errs, fmt.Errorf("event %d: says seq %d, %s/%s", seq, ev.Seq, ev.Site, ev.Camera))
		}
		if err := tree.Append(hasher.HashLeaf(v), visit); err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	})
	if err != nil {
		return append(errs, err)
	}
	if tree.End() != size {
		errs = append(errs, fmt.Errorf("log has %d events, tree size says %d", tree.End(), size))
	}
	if n, want := tx.bucket(bucketEvents).Stats().KeyN, int(size%eventBlock); n != want {
		errs = append(errs, fmt.Errorf("%d single events stored, want %d", n, want))
	}
	if n, want := tx.bucket(bucketBlocks).Stats().KeyN, int(size/eventBlock); n != want {
		errs = append(errs, fmt.Errorf("%d event blocks stored, want %d", n, want))
	}
	if n := nodes.Stats().KeyN; n != storedNodes(size) {
		errs = append(errs, fmt.Errorf("%d merkle nodes stored, want %d", n, storedNodes(size)))
	}

	outbox := 0
	err = tx.bucket(bucketOutbox).ForEach(func(k, _ []byte) error {
		if decodeUint64(k) >= size {
			errs = append(errs, fmt.Errorf("outbox holds seq %d beyond the log", decodeUint64(k)))
		}
		outbox++
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	if want := getUint64(meta, metaPending); uint64(outbox) != want {
		errs = append(errs, fmt.Errorf("outbox holds %d events, its counter says %d", outbox, want))
	}
	return errs
}

func (tx *Tx) checkRecords() []error {
	var errs []error
	records := 0
	entries := make(map[string]int) // bucket → entries the records need
	err := tx.bucket(bucketRecords).ForEach(func(k, v []byte) error {
		records++
		r, err := decodeRecord(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("record %s: %w", k, err))
			return nil
		}
		if r.ID != string(k) {
			errs = append(errs, fmt.Errorf("record %s: says id %s", k, r.ID))
		}
		for _, e := range indexEntries(r) {
			entries[string(e.bucket)]++
			if !has(tx.bucket(e.bucket), e.key) {
				errs = append(errs, fmt.Errorf("record %s: no entry %x in index %s", k, e.key, e.bucket))
			}
		}
		chunks := tx.chunkKeys(r)
		for i, c := range chunks {
			if !bytes.Equal(c, chunkKey(cropPrefix(r), i)) {
				errs = append(errs, fmt.Errorf("record %s: chunk %d has key %x", k, i, c))
			}
		}
		entries[string(bucketCrops)] += len(chunks)
		if _, err := tx.openImage(r); err != nil {
			errs = append(errs, fmt.Errorf("record %s: image: %w", k, err))
		}
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	if want := getUint64(tx.bucket(bucketMeta), metaRecords); uint64(records) != want {
		errs = append(errs, fmt.Errorf("%d records, their counter says %d", records, want))
	}
	// Each record has its entries (checked above); none may be left over.
	for _, b := range [][]byte{bucketCrops, bucketBySubject, bucketByVisit, bucketByExpiry} {
		if n := tx.bucket(b).Stats().KeyN; n != entries[string(b)] {
			errs = append(errs, fmt.Errorf("bucket %s has %d entries, %d records need %d", b, n, records, entries[string(b)]))
		}
	}
	// Each record's key opened its image (checked above); none may be left
	// over either.
	err = tx.db.keys.View(func(ktx *bbolt.Tx) error {
		if n := ktx.Bucket(keyBucketKeys).Stats().KeyN; n != records {
			errs = append(errs, fmt.Errorf("key file has %d data keys for %d records", n, records))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range [][]byte{legacyImages, legacyKeys} {
		if tx.tx.Bucket(name) != nil {
			errs = append(errs, fmt.Errorf("bucket %s of format 1 is still there", name))
		}
	}
	return errs
}

func (tx *Tx) checkSpent() []error {
	var errs []error
	exp := tx.bucket(bucketSpentExp)
	err := tx.bucket(bucketSpent).ForEach(func(k, v []byte) error {
		if !has(exp, append(bytes.Clone(v), k...)) {
			errs = append(errs, fmt.Errorf("spent token id %q: not in the expiry index", k))
		}
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	if n, want := exp.Stats().KeyN, tx.bucket(bucketSpent).Stats().KeyN; n != want {
		errs = append(errs, fmt.Errorf("spent expiry index has %d entries, want %d", n, want))
	}
	return errs
}
