package store_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

func TestOpen(t *testing.T) {
	t.Run("Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			modify func(db *store.DB)
			want   string
		}{
			{"ShortMasterKey", func(db *store.DB) { db.MasterKey = make([]byte, 16) }, "master key is 16 bytes"},
			{"NoMasterKey", func(db *store.DB) { db.MasterKey = nil }, "master key is 0 bytes"},
			{"BadSite", func(db *store.DB) { db.Site = "Office 7" }, "site"},
			{"NoCamera", func(db *store.DB) { db.Camera = "" }, "camera"},
			{"NoClock", func(db *store.DB) { db.Now = nil }, "clock"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "consentcam.db")
				db := NewTestDB(path, NewClock())
				tc.modify(db)
				err := db.Open()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open: %v, want an error about %q", err, tc.want)
				}
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a refused Open created the file (%v)", err)
				}
			})
		}
	})

	t.Run("WrongMasterKey", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		MustAppend(t, db, 1, store.EventAgentStarted)
		MustClose(t, db)
		other := NewTestDB(db.Path(), clock)
		other.MasterKey = bytes.Repeat([]byte{1}, 32)
		if err := other.Open(); err == nil || !strings.Contains(err.Error(), "master key") {
			t.Fatalf("Open with another master key: %v", err)
		}
		MustOpenDBAt(t, db.Path(), clock) // the right key still opens it
	})

	t.Run("Locked", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		second := NewTestDB(db.Path(), clock)
		err := second.Open()
		if err == nil {
			second.Close()
			t.Fatal("a second DB opened the file in use")
		}
		if !errors.Is(err, store.ErrLocked) {
			t.Errorf("err = %v, want ErrLocked", err)
		}
	})

	t.Run("RemovesInterruptedCompaction", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		MustClose(t, db)
		leftover := db.Path() + ".compact"
		if err := os.WriteFile(leftover, []byte("a copy that may hold erased records"), 0o600); err != nil {
			t.Fatal(err)
		}
		MustOpenDBAt(t, db.Path(), clock)
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the interrupted compaction's copy is still there (%v)", err)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustClose(t, db)
		for name, err := range map[string]error{
			"Update": db.Update(func(tx *store.Tx) error { return nil }),
			"View":   db.View(func(tx *store.Tx) error { return nil }),
			"Ack":    db.Ack(1),
			"Events": second(db.Events(0, 1)),
			"Spent":  second(db.Spent("x")),
		} {
			if !errors.Is(err, store.ErrClosed) {
				t.Errorf("%s on a closed DB: %v, want ErrClosed", name, err)
			}
		}
		if _, err := db.Compact(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("Compact on a closed DB: %v, want ErrClosed", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("CreatesDirectory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state", "consentcam.db")
		MustOpenDBAt(t, path, NewClock())
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("file mode %v, want 0600", mode)
		}
	})
}

func second[T any](_ T, err error) error { return err }

// An Update that changes nothing (the sweep the agent runs every minute,
// when nothing expired) writes nothing to either file.
func TestUpdateWritesNothingWhenNothingChanged(t *testing.T) {
	db, clock := MustOpenDB(t)
	r := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
	MustPut(t, db, []byte("image"), r)
	files := map[string][]byte{db.Path(): MustRead(t, db.Path()), db.KeysPath(): MustRead(t, db.KeysPath())}
	for range 3 {
		clock.Advance(time.Minute)
		if res := MustSweep(t, db, clock.Now()); len(res.Expired) != 0 {
			t.Fatalf("sweep: %+v expired", res.Expired)
		}
		MustUpdate(t, db, func(tx *store.Tx) error {
			_, err := tx.Image(r.ID, purposeChannel)
			return err
		})
	}
	for path, b := range files {
		if !bytes.Equal(MustRead(t, path), b) {
			t.Errorf("%s was written by transactions that changed nothing", filepath.Base(path))
		}
	}
	// One that changes something does write.
	MustAppend(t, db, 1, store.EventWindowOpened)
	if bytes.Equal(MustRead(t, db.Path()), files[db.Path()]) {
		t.Error("an appended event was not written")
	}
}

// TestConcurrentUse runs writers, readers and compactions at once; the race
// detector and the end-of-test check judge the outcome.
func TestConcurrentUse(t *testing.T) {
	db, clock := MustOpenDB(t)
	done := make(chan error, 4)
	go func() {
		for i := range 50 {
			rec := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
			err := db.Update(func(tx *store.Tx) error {
				if err := tx.PutRecord(rec, []byte("image")); err != nil {
					return err
				}
				return tx.Append(&store.Event{Type: store.EventCaptureSaved, Record: rec.ID})
			})
			if err == nil && i%10 == 9 {
				err = db.Update(func(tx *store.Tx) error {
					_, err := tx.Erase(store.Selector{Subject: "subj-a"})
					return err
				})
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for range 200 {
			n := db.Size()
			if _, err := db.Root(n); err != nil {
				done <- err
				return
			}
			if _, err := db.Pending(10); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for range 3 {
			if _, err := db.Compact(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for range 50 {
			msgs, err := db.Pending(5)
			if err == nil && len(msgs) > 0 {
				err = db.Ack(msgs[0].Seq)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	assertSeqs(t, db, 50)
}
