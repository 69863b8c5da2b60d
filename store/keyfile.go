package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
)

// The key file (DB.KeysPath) is a second, small bbolt file beside the store
// file: one 32-byte data key per record, wrapped (AES-256-GCM) by the master
// key. A record's crop is sealed under its own data key, which is never
// written to the store file, so erasing a record comes down to destroying its
// key: Update deletes the key as soon as the record's deletion commits, and
// Compact overwrites the key file's freed pages in place. What the store file
// keeps in its freed pages is then ciphertext no key in any file opens.
var (
	keyBucketMeta = []byte("meta") // version and key check, as in the store file
	keyBucketKeys = []byte("keys") // record id → data key sealed by the master key
)

// keyFileVersion is the format of the key file.
const keyFileVersion = 1

// dataKeySize is the size of a data key (AES-256).
const dataKeySize = 32

// initKeyFile creates the key file's buckets and checks its format and key.
func (db *DB) initKeyFile(ktx *bbolt.Tx) error {
	for _, name := range [][]byte{keyBucketMeta, keyBucketKeys} {
		if _, err := ktx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	_, err := db.checkFormat(ktx.Bucket(keyBucketMeta), keyFileVersion, keyFileVersion)
	return err
}

// dataKeyAD is the additional data that binds a wrapped data key to its
// record.
func dataKeyAD(id string) []byte { return append([]byte("consentcam data key of record "), id...) }

func (db *DB) wrapKey(id string, key []byte) []byte {
	return db.master.Seal(nil, nil, key, dataKeyAD(id))
}

func (db *DB) unwrapKey(id string, wrapped []byte) ([]byte, error) {
	key, err := db.master.Open(nil, nil, wrapped, dataKeyAD(id))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of record %s: %w", id, err)
	}
	if len(key) != dataKeySize {
		clear(key)
		return nil, fmt.Errorf("data key of record %s: %d bytes", id, len(key))
	}
	return key, nil
}

// keyTx is what a Tx does with the key file.
type keyTx struct {
	read      *bbolt.Tx         // a read transaction of the key file, begun on first use
	added     map[string][]byte // data keys of the records put in the transaction
	committed bool              // added is in the key file
	deleted   []string          // ids of the records deleted in it whose keys are in the key file
}

// newDataKey makes a random data key for a record put in the transaction.
// The caller must not keep it past the transaction.
func (tx *Tx) newDataKey(id string) []byte {
	key := make([]byte, dataKeySize)
	rand.Read(key) // never fails: crypto/rand crashes the program instead
	if tx.keys.added == nil {
		tx.keys.added = make(map[string][]byte)
	}
	tx.keys.added[id] = key
	return key
}

// dataKey returns a copy of the record's data key, which the caller clears.
func (tx *Tx) dataKey(id string) ([]byte, error) {
	if key, ok := tx.keys.added[id]; ok {
		return bytes.Clone(key), nil
	}
	if tx.keys.read == nil {
		read, err := tx.db.keys.Begin(false)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		tx.keys.read = read
	}
	wrapped := tx.keys.read.Bucket(keyBucketKeys).Get([]byte(id))
	if wrapped == nil {
		return nil, fmt.Errorf("data key of record %s: %w", id, ErrNotFound)
	}
	return tx.db.unwrapKey(id, wrapped)
}

// dropDataKey forgets the data key of a record deleted in the transaction.
func (tx *Tx) dropDataKey(id string) {
	if key, ok := tx.keys.added[id]; ok {
		clear(key)
		delete(tx.keys.added, id)
		return
	}
	tx.keys.deleted = append(tx.keys.deleted, id)
}

// endKeyRead ends the read transaction of the key file. A write transaction
// that grows the file waits for every reader, so it must end before one
// begins.
func (tx *Tx) endKeyRead() {
	if tx.keys.read != nil {
		tx.keys.read.Rollback()
		tx.keys.read = nil
	}
}

// wipe ends the transaction's use of the key file and clears the data keys
// it holds.
func (tx *Tx) wipe() {
	tx.endKeyRead()
	for _, key := range tx.keys.added {
		clear(key)
	}
}

