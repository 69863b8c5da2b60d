package store_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// smallStore writes a store of a few records and events, closed, and
// returns its directory.
func smallStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	clock := NewClock()
	db := NewTestDB(filepath.Join(dir, "consentcam.db"), clock)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"s-1", "s-2", "s-3"} {
		MustPut(t, db, bytes.Repeat([]byte{byte(i)}, 3000), NewRecord(clock, s, "v-"+s, Retained(clock, "p", time.Hour)))
	}
	MustAppend(t, db, 10, store.EventSourceRecovered)
	MustCheckpoint(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openDamaged opens the store of dir and returns Open's error, or
// Verify's.
func openDamaged(t *testing.T, dir string) error {
	t.Helper()
	db := NewTestDB(filepath.Join(dir, "consentcam.db"), NewClock())
	if err := db.Open(); err != nil {
		return err
	}
	defer db.Close()
	return db.Verify()
}

// A store file or key file that is empty, cut short, or missing beside a
// store with records is refused, as damaged, naming the file and what is
// wrong: never a new empty store in its place, never a fault.
func TestDamagedFiles(t *testing.T) {
	for _, c := range []struct {
		name    string
		damage  func(dir string) error
		file    string
		problem string
	}{
		{"empty store file", func(dir string) error { return os.Truncate(filepath.Join(dir, "consentcam.db"), 0) },
			"consentcam.db", "empty"},
		{"empty key file", func(dir string) error { return os.Truncate(filepath.Join(dir, "consentcam.keys"), 0) },
			"consentcam.keys", "empty"},
		{"store file cut in half", func(dir string) error { return halve(filepath.Join(dir, "consentcam.db")) },
			"consentcam.db", "cut short"},
		{"key file cut in half", func(dir string) error { return halve(filepath.Join(dir, "consentcam.keys")) },
			"consentcam.keys", "cut short"},
		{"key file gone", func(dir string) error { return os.Remove(filepath.Join(dir, "consentcam.keys")) },
			"consentcam.keys", "missing"},
		{"a store file that is no store", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "consentcam.db"), bytes.Repeat([]byte("not bbolt "), 2000), 0o600)
		}, "consentcam.db", "not a store file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := smallStore(t)
			if err := c.damage(dir); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			err := openDamaged(t, dir)
			var d *store.DamageError
			if !errors.Is(err, store.ErrDamaged) || !errors.As(err, &d) {
				t.Fatalf("error %v, want a DamageError", err)
			}
			if filepath.Base(d.Path) != c.file || !strings.Contains(d.Problem, c.problem) {
				t.Errorf("%v: want %s named, saying %q", err, c.file, c.problem)
			}
			if after := snapshot(t, dir); !equalFiles(before, after) {
				t.Error("opening a damaged store changed its files")
			}
		})
	}
}

// Any page of the store file with 16 bytes flipped: the store is refused
// as damaged, or, where the flip hit nothing the store reads (a free
// page, the other meta page), it opens and its log and records all check
// out. Never a fault, never a log that does not verify.
func TestFlippedPages(t *testing.T) {
	clean := smallStore(t)
	data, err := os.ReadFile(filepath.Join(clean, "consentcam.db"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(filepath.Join(clean, "consentcam.keys"))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for page := range len(data) / 4096 {
		for _, at := range []int{16, 200, 2048} {
			dir := t.TempDir()
			bad := bytes.Clone(data)
			for i := range 16 {
				bad[page*4096+at+i] ^= 0x5a
			}
			os.WriteFile(filepath.Join(dir, "consentcam.db"), bad, 0o600)
			os.WriteFile(filepath.Join(dir, "consentcam.keys"), keys, 0o600)
			err := openDamaged(t, dir)
			if err != nil {
				refused++
				if !errors.Is(err, store.ErrDamaged) && !strings.Contains(err.Error(), "master key") && !strings.Contains(err.Error(), "format version") {
					t.Errorf("page %d at %d: %v, want it refused as damaged", page, at, err)
				}
			}
		}
	}
	if refused == 0 {
		t.Error("no flipped page was refused: the test damages nothing")
	}
	t.Logf("%d of %d flips (3 in each of %d pages) refused", refused, 3*(len(data)/4096), len(data)/4096)
}

func halve(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Truncate(path, fi.Size()/2)
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// BenchmarkVerify measures, on the store after a year of the office (see
// BenchmarkYear), what checking costs: open (Open and Close: the check
// `consentcam run` makes at every start) and full (Verify: `consentcam
// store check`). With -verify.cold (root only), the page cache is dropped
// before each open, as at a box's start. Figures: docs/RELIABILITY.md,
// "Damaged files".
func BenchmarkVerify(b *testing.B) {
	path := yearStore(b, 1)
	b.Run("open", func(b *testing.B) {
		db := NewTestDB(path, NewClock())
		for b.Loop() {
			if *verifyCold {
				b.StopTimer()
				exec.Command("sync").Run()
				if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
					b.Fatalf("-verify.cold: %v", err)
				}
				b.StartTimer()
			}
			if err := db.Open(); err != nil {
				b.Fatal(err)
			}
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	if *verifyCold {
		return
	}
	b.Run("full", func(b *testing.B) {
		o := openOffice(b, path, 365)
		for b.Loop() {
			if err := o.db.Verify(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var verifyCold = flag.Bool("verify.cold", false, "BenchmarkVerify: drop the page cache before each open (root only)")
