package store_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// Benchmarks of what the agent does most and of what must not grow with the
// store. Every transaction is fsync'd, as in production. Figures and how to
// rerun them: docs/BENCHMARKS.md, "Store".

// benchFileVersion names the cached 1M-record store; bump it when the file
// format or fillStore changes.
const benchFileVersion = 3

// OpenBenchDB opens a store without the end-of-test check, which would read
// every record of the big stores.
func OpenBenchDB(b *testing.B, path string, clock *Clock) *store.DB {
	b.Helper()
	db := NewTestDB(path, clock)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// fillStore adds n records, five per subject, with 256-byte images and a
// year of retention, in transactions of 10,000 records.
func fillStore(tb testing.TB, db *store.DB, clock *Clock, n int) {
	tb.Helper()
	image := make([]byte, 256)
	rand.Read(image)
	const batch = 10_000
	for done := 0; done < n; {
		k := min(batch, n-done)
		MustUpdate(tb, db, func(tx *store.Tx) error {
			for i := done; i < done+k; i++ {
				r := NewRecord(clock, fmt.Sprintf("fill-%d", i/5), fmt.Sprintf("visit-%d", i),
					Retained(clock, purposeChannel, 365*24*time.Hour))
				if err := tx.PutRecord(r, image); err != nil {
					return err
				}
			}
			return nil
		})
		done += k
	}
}

// benchStore returns the path of a store of n filler records. Stores of
// more than 100,000 records are built once and cached in the system's
// temporary directory (the store file and its key file), keyed by
// benchFileVersion, and each benchmark works on a copy.
func benchStore(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "consentcam.db")
	if n <= 100_000 {
		buildStore(b, path, n)
		return path
	}
	cached := filepath.Join(os.TempDir(), fmt.Sprintf("consentcam-store-bench-v%d-%d.db", benchFileVersion, n))
	if _, err := os.Stat(cached); errors.Is(err, os.ErrNotExist) {
		b.Logf("building %s (once)", cached)
		tmp := filepath.Join(b.TempDir(), "building.db")
		buildStore(b, tmp, n)
		// The key file first: the store file's presence says both are there.
		for _, f := range [][2]string{{keysPathOf(cached), keysPathOf(tmp)}, {cached, tmp}} {
			if err := os.Rename(f[1], f[0]); err != nil {
				b.Fatal(err)
			}
		}
	} else if err != nil {
		b.Fatal(err)
	}
	for _, f := range [][2]string{{path, cached}, {keysPathOf(path), keysPathOf(cached)}} {
		if err := copyFile(f[0], f[1]); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

func buildStore(b *testing.B, path string, n int) {
	b.Helper()
	clock := NewClock()
	db := OpenBenchDB(b, path, clock)
	fillStore(b, db, clock, n)
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// BenchmarkPutRecord saves a 64 KiB face crop with its capture.saved event in
// one fsync'd transaction.
func BenchmarkPutRecord(b *testing.B) {
	clock := NewClock()
	db := OpenBenchDB(b, filepath.Join(b.TempDir(), "consentcam.db"), clock)
	image := make([]byte, 64<<10)
	rand.Read(image)
	b.SetBytes(int64(len(image)))
	for i := 0; b.Loop(); i++ {
		r := NewRecord(clock, fmt.Sprintf("subj-%d", i/4), fmt.Sprintf("visit-%d", i),
			Retained(clock, purposeChannel, 720*time.Hour))
		err := db.Update(func(tx *store.Tx) error {
			if err := tx.PutRecord(r, image); err != nil {
				return err
			}
			return tx.Append(&store.Event{Type: store.EventCaptureSaved, Visit: r.Visit, Subject: r.Subject, Record: r.ID, Purposes: purposes(r)})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend appends audit events: one per transaction, and a hundred
// per transaction (ns/event is then the cost of one of them).
func BenchmarkAppend(b *testing.B) {
	for _, perTx := range []int{1, 100} {
		b.Run(fmt.Sprintf("events-per-tx=%d", perTx), func(b *testing.B) {
			db := OpenBenchDB(b, filepath.Join(b.TempDir(), "consentcam.db"), NewClock())
			for b.Loop() {
				err := db.Update(func(tx *store.Tx) error {
					for range perTx {
						if err := tx.Append(&store.Event{Type: store.EventWindowOpened, Visit: "visit-1", Subject: "subj-a",
							Purposes: []string{purposeChannel}, Actor: "kiosk-1"}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perTx), "ns/event")
		})
	}
}

// BenchmarkErase erases a subject of five records, with its audit events, in
// stores of 1k and 100k records: the cost must not grow with the store.
func BenchmarkErase(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("records=%s", count(n)), func(b *testing.B) {
			clock := NewClock()
			db := OpenBenchDB(b, benchStore(b, n), clock)
			image := make([]byte, 64<<10)
			rand.Read(image)
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				subject := fmt.Sprintf("erased-%d", i)
				MustUpdate(b, db, func(tx *store.Tx) error {
					for j := range 5 {
						r := NewRecord(clock, subject, fmt.Sprintf("visit-%d-%d", i, j), Retained(clock, purposeChannel, time.Hour))
						if err := tx.PutRecord(r, image); err != nil {
							return err
						}
					}
					return nil
				})
				b.StartTimer()
				err := db.Update(func(tx *store.Tx) error {
					erased, err := tx.Erase(store.Selector{Subject: subject})
					if err != nil {
						return err
					}
					if len(erased) != 5 {
						return fmt.Errorf("erased %d records, want 5", len(erased))
					}
					for _, r := range erased {
						if err := tx.Append(&store.Event{Type: store.EventRecordErased, Subject: subject, Record: r.ID}); err != nil {
							return err
						}
					}
					return tx.Append(&store.Event{Type: store.EventConsentRevoked, Subject: subject})
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSweep sweeps stores of 1k and 1M records where nothing has
// expired, as the agent does every minute: in a committed transaction, and
// (no-commit) the sweep's own work alone, in a read transaction.
func BenchmarkSweep(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%s", count(n)), func(b *testing.B) {
			clock := NewClock()
			db := OpenBenchDB(b, benchStore(b, n), clock)
			if got, err := db.RecordCount(); err != nil || got != n {
				b.Fatalf("store has %d records (%v), want %d", got, err, n)
			}
			sweep := func(tx *store.Tx) error {
				res, err := tx.Sweep(clock.Now())
				if err == nil && len(res.Expired) != 0 {
					err = fmt.Errorf("%d records expired", len(res.Expired))
				}
				return err
			}
			b.Run("commit", func(b *testing.B) {
				for b.Loop() {
					if err := db.Update(sweep); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("no-commit", func(b *testing.B) {
				for b.Loop() {
					if err := db.View(sweep); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}
