package store

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Format version 1 (commit c2970df and before) sealed crops under one data
// key per subject, kept wrapped by the master key in the store file itself,
// and stored each sealed crop whole, in the images bucket. A subject's key
// outlived an expired record while the subject had another, and only a
// rewrite of the whole file could destroy an erased key. It also kept every
// event and every Merkle hash one by one. Open migrates such a store in
// place: every crop is sealed again under a data key of its own (key file)
// and stored in chunks, the events are put in blocks and the hashes of small
// subtrees dropped (logstore.go), the old buckets are deleted, then the
// freed pages of the file, which hold the old keys and sealed crops, are
// overwritten and the file compacted once.
var (
	legacyImages = []byte("images") // record id → crop sealed under its subject's key
	legacyKeys   = []byte("keys")   // subject → data key sealed by the master key
	// metaWipe is set while the store file's freed pages may hold what the
	// migration left: finishMigration overwrites them and compacts the file.
	metaWipe = []byte("wipe")
)

// How much one transaction of the migration does: crops moved, event
// blocks sealed, Merkle hashes deleted.
const (
	migrateCropBatch  = 256
	migrateBlockBatch = 256
	migrateNodeBatch  = 1 << 16
)

// migrate brings a store file of format 1 to format 2. A crash leaves it
// resumable: each transaction moves some crops (their new keys committed to
// the key file first) and deletes their old copies, so what is left in the
// images bucket is what is left to do. db.mu must be held for writing.
func (db *DB) migrate() error {
	db.Logger.Info("migrating the store from format 1", logKeyPath, db.path)
	for _, step := range []func() (int, error){db.migrateCrops, db.migrateLog} {
		for {
			n, err := step()
			if err != nil {
				return fmt.Errorf("migrate from format 1: %w", err)
			}
			if n == 0 {
				break
			}
		}
	}
	err := db.update(func(tx *Tx) error {
		for _, name := range [][]byte{legacyImages, legacyKeys} {
			if err := tx.tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
		}
		meta := tx.bucket(bucketMeta)
		if err := meta.Put(metaVersion, []byte{formatVersion}); err != nil {
			return err
		}
		return meta.Put(metaWipe, []byte{1})
	})
	if err != nil {
		return fmt.Errorf("migrate from format 1: %w", err)
	}
	db.step(stepMigrated)
	return nil
}

