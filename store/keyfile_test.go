package store_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
	"go.etcd.io/bbolt"
)

// The data keys of issue 12's privacy rules: each record's crop is sealed
// under a key of its own, random, wrapped by the master key and bound to its
// record, kept only in the key file.
func TestDataKeys(t *testing.T) {
	db, clock := MustOpenDB(t)
	var recs []*store.Record
	for i := range 12 {
		// Two subjects: a subject's records must not share a key.
		r := NewRecord(clock, []string{"subj-a", "subj-b"}[i%2], "visit-"+string(rune('a'+i)), Retained(clock, purposeChannel, time.Hour))
		MustPut(t, db, FaceJPEG(t), r)
		recs = append(recs, r)
	}
	keys := make(map[string][]byte)    // record id → data key
	wrapped := make(map[string][]byte) // record id → as stored
	sealed := make(map[string][]byte)  // record id → sealed crop
	if err := db.View(func(tx *store.Tx) error {
		for _, r := range recs {
			k, err := tx.DataKey(r.ID)
			if err != nil {
				return err
			}
			keys[r.ID], wrapped[r.ID], sealed[r.ID] = k, db.WrappedKey(r.ID), tx.SealedImage(r.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	master := gcm(t, testMasterKey)
	a, b := recs[0].ID, recs[2].ID // same subject

	t.Run("OpensOnlyWithTheMasterKeyAndItsRecord", func(t *testing.T) {
		for _, r := range recs {
			got, err := master.Open(nil, nil, wrapped[r.ID], store.DataKeyAD(r.ID))
			if err != nil || !bytes.Equal(got, keys[r.ID]) {
				t.Fatalf("record %s: the stored key does not unwrap to its data key (%v)", r.ID, err)
			}
		}
		other := gcm(t, bytes.Repeat([]byte{0xa3}, 32))
		if _, err := other.Open(nil, nil, wrapped[a], store.DataKeyAD(a)); err == nil {
			t.Error("a data key unwraps under another master key")
		}
		for name, ad := range map[string][]byte{"another record's": store.DataKeyAD(b), "no": nil, "the bare id as": []byte(a)} {
			if _, err := master.Open(nil, nil, wrapped[a], ad); err == nil {
				t.Errorf("a data key unwraps with %s additional data", name)
			}
		}
	})

	t.Run("RandomAndOnePerRecord", func(t *testing.T) {
		seen := make(map[string]string)
		for id, k := range keys {
			if len(k) != 32 {
				t.Errorf("record %s: data key of %d bytes, want 32", id, len(k))
			}
			if bytes.Count(k, k[:1]) == len(k) {
				t.Errorf("record %s: data key is one byte repeated: %x", id, k)
			}
			if other, ok := seen[string(k)]; ok {
				t.Errorf("records %s and %s share a data key", id, other)
			}
			seen[string(k)] = id
		}
	})

	t.Run("NeverRawInAnyFile", func(t *testing.T) {
		for _, f := range stateFiles(t, db) {
			raw := MustRead(t, f)
			for id, k := range keys {
				if bytes.Contains(raw, k) {
					t.Errorf("%s holds the raw data key of record %s", filepath.Base(f), id)
				}
			}
		}
		raw := MustRead(t, db.Path())
		for id, w := range wrapped {
			if bytes.Contains(raw, w) {
				t.Errorf("the store file holds the wrapped data key of record %s", id)
			}
		}
	})

	t.Run("ImageOpensOnlyUnderItsKey", func(t *testing.T) {
		if _, err := gcm(t, keys[a]).Open(nil, nil, sealed[a], []byte(a)); err != nil {
			t.Fatalf("record %s's image does not open under its own key: %v", a, err)
		}
		if _, err := gcm(t, keys[b]).Open(nil, nil, sealed[a], []byte(a)); err == nil {
			t.Error("an image opens under another record's key")
		}
		if _, err := gcm(t, keys[a]).Open(nil, nil, sealed[a], []byte(b)); err == nil {
			t.Error("an image opens as another record's")
		}
	})
}

func gcm(tb testing.TB, key []byte) cipher.AEAD {
	tb.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		tb.Fatal(err)
	}
	return aead
}

// stateFiles lists the files of the store's directory.
func stateFiles(tb testing.TB, db *store.DB) []string {
	tb.Helper()
	dir := filepath.Dir(db.Path())
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, filepath.Join(dir, e.Name()))
	}
	return files
}

// TestErasureShreds erases records, as a revoke and as an expiry do, and
// checks that after the maintenance step (Compact) the erased crops' data
// keys, raw or wrapped, are in no file of the state directory, and that
// Compact overwrote the key file without rewriting the store file.
func TestErasureShreds(t *testing.T) {
	for _, how := range []string{"Revoke", "Expiry"} {
		t.Run(how, func(t *testing.T) {
			db, clock := MustOpenDB(t)
			erased := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
			// A record of the same subject that stays: the erased record's
			// key must go all the same.
			kept := NewRecord(clock, "subj-a", "visit-2", Retained(clock, purposeChannel, 48*time.Hour))
			other := NewRecord(clock, "subj-b", "visit-3", Retained(clock, purposeChannel, 48*time.Hour))
			MustPut(t, db, FaceJPEG(t), erased, kept, other)

			var key, wrapped, sealed []byte
			if err := db.View(func(tx *store.Tx) error {
				var err error
				key, err = tx.DataKey(erased.ID)
				wrapped, sealed = db.WrappedKey(erased.ID), tx.SealedImage(erased.ID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(wrapped) == 0 || len(sealed) == 0 {
				t.Fatal("no wrapped key or sealed image to look for")
			}

			if how == "Revoke" {
				MustUpdate(t, db, func(tx *store.Tx) error {
					_, err := tx.Erase(store.Selector{Visit: erased.Visit})
					return err
				})
			} else {
				clock.Advance(time.Hour)
				if res := MustSweep(t, db, clock.Now()); len(res.Expired) != 1 || !res.Expired[0].Deleted {
					t.Fatalf("sweep: %+v, want the record deleted", res.Expired)
				}
			}
			// The key is gone from the store at once...
			assertGoneRecords(t, db, erased)
			// ...but its bytes stay in a freed page of the key file until
			// Compact overwrites it: without that the test proves nothing.
			if !bytes.Contains(MustRead(t, db.KeysPath()), wrapped) {
				t.Fatal("the wrapped key is already out of the key file before Compact; the test proves nothing")
			}
			if got, want := recoverableKeys(t, db.KeysPath()), sortedIDs(erased, kept, other); !slices.Equal(got, want) {
				t.Fatalf("keys recoverable from the key file's pages before Compact: %v, want %v", got, want)
			}
			storeBefore := MustRead(t, db.Path())
			keysBefore := MustRead(t, db.KeysPath())

			stats, err := db.Compact()
			if err != nil {
				t.Fatal(err)
			}
			if stats.Wiped == 0 || stats.OrphanKeys != 0 {
				t.Errorf("Compact: %+v, want freed pages wiped and no orphan key", stats)
			}
			if stats.Before != stats.After || stats.After != int64(len(storeBefore)+len(keysBefore)) {
				t.Errorf("Compact sizes %d, %d; the files hold %d bytes", stats.Before, stats.After, len(storeBefore)+len(keysBefore))
			}

			for _, f := range stateFiles(t, db) {
				raw := MustRead(t, f)
				if bytes.Contains(raw, wrapped) {
					t.Errorf("%s holds the erased record's wrapped data key", filepath.Base(f))
				}
				if bytes.Contains(raw, key) {
					t.Errorf("%s holds the erased record's raw data key", filepath.Base(f))
				}
				ids := recoverableKeys(t, f)
				if slices.Contains(ids, erased.ID) {
					t.Errorf("%s: the erased record's data key can be recovered from its pages", filepath.Base(f))
				}
				if f == db.Path() && len(ids) > 0 {
					t.Errorf("data keys of %v can be recovered from the store file", ids)
				}
			}
			if got, want := recoverableKeys(t, db.KeysPath()), sortedIDs(kept, other); !slices.Equal(got, want) {
				t.Errorf("keys recoverable from the key file's pages: %v, want %v", got, want)
			}
			if !bytes.Equal(MustRead(t, db.Path()), storeBefore) {
				t.Error("Compact wrote to the store file")
			}
			if bytes.Equal(MustRead(t, db.KeysPath()), keysBefore) {
				t.Error("Compact did not overwrite the key file")
			}
			// The sealed crop may well stay in a freed page of the store
			// file: no key opens it any more.
			if _, ok := sharedChunk(storeBefore, sealed, 32); !ok {
				t.Log("the erased crop's ciphertext was already overwritten in the store file")
			}
			assertPresent(t, db, kept, other)

			// A second Compact finds nothing to do.
			if stats, err := db.Compact(); err != nil || stats.Wiped != 0 {
				t.Errorf("second Compact: %+v, %v; want nothing wiped", stats, err)
			}
		})
	}
}

// TestOrphanKeys: a data key without a record, left by a capture that
// stopped between its two commits (here a panic after its keys committed),
// is removed, and its page overwritten, by Compact and when the store opens.
func TestOrphanKeys(t *testing.T) {
	for _, when := range []string{"Compact", "Open"} {
		t.Run(when, func(t *testing.T) {
			db, clock := MustOpenDB(t)
			kept := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
			MustPut(t, db, []byte("image"), kept)

			orphan := NewRecord(clock, "subj-b", "visit-2", Retained(clock, purposeChannel, time.Hour))
			db.SetHook(func(step string) {
				if step == store.StepKeysCommitted {
					panic("stopped between the commits")
				}
			})
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("the capture did not stop after its keys committed")
					}
				}()
				db.Update(func(tx *store.Tx) error { return tx.PutRecord(orphan, []byte("image")) })
			}()
			db.SetHook(nil)
			if db.WrappedKey(orphan.ID) == nil {
				t.Fatal("no key committed for the stopped capture; the test proves nothing")
			}

			switch when {
			case "Compact":
				stats, err := db.Compact()
				if err != nil {
					t.Fatal(err)
				}
				if stats.OrphanKeys != 1 {
					t.Errorf("Compact removed %d orphan keys, want 1", stats.OrphanKeys)
				}
			case "Open":
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				db = MustOpenDBAt(t, db.Path(), clock)
			}
			if db.WrappedKey(orphan.ID) != nil {
				t.Error("the orphan key is still in the key file")
			}
			if ids := recoverableKeys(t, db.KeysPath()); slices.Contains(ids, orphan.ID) {
				t.Error("the orphan key can be recovered from the key file's pages")
			}
			assertPresent(t, db, kept)
		})
	}
}

// TestMissingKey: a record whose key is gone (a key file lost or replaced)
// still opens, and Check says what is wrong.
func TestMissingKey(t *testing.T) {
	db, clock := MustOpenDB(t)
	r := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
	MustPut(t, db, []byte("image"), r)
	MustClose(t, db)
	kdb, err := bbolt.Open(db.KeysPath(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kdb.Update(func(ktx *bbolt.Tx) error { return ktx.Bucket([]byte("keys")).Delete([]byte(r.ID)) }); err != nil {
		t.Fatal(err)
	}
	kdb.Close()
	db = NewTestDB(db.Path(), clock)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *store.Tx) error {
		_, err := tx.Image(r.ID, purposeChannel)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Image of a record without a key: %v, want ErrNotFound", err)
	}
	if err := db.Check(); err == nil || !strings.Contains(err.Error(), "data key") {
		t.Errorf("Check: %v, want an error about the data key", err)
	}
}

// recoverableKeys reads a bbolt file as someone with the disk and the
// master key would: every page, in use or freed, that still looks like a
// leaf page (inline buckets included) is parsed, and every value that
// unwraps under the master key as the data key of the record named by its
// key is reported, by record id.
func recoverableKeys(tb testing.TB, path string) []string {
	tb.Helper()
	return recoverable(tb, path, func(k []byte) []byte { return store.DataKeyAD(string(k)) })
}

// recoverable is recoverableKeys for values sealed by the master key with
// ad(key) as additional data.
func recoverable(tb testing.TB, path string, ad func(k []byte) []byte) []string {
	tb.Helper()
	raw := MustRead(tb, path)
	master := gcm(tb, testMasterKey)
	found := make(map[string]bool)
	for off := 0; off+pageSize <= len(raw); off += pageSize {
		overflow := int(binary.LittleEndian.Uint32(raw[off+12:]))
		end := min(len(raw), off+(1+overflow)*pageSize)
		leafValues(raw[off:end], func(k, v []byte) {
			if _, err := master.Open(nil, nil, v, ad(k)); err == nil {
				found[string(k)] = true
			}
		})
	}
	return slices.Sorted(maps.Keys(found))
}

const pageSize = 4096

// leafValues calls fn with each key and value of p if it is a leaf page,
// descending into inline buckets. It trusts nothing in p: a freed page may
// hold anything.
func leafValues(p []byte, fn func(k, v []byte)) {
	const (
		headerSize  = 16
		elementSize = 16
		leafFlag    = 0x02
		bucketFlag  = 0x01
	)
	if len(p) < headerSize || binary.LittleEndian.Uint16(p[8:])&leafFlag == 0 {
		return
	}
	count := int(binary.LittleEndian.Uint16(p[10:]))
	for i := range count {
		e := headerSize + i*elementSize
		if e+elementSize > len(p) {
			return
		}
		flags := binary.LittleEndian.Uint32(p[e:])
		pos := uint64(binary.LittleEndian.Uint32(p[e+4:]))
		ksize := uint64(binary.LittleEndian.Uint32(p[e+8:]))
		vsize := uint64(binary.LittleEndian.Uint32(p[e+12:]))
		start := uint64(e) + pos
		if start+ksize+vsize > uint64(len(p)) {
			continue
		}
		k, v := p[start:start+ksize], p[start+ksize:start+ksize+vsize]
		if flags&bucketFlag != 0 {
			// A bucket: inline when its root page id (the first 8 bytes) is 0.
			if len(v) > 16 && binary.LittleEndian.Uint64(v) == 0 {
				leafValues(v[16:], fn)
			}
			continue
		}
		fn(k, v)
	}
}
