package store_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
	"go.etcd.io/bbolt"
)

// v1Store is testdata/v1 (see its README): a store written by format 1.
type v1Store struct {
	ErasedWrappedKey string `json:"erased_wrapped_key"`
	Kept             []struct{ ID, Subject, Visit string }
}

func (v *v1Store) image(visit string) []byte {
	return bytes.Repeat([]byte("crop of "+visit+" "), 400)
}

// copyV1Store copies the format-1 store into a new directory.
func copyV1Store(tb testing.TB) (string, *v1Store) {
	tb.Helper()
	var v v1Store
	if err := json.Unmarshal(MustRead(tb, filepath.Join("testdata", "v1", "expect.json")), &v); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "consentcam.db")
	if err := copyFile(path, filepath.Join("testdata", "v1", "consentcam.db")); err != nil {
		tb.Fatal(err)
	}
	return path, &v
}

// v1Log is what a format-1 store file holds of the log, read with bbolt
// alone.
type v1Log struct {
	events, checkpoint []byte // JSON Lines, the latest checkpoint
	pending            int    // events in the outbox
}

func readV1Log(tb testing.TB, path string) v1Log {
	tb.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	var log v1Log
	var buf bytes.Buffer
	err = b.View(func(tx *bbolt.Tx) error {
		log.checkpoint = bytes.Clone(tx.Bucket([]byte("meta")).Get([]byte("checkpoint")))
		log.pending = tx.Bucket([]byte("outbox")).Stats().KeyN
		return tx.Bucket([]byte("events")).ForEach(func(_, v []byte) error {
			buf.Write(v)
			buf.WriteByte('\n')
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	log.events = buf.Bytes()
	return log
}

// TestMigrateV1 opens a store written by format 1: it is migrated in place,
// its log verifies before and after, what it kept reads back, and no key of
// format 1 (the erased subject's, left in a freed page, or those of the
// subjects kept) can be recovered from any file.
func TestMigrateV1(t *testing.T) {
	if arg := os.Getenv(migrateChildEnv); arg != "" {
		migrateChild(t, arg)
		return
	}
	t.Run("Whole", func(t *testing.T) {
		path, v1 := copyV1Store(t)
		testMigrated(t, path, v1, readV1Log(t, path))
	})
	// A migration interrupted (SIGKILL) after a batch of crops, or after its
	// last transaction, goes on at the next Open.
	for _, step := range []string{store.StepKeysCommitted, store.StepMigrated} {
		t.Run("KilledAt="+step, func(t *testing.T) {
			path, v1 := copyV1Store(t)
			log := readV1Log(t, path)
			cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateV1$", "-test.count=1")
			cmd.Env = append(os.Environ(), migrateChildEnv+"="+step+":"+path)
			out, err := cmd.CombinedOutput()
			if status, ok := exitStatus(err); !ok || status.Signal() != syscall.SIGKILL {
				t.Fatalf("the child was not killed at %s: %v\n%s", step, err, out)
			}
			testMigrated(t, path, v1, log)
		})
	}
}

// migrateChildEnv, when set to STEP:PATH, makes TestMigrateV1 the child:
// it opens the store at PATH and kills itself at STEP.
const migrateChildEnv = "CONSENTCAM_STORE_MIGRATE_CHILD"

func migrateChild(t *testing.T, arg string) {
	step, path, _ := bytes.Cut([]byte(arg), []byte(":"))
	db := NewTestDB(string(path), NewClock())
	db.SetHook(func(s string) {
		if s == string(step) {
			syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
		}
	})
	err := db.Open()
	t.Fatalf("Open returned (%v) instead of being killed at %s", err, step)
}

func exitStatus(err error) (syscall.WaitStatus, bool) {
	exit, ok := err.(*exec.ExitError)
	if !ok {
		return 0, false
	}
	status, ok := exit.Sys().(syscall.WaitStatus)
	return status, ok
}

// testMigrated opens the format-1 store at path (migrating it, or finishing
// its migration) and checks the outcome against v1 and the log it held
// before.
func testMigrated(t *testing.T, path string, v1 *v1Store, log v1Log) {
	t.Helper()
	erasedKey, err := hex.DecodeString(v1.ErasedWrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	before := log.events
	if _, err := store.VerifyLog(bytes.NewReader(before), log.checkpoint, testDevicePub); err != nil {
		t.Fatalf("the format-1 log does not verify before the migration: %v", err)
	}
	// Format 1 sealed a subject's key with the subject as additional data
	// (so is the key check value, under its key "keycheck": not a data key).
	subjectKey := func(k []byte) []byte {
		if string(k) == "keycheck" {
			return nil
		}
		return k
	}
	// Format 1 keeps its subjects' keys in the file, and the erased
	// subject's in a freed page: without them the test proves nothing.
	if !bytes.Contains(MustRead(t, path), erasedKey) {
		t.Fatal("the format-1 file does not hold the erased subject's key")
	}
	if got := recoverable(t, path, subjectKey); !slices.Contains(got, "subj-a") || !slices.Contains(got, "subj-b") {
		t.Fatalf("subject keys recoverable from the format-1 file: %v, want subj-a and subj-b among them", got)
	}

	clock := NewClock()
	clock.Advance(4 * time.Hour) // after what testdata/v1 did
	db := MustOpenDBAt(t, path, clock)

	if after := MustLog(t, db); !bytes.Equal(after, before) {
		t.Errorf("the log changed in the migration:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	MustVerifyLog(t, db)
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	if n, err := db.RecordCount(); err != nil || n != len(v1.Kept) {
		t.Errorf("RecordCount = %d, %v; want %d", n, err, len(v1.Kept))
	}
	if n, err := db.PendingCount(); err != nil || n != log.pending || n == 0 {
		t.Errorf("PendingCount = %d, %v; want the %d events not acknowledged", n, err, log.pending)
	}
	if msgs, err := db.Pending(log.pending + 1); err != nil || len(msgs) != log.pending {
		t.Errorf("Pending: %d messages, %v; want %d", len(msgs), err, log.pending)
	}
	var kept []string
	MustUpdate(t, db, func(tx *store.Tx) error {
		for _, r := range v1.Kept {
			img, err := tx.Image(r.ID, purposeChannel)
			if err != nil {
				return err
			}
			if !bytes.Equal(img, v1.image(r.Visit)) {
				t.Errorf("record %s: image differs after the migration", r.ID)
			}
			kept = append(kept, r.ID)
		}
		return nil
	})
	slices.Sort(kept)

	files := stateFiles(t, db)
	if want := []string{path, db.KeysPath()}; !slices.Equal(files, want) {
		t.Errorf("state directory holds %v, want %v", files, want)
	}
	for _, f := range files {
		if bytes.Contains(MustRead(t, f), erasedKey) {
			t.Errorf("%s still holds the erased subject's wrapped key", filepath.Base(f))
		}
		if got := recoverable(t, f, subjectKey); len(got) != 0 {
			t.Errorf("%s: format-1 data keys of %v can be recovered", filepath.Base(f), got)
		}
	}
	if got := recoverableKeys(t, db.KeysPath()); !slices.Equal(got, kept) {
		t.Errorf("data keys in the key file: %v, want those of the records kept %v", got, kept)
	}

	// The store works on, and opens again without migrating.
	r := NewRecord(clock, "subj-e", "visit-6", Retained(clock, purposeChannel, time.Hour))
	MustPut(t, db, []byte("after the migration"), r)
	MustUpdate(t, db, func(tx *store.Tx) error {
		_, _, err := tx.SignLog(testOrigin, MustSigner(t), "agent")
		return err
	})
	db = MustReopen(t, db, clock)
	assertPresent(t, db, r)
	if !bytes.HasPrefix(MustLog(t, db), before) {
		t.Error("the log lost events")
	}
}