// commitKeys writes the data keys of the records put in the transaction to
// the key file, before the store file commits.
func (tx *Tx) commitKeys() error {
	tx.endKeyRead()
	err := tx.db.keys.Update(func(ktx *bbolt.Tx) error {
		b := ktx.Bucket(keyBucketKeys)
		for id, key := range tx.keys.added {
			if err := b.Put([]byte(id), tx.db.wrapKey(id, key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	tx.keys.committed = true
	return nil
}

// forgetKeys deletes the keys commitKeys wrote for a transaction that did
// not commit. A key this fails to delete has no record: Compact and Open
// remove such keys.
func (tx *Tx) forgetKeys() {
	if !tx.keys.committed {
		return
	}
	ids := make([]string, 0, len(tx.keys.added))
	for id := range tx.keys.added {
		ids = append(ids, id)
	}
	tx.db.deleteKeys(ids, "of records not stored")
}

// deleteKeys deletes from the key file the keys of the records deleted by
// the transaction that has just committed. The deletion has committed
// whatever happens here, so a failure is logged, not returned: the keys are
// then removed by Compact, which the agent runs after erasures, or Open.
func (db *DB) deleteKeys(ids []string, what string) {
	if len(ids) == 0 {
		return
	}
	err := db.keys.Update(func(ktx *bbolt.Tx) error {
		b := ktx.Bucket(keyBucketKeys)
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Logger.Error("could not delete data keys "+what+"; Compact or Open will", logKeyCount, len(ids), logKeyError, err)
	}
}

// keyStatus is what a walk of both files found.
type keyStatus struct {
	orphans []string // keys whose record is not in the store file
	missing int      // records without a key
}

// scanKeys walks the record ids of both files in step.
func (db *DB) scanKeys() (keyStatus, error) {
	var st keyStatus
	err := db.bolt.View(func(btx *bbolt.Tx) error {
		return db.keys.View(func(ktx *bbolt.Tx) error {
			rc := btx.Bucket(bucketRecords).Cursor()
			kc := ktx.Bucket(keyBucketKeys).Cursor()
			r, _ := rc.First()
			k, _ := kc.First()
			for r != nil || k != nil {
				switch c := bytes.Compare(r, k); {
				case r != nil && (k == nil || c < 0):
					st.missing++
					r, _ = rc.Next()
				case k != nil && (r == nil || c > 0):
					st.orphans = append(st.orphans, string(k))
					k, _ = kc.Next()
				default:
					r, _ = rc.Next()
					k, _ = kc.Next()
				}
			}
			return nil
		})
	})
	return st, err
}

// removeOrphanKeys deletes the data keys that have no record: those of a
// transaction that crashed between its two commits, or whose deletion
// failed after their record's. It returns how many it deleted, and how
// many records it found without a key (meaningful only when no Update runs
// meanwhile).
func (db *DB) removeOrphanKeys() (removed, missing int, err error) {
	st, err := db.scanKeys()
	if err != nil || len(st.orphans) == 0 {
		return 0, st.missing, err
	}
	// The scan ran beside Update; under writeMu no key is committed ahead
	// of its record, so a key without a record now has none for good.
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	var orphans []string
	err = db.bolt.View(func(btx *bbolt.Tx) error {
		for _, id := range st.orphans {
			if btx.Bucket(bucketRecords).Get([]byte(id)) == nil {
				orphans = append(orphans, id)
			}
		}
		return nil
	})
	if err != nil || len(orphans) == 0 {
		return 0, st.missing, err
	}
	err = db.keys.Update(func(ktx *bbolt.Tx) error {
		for _, id := range orphans {
			if err := ktx.Bucket(keyBucketKeys).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, st.missing, fmt.Errorf("remove data keys without a record: %w", err)
	}
	db.Logger.Warn("removed data keys without a record", logKeyCount, len(orphans))
	return len(orphans), st.missing, nil
}

// wipeKeyFile overwrites the key file's freed pages with zeros; img, if
// not nil, is the file read beforehand (readImage). db.mu must be held for
// writing. It returns the bytes overwritten and the file to sync, nil when
// nothing was written.
func (db *DB) wipeKeyFile(img *fileImage) (int64, *os.File, error) {
	n, f, err := wipeFreePages(db.keys, img)
	if err != nil {
		return 0, nil, fmt.Errorf("wipe key file: %w", err)
	}
	return n, f, nil
}

// CompactStats is what Compact did.
type CompactStats struct {
	// Before and After are the sizes in bytes of the store file and the key
	// file together. Compact overwrites in place, so they differ only when
	// a transaction grew a file meanwhile.
	Before int64
	After  int64
	// OrphanKeys is the number of data keys found without a record, and
	// removed.
	OrphanKeys int
	// Wiped is the number of bytes of freed key-file pages overwritten.
	Wiped int64
	// Stalled is how long Compact held the store: every other use of the
	// DB waited that long at most.
	Stalled time.Duration
}

// Compact is the maintenance step after erasures. It removes any data key
// left without a record, then overwrites with zeros the pages of the key
// file that deletions freed, so that the keys of erased records are in no
// file: their crops, whose ciphertext may stay in freed pages of the store
// file, can never be decrypted again. The store file is not rewritten.
// Other users of the DB wait only while the key file's freed pages are
// overwritten (Stalled), not while they are synced to disk. The sizes it
// returns go into the store.compacted event.
func (db *DB) Compact() (CompactStats, error) {
	var stats CompactStats
	db.mu.RLock()
	if db.bolt == nil {
		db.mu.RUnlock()
		return stats, ErrClosed
	}
	var err error
	stats.Before, err = db.fileSizes()
	if err == nil {
		stats.OrphanKeys, _, err = db.removeOrphanKeys()
	}
	// Read the key file beforehand, so that while everyone waits only the
	// pages to overwrite are written, and nothing is read from the disk.
	var img *fileImage
	if err == nil {
		img, err = readImage(db.keys)
	}
	db.mu.RUnlock()
	if err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}

	db.mu.Lock()
	start := time.Now()
	var f *os.File
	if db.bolt == nil {
		err = ErrClosed
	} else {
		stats.Wiped, f, err = db.wipeKeyFile(img)
	}
	stats.Stalled = time.Since(start)
	db.mu.Unlock()
	if f != nil {
		db.step(stepPagesWiped)
	}
	// The zeros are in the page cache, where later reads and writes of
	// those pages see them; syncing them need not hold anyone up.
	if err = errors.Join(err, syncClose(f)); err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}

	db.mu.RLock()
	stats.After, err = db.fileSizes()
	db.mu.RUnlock()
	if err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}
	db.Logger.Info("store compacted", logKeyBefore, stats.Before, logKeyAfter, stats.After,
		logKeyCount, stats.OrphanKeys, logKeyWiped, stats.Wiped, logKeyStalled, stats.Stalled)
	return stats, nil
}

// fileSizes is the size of both files together.
func (db *DB) fileSizes() (int64, error) {
	var total int64
	for _, p := range []string{db.path, db.KeysPath()} {
		n, err := fileSize(p)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
