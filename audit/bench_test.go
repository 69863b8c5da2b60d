package audit_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
)

// benchYearVersion names the cached year's bundle; bump it when the bundle
// format, the events or yearOfVisits change.
const benchYearVersion = 2

// yearOfVisits runs a box for a year: 96 visits a day (one every 15
// minutes), each consent.accepted, window.opened, capture.saved and
// window.closed, its record expiring 30 days later, a checkpoint in the
// minute after events (none while idle). A day is one transaction, for
// speed; the log is what the agent writes.
func yearOfVisits(tb testing.TB, dir string) {
	b := audittest.NewBox(tb)
	b.Start()
	for range 365 {
		b.Batch(func() {
			for range 96 {
				b.Visit()
				b.Advance(15*time.Minute - 4*time.Second)
			}
		})
	}
	b.Stop()
	if _, err := audit.Write(dir, b.Contents()); err != nil {
		tb.Fatal(err)
	}
}

// yearBundle returns the year's bundle, built once and cached in the
// system's temporary directory.
func yearBundle(b *testing.B) string {
	b.Helper()
	cached := filepath.Join(os.TempDir(), fmt.Sprintf("consentcam-audit-bench-v%d-year", benchYearVersion))
	if _, err := os.Stat(cached); errors.Is(err, os.ErrNotExist) {
		b.Logf("building %s (once)", cached)
		tmp := cached + ".building"
		os.RemoveAll(tmp)
		yearOfVisits(b, tmp)
		if err := os.Rename(tmp, cached); err != nil {
			b.Fatal(err)
		}
	} else if err != nil {
		b.Fatal(err)
	}
	return cached
}

// BenchmarkCheckYear is `consentcam audit check` of a year's bundle: open
// it (every file's digest), verify the log, replay the rules.
func BenchmarkCheckYear(b *testing.B) {
	dir := yearBundle(b)
	var events uint64
	for b.Loop() {
		bundle, err := audit.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := audit.Check(bundle, audit.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !r.Passed() {
			b.Fatalf("the year does not pass: %v %v", r.Integrity, r.Failed())
		}
		events = r.Events
	}
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(events), "ns/event")
}