// migrateCrops moves up to migrateBatch crops in one transaction and
// returns how many it moved.
func (db *DB) migrateCrops() (int, error) {
	n := 0
	err := db.update(func(tx *Tx) error {
		n = 0
		images := tx.bucket(legacyImages)
		if images == nil {
			return nil
		}
		subjects := make(map[string]cipher.AEAD)
		var done [][]byte
		c := images.Cursor()
		for id, sealed := c.First(); id != nil && n < migrateCropBatch; id, sealed = c.Next() {
			done = append(done, append([]byte(nil), id...))
			n++
			r, err := tx.Record(string(id))
			if errors.Is(err, ErrNotFound) {
				db.Logger.Warn("dropped the crop of a record that does not exist", logKeyRecord, string(id))
				continue
			}
			if err != nil {
				return err
			}
			aead, ok := subjects[r.Subject]
			if !ok {
				if aead, err = db.legacySubjectAEAD(tx, r.Subject); err != nil {
					return err
				}
				subjects[r.Subject] = aead
			}
			image, err := aead.Open(nil, nil, sealed, id)
			if err != nil {
				return fmt.Errorf("record %s: decrypt: %w", id, err)
			}
			err = tx.putImage(r, image)
			clear(image)
			if err != nil {
				return fmt.Errorf("record %s: %w", id, err)
			}
		}
		for _, id := range done {
			if err := images.Delete(id); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// migrateLog seals up to migrateBlockBatch blocks of events and deletes
// up to migrateNodeBatch hashes of small subtrees in one transaction, and
// returns how many things it did.
func (db *DB) migrateLog() (int, error) {
	n := 0
	err := db.update(func(tx *Tx) error {
		n = 0
		size := getUint64(tx.bucket(bucketMeta), metaSize)
		for range migrateBlockBatch {
			k, _ := tx.bucket(bucketEvents).Cursor().First()
			if k == nil || decodeUint64(k)+eventBlock > size {
				break
			}
			if err := sealBlock(tx.tx, decodeUint64(k)); err != nil {
				return err
			}
			n++
		}
		nodes := tx.bucket(bucketNodes)
		var small [][]byte
		c := nodes.Cursor()
		for k, _ := c.First(); k != nil && k[0] < nodeMinLevel && len(small) < migrateNodeBatch; k, _ = c.Next() {
			small = append(small, append([]byte(nil), k...))
		}
		for _, k := range small {
			if err := nodes.Delete(k); err != nil {
				return err
			}
		}
		n += len(small)
		return nil
	})
	return n, err
}

// legacySubjectAEAD returns the cipher of a subject's format-1 data key.
func (db *DB) legacySubjectAEAD(tx *Tx, subject string) (cipher.AEAD, error) {
	keys := tx.bucket(legacyKeys)
	if keys == nil {
		return nil, fmt.Errorf("data key of subject %s: %w", subject, ErrNotFound)
	}
	wrapped := keys.Get([]byte(subject))
	if wrapped == nil {
		return nil, fmt.Errorf("data key of subject %s: %w", subject, ErrNotFound)
	}
	key, err := db.master.Open(nil, nil, wrapped, []byte(subject))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of subject %s: %w", subject, err)
	}
	defer clear(key)
	return newAEAD(key)
}

// finishMigration, when a migration left metaWipe set, overwrites the store
// file's freed pages and then compacts it into a new file that replaces it.
// Overwriting first matters: the old file's blocks, once it is unlinked,
// would otherwise keep the old keys and crops on the disk. db.mu must be
// held for writing.
func (db *DB) finishMigration() error {
	var due bool
	if err := db.bolt.View(func(btx *bbolt.Tx) error {
		due = btx.Bucket(bucketMeta).Get(metaWipe) != nil
		return nil
	}); err != nil || !due {
		return err
	}
	start := time.Now()
	before, err := fileSize(db.path)
	if err != nil {
		return err
	}
	wiped, f, err := wipeFreePages(db.bolt, nil)
	if err = errors.Join(err, syncClose(f)); err != nil {
		return fmt.Errorf("migrate: wipe: %w", err)
	}
	tmp := db.compactPath()
	if err := copyCompact(tmp, db.bolt); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("migrate: compact: %w", err)
	}
	if err := db.replaceWith(tmp); err != nil {
		return fmt.Errorf("migrate: compact: %w", err)
	}
	after, err := fileSize(db.path)
	if err != nil {
		return err
	}
	db.Logger.Info("store migrated to format 2", logKeyBefore, before, logKeyAfter, after,
		logKeyWiped, wiped, logKeyDuration, time.Since(start))
	return nil
}

// compactTxSize bounds the memory of one transaction of the copy.
const compactTxSize = 16 << 20

// copyCompact copies every bucket of src into a new file at path, without
// metaWipe, and syncs it.
func copyCompact(path string, src *bbolt.DB) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, PageSize: pageSize})
	if err != nil {
		return err
	}
	err = bbolt.Compact(dst, src, compactTxSize)
	if err == nil {
		err = dst.Update(func(btx *bbolt.Tx) error { return btx.Bucket(bucketMeta).Delete(metaWipe) })
	}
	if err == nil {
		err = dst.Sync()
	}
	return errors.Join(err, dst.Close())
}

// replaceWith closes the store file, renames tmp over it and reopens it.
// Whatever fails, the DB is reopened on the file then in place. db.mu must
// be held for writing.
func (db *DB) replaceWith(tmp string) error {
	err := db.bolt.Close()
	db.bolt = nil
	if err == nil {
		err = os.Rename(tmp, db.path)
	}
	if err != nil {
		os.Remove(tmp)
	} else {
		err = syncDir(filepath.Dir(db.path))
	}
	_, openErr := db.openBolt()
	return errors.Join(err, openErr)
}
