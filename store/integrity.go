package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/bbolt"
)

// ErrDamaged: a file of the store is damaged (empty, truncated, or failing
// a check of its pages or of the log). Nothing was changed in it.
var ErrDamaged = errors.New("the store is damaged")

// DamageError says which file is damaged, and how.
type DamageError struct {
	Path    string
	Problem string
}

func (e *DamageError) Error() string { return e.Path + ": " + e.Problem }
func (e *DamageError) Unwrap() error { return ErrDamaged }

// checkExisting reports whether a file of the store exists, and refuses
// one that cannot be one: empty (bbolt would make it a new, empty store,
// and the log would start again from seq 0). A missing file is a first
// start.
func checkExisting(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.Size() == 0:
		return true, &DamageError{path, "the file is empty (0 bytes)"}
	}
	return true, nil
}

// checkSize refuses a bbolt file shorter than its meta page says it is (a
// truncated copy): reading its pages would fault.
func checkSize(b *bbolt.DB) error {
	fi, err := os.Stat(b.Path())
	if err != nil {
		return err
	}
	return b.View(func(btx *bbolt.Tx) error {
		if want := btx.Size(); fi.Size() < want {
			return &DamageError{b.Path(), fmt.Sprintf("the file is %d bytes, its pages reach %d: it was cut short", fi.Size(), want)}
		}
		return nil
	})
}

// guard runs fn so that a fault on a page of a mapped file, or a panic in
// bbolt on a damaged page, comes back as a DamageError of path rather than
// ending the program.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamageError{path, fmt.Sprintf("reading it failed: %v", r)}
		}
	}()
	return fn()
}

// Verify checks the whole store without changing it, as Open does before
// anything else (every page of both files reachable from their roots read,
// under guard; the latest checkpoint's tree the stored tree; the tail of
// the log), and also every event against the stored tree, and every record,
// key, spent token id and piece of evidence (Check). A problem is a
// DamageError. It reads every byte of the store: seconds on a year's store
// (docs/RELIABILITY.md).
func (db *DB) Verify() error {
	err := guard(db.path, func() error {
		return db.boltTx(false, func(btx *bbolt.Tx) error {
			if err := walk(db.path, btx); err != nil {
				return err
			}
			return db.verifyLog(btx)
		})
	})
	if err != nil {
		return err
	}
	err = guard(db.KeysPath(), func() error {
		db.mu.RLock()
		defer db.mu.RUnlock()
		if db.keys == nil {
			return ErrClosed
		}
		return db.keys.View(func(btx *bbolt.Tx) error { return walk(db.KeysPath(), btx) })
	})
	if err != nil {
		return err
	}
	if err := guard(db.path, db.Check); err != nil && !errors.Is(err, ErrClosed) {
		var d *DamageError
		if errors.As(err, &d) {
			return err
		}
		return &DamageError{db.path, err.Error()}
	}
	return nil
}

// walk reads every key and value of every bucket of a file but those it
// skips, nested buckets too: every page reachable from their roots.
func walk(path string, btx *bbolt.Tx, skip ...[]byte) error {
	var visit func(b *bbolt.Bucket) error
	visit = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				nested := b.Bucket(k)
				if nested == nil {
					return &DamageError{path, fmt.Sprintf("bucket entry %x is neither a value nor a bucket", k)}
				}
				return visit(nested)
			}
			return nil
		})
	}
	return btx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		if slices.ContainsFunc(skip, func(s []byte) bool { return bytes.Equal(s, name) }) {
			return nil
		}
		return visit(b)
	})
}

// parseCheckpointBody reads the size and root of a checkpoint note, without
// its signature.
func parseCheckpointBody(note []byte) (Checkpoint, error) {
	text, _, ok := bytes.Cut(note, []byte("\n\n"))
	lines := strings.Split(string(text), "\n")
	if !ok || len(lines) < 3 {
		return Checkpoint{}, errors.New("not a checkpoint note")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return Checkpoint{}, fmt.Errorf("root %q", lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root, Note: note}, nil
}

// verifyTail is how many of the last events Verify parses.
const verifyTail = 2 * eventBlock

// verifyLog checks that the latest checkpoint's tree is the stored tree,
// and that the last events parse with their seqs.
func (db *DB) verifyLog(btx *bbolt.Tx) error {
	damaged := func(format string, args ...any) error {
		return &DamageError{db.path, "audit log: " + fmt.Sprintf(format, args...)}
	}
	meta := btx.Bucket(bucketMeta)
	size := getUint64(meta, metaSize)
	if err := checkLogEnd(btx, size); err != nil {
		return damaged("%v", err)
	}
	if cp := meta.Get(metaCheckpoint); cp != nil {
		c, err := parseCheckpointBody(cp)
		if err != nil {
			return damaged("the latest checkpoint: %v", err)
		}
		if c.Size > size {
			return damaged("the latest checkpoint covers %d events, the log has %d", c.Size, size)
		}
		r, err := readRange(btx, c.Size)
		if err != nil {
			return damaged("the tree of %d events: %v", c.Size, err)
		}
		root, err := rootOf(r)
		if err != nil {
			return damaged("the tree of %d events: %v", c.Size, err)
		}
		if !bytes.Equal(root, c.Root) {
			return damaged("the stored tree of %d events is not the one the latest checkpoint signed", c.Size)
		}
	}
	// The tail: from a multiple of 16 (where stored Merkle nodes begin),
	// each event must parse with its seq, and their leaves, appended to the
	// stored range before them, must give the stored tree.
	from := uint64(0)
	if size > verifyTail {
		from = size - verifyTail
	}
	from -= from % (1 << nodeMinLevel)
	tail, err := readRange(btx, from)
	if err != nil {
		return damaged("the tree of %d events: %v", from, err)
	}
	var bad error
	err = newLogReader(btx).each(from, size, func(seq uint64, v []byte) bool {
		ev, err := parseEvent(v)
		switch {
		case err != nil:
			bad = damaged("event %d: %v", seq, err)
		case ev.Seq != seq:
			bad = damaged("event %d says seq %d", seq, ev.Seq)
		default:
			if err := tail.Append(hasher.HashLeaf(v), nil); err != nil {
				bad = damaged("event %d: %v", seq, err)
			}
		}
		return bad == nil
	})
	if err != nil {
		return damaged("%v", err)
	}
	if bad != nil {
		return bad
	}
	stored, err := readRange(btx, size)
	if err != nil {
		return damaged("the tree of %d events: %v", size, err)
	}
	got, err := rootOf(tail)
	if err != nil {
		return damaged("%v", err)
	}
	want, err := rootOf(stored)
	if err != nil {
		return damaged("the tree of %d events: %v", size, err)
	}
	if !bytes.Equal(got, want) {
		return damaged("events %d to %d are not those the stored tree was made of", from, size-1)
	}
	return nil
}
