package store_test

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// BenchmarkYear simulates, through the store's API, a year and three years
// of a busy office: 96 visits a day between 09:00 and 19:00, each a consent,
// a capture window and one 20 KiB crop kept 30 days; the agent's checkpoint
// step every minute; expiries swept daily at 03:00; one revoke a day; the
// maintenance step (Compact) 10 minutes after erasures, as
// store.compact_interval does; the outbox acknowledged after every
// transaction, as a connected agent does. The store after that many years
// is built once (without fsync) and cached in the system's temporary
// directory; each run works on a copy and simulates a day more per
// iteration, every transaction fsync'd, and reports:
//
//   - file-MB: the size of the store file and the key file together, and
//     file-ratio: that size over the live crops and the log (crops-MB +
//     log-MB: the crops' bytes and the events' JSON bytes);
//   - erase-written-KB: bytes written (wchar of /proc/self/io) by the
//     transactions that erased records (the sweep, the revoke) and by the
//     maintenance steps after them, per record erased;
//   - stall-ms: the longest time a maintenance step held the store
//     (CompactStats.Stalled), and compact-ms: the longest one took.
//
// Figures and how to rerun: docs/BENCHMARKS.md, "A year of an office".
// With -year.sweep=1m the days measured sweep every minute, as the agent
// does by default, instead of daily.
func BenchmarkYear(b *testing.B) {
	if *yearSweep < time.Minute {
		b.Fatalf("-year.sweep=%v: at least a minute", *yearSweep)
	}
	for _, years := range []int{1, 3} {
		b.Run(fmt.Sprintf("years=%d", years), func(b *testing.B) {
			path := yearStore(b, years)
			o := openOffice(b, path, years*365)
			o.measure = true
			o.sweep = *yearSweep
			for b.Loop() {
				o.simulateDay()
			}
			o.report(b)
		})
	}
}

var yearSweep = flag.Duration("year.sweep", 24*time.Hour, "BenchmarkYear: how often the days measured sweep expiries (daily at 03:00, or every so many minutes)")

// yearFileVersion names the cached stores; bump it when the file format or
// the simulation changes.
const yearFileVersion = 2

// Office figures (issue 13).
const (
	officeVisits    = 96 // a day, from 09:00 to 19:00
	officeCrop      = 20 << 10
	officeRetention = 30 * 24 * time.Hour
	officeCompact   = 10 * time.Minute // store.compact_interval
)

// yearStore returns the path of a copy of the store after years of the
// office, building it once.
func yearStore(b *testing.B, years int) string {
	b.Helper()
	cached := filepath.Join(os.TempDir(), fmt.Sprintf("consentcam-store-bench-year-v%d-%dy.db", yearFileVersion, years))
	if _, err := os.Stat(cached); errors.Is(err, os.ErrNotExist) {
		b.Logf("building %s (once)", cached)
		tmp := filepath.Join(b.TempDir(), "building.db")
		start := time.Now()
		o := openOffice(b, tmp, 0, noSync)
		for range years * 365 {
			o.simulateDay()
		}
		if err := o.db.Close(); err != nil {
			b.Fatal(err)
		}
		b.Logf("built in %v", time.Since(start).Round(time.Second))
		// The key file first: the store file's presence says both are there.
		for _, f := range [][2]string{{keysPathOf(cached), keysPathOf(tmp)}, {cached, tmp}} {
			if err := os.Rename(f[1], f[0]); err != nil {
				b.Fatal(err)
			}
		}
	} else if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "consentcam.db")
	for _, f := range [][2]string{{path, cached}, {keysPathOf(path), keysPathOf(cached)}} {
		if err := copyFile(f[0], f[1]); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

func keysPathOf(path string) string { return store.NewDB(path).KeysPath() }

// office is the simulation.
type office struct {
	tb      testing.TB
	db      *store.DB
	clock   *Clock
	signer  note.Signer
	crop    []byte
	day     int           // the day simulated next, from 0
	due     time.Time     // when the maintenance step is due, zero if it is not
	sweep   time.Duration // how often expiries are swept: daily at 03:00, or every so many minutes
	measure bool

	erased      int   // records erased
	written     int64 // bytes written erasing them
	stall       time.Duration
	compact     time.Duration
	compactions int
}

// noSync opens the store without fsync.
func noSync(db *store.DB) { db.SetNoSync(true) }

// openOffice opens the store at path for the simulation to go on at day.
func openOffice(tb testing.TB, path string, day int, opts ...func(*store.DB)) *office {
	tb.Helper()
	clock := NewClock()
	clock.Set(dayStart(day))
	db := NewTestDB(path, clock)
	for _, opt := range opts {
		opt(db)
	}
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	crop := make([]byte, officeCrop)
	rand.Read(crop)
	return &office{tb: tb, db: db, clock: clock, signer: MustSigner(tb), crop: crop, day: day, sweep: 24 * time.Hour}
}

// dayStart is midnight of a day of the simulation.
func dayStart(day int) time.Time {
	return epoch.Truncate(24*time.Hour).AddDate(0, 0, day)
}

// simulateDay runs a day minute by minute.
func (o *office) simulateDay() {
	start := dayStart(o.day)
	next := 0 // the next visit of the day
	for m := range 24 * 60 {
		now := start.Add(time.Duration(m) * time.Minute)
		o.clock.Set(now)
		if o.sweepDue(m) {
			o.sweepExpired()
		}
		if m == 14*60+2 && o.day >= 10 {
			o.revoke(o.day-10, 50)
		}
		// A visit every 6.25 minutes from 09:00.
		for next < officeVisits && 9*60+next*25/4 == m {
			o.visit(o.day*officeVisits + next)
			next++
		}
		if !o.due.IsZero() && !o.clock.Now().Before(o.due) {
			o.maintain()
		}
		o.checkpoint()
	}
	o.day++
}

// sweepDue reports whether expiries are swept at minute m of the day.
func (o *office) sweepDue(m int) bool {
	if o.sweep >= 24*time.Hour {
		return m == 3*60
	}
	return m%int(o.sweep/time.Minute) == 0
}

func visitID(n int) string   { return fmt.Sprintf("visit-%07d", n) }
func subjectID(n int) string { return fmt.Sprintf("subject-%x", uint64(n)*0x9e3779b97f4a7c15) }

// visit is a visitor's consent, window and capture, three transactions as
// the agent makes them.
func (o *office) visit(n int) {
	visit, subject := visitID(n), subjectID(n)
	consented := &store.Event{Type: store.EventConsentAccepted, Visit: visit, Subject: subject,
		Purposes: []string{purposeChannel}, Actor: "kiosk-1",
		Detail: map[string]any{"notice": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"expires": o.clock.Now().Add(10 * time.Minute).Format(time.RFC3339)}}
	o.update(func(tx *store.Tx) error {
		if err := tx.Spend("jti-"+store.NewID(), o.clock.Now().Add(10*time.Minute)); err != nil {
			return err
		}
		return tx.Append(consented)
	})
	o.clock.Advance(time.Second)
	o.update(func(tx *store.Tx) error {
		return tx.Append(&store.Event{Type: store.EventWindowOpened, Visit: visit, Subject: subject,
			Purposes: []string{purposeChannel}, Actor: "kiosk-1", Detail: map[string]any{"window": "20s"}})
	})
	o.clock.Advance(3 * time.Second)
	rec := NewRecord(o.clock, subject, visit, Retained(o.clock, purposeChannel, officeRetention))
	o.update(func(tx *store.Tx) error {
		if err := tx.PutRecord(rec, o.crop); err != nil {
			return err
		}
		if err := tx.Append(&store.Event{Type: store.EventCaptureSaved, Visit: visit, Subject: subject, Record: rec.ID,
			Purposes: []string{purposeChannel}, Actor: "kiosk-1", Detail: map[string]any{
				"detector": rec.Detector, "score": rec.Score, "box": []int{rec.Box.X, rec.Box.Y, rec.Box.W, rec.Box.H},
				"expires": map[string]string{purposeChannel: rec.Purposes[0].Expires.Format(time.RFC3339)}}}); err != nil {
			return err
		}
		return tx.Append(&store.Event{Type: store.EventWindowClosed, Visit: visit, Subject: subject, Record: rec.ID,
			Purposes: []string{purposeChannel}, Actor: "kiosk-1", Reason: "saved"})
	})
}

// sweepExpired is the retention sweep.
func (o *office) sweepExpired() {
	deleted := 0
	o.erasing(func() {
		o.update(func(tx *store.Tx) error {
			res, err := tx.Sweep(o.clock.Now())
			if err != nil {
				return err
			}
			for _, x := range res.Expired {
				if err := tx.Append(&store.Event{Type: store.EventRecordExpired, Record: x.Record.ID, Visit: x.Record.Visit,
					Subject: x.Record.Subject, Purposes: x.Purposes, Actor: "agent",
					Detail: map[string]any{"deleted": x.Deleted}}); err != nil {
					return err
				}
				if x.Deleted {
					deleted++
				}
			}
			return nil
		})
	}, &deleted)
}

// revoke erases visit k of a past day, then checkpoints, as the agent does
// for the receipt.
func (o *office) revoke(day, k int) {
	erased := 0
	o.erasing(func() {
		o.update(func(tx *store.Tx) error {
			if err := tx.Spend("rq-"+store.NewID(), o.clock.Now().Add(10*time.Minute)); err != nil {
				return err
			}
			recs, err := tx.Erase(store.Selector{Visit: visitID(day*officeVisits + k)})
			if err != nil {
				return err
			}
			for _, r := range recs {
				if err := tx.Append(&store.Event{Type: store.EventRecordErased, Record: r.ID, Visit: r.Visit, Subject: r.Subject,
					Purposes: purposes(r), Reason: "withdrawn", Actor: "ops-1"}); err != nil {
					return err
				}
			}
			erased = len(recs)
			return tx.Append(&store.Event{Type: store.EventConsentRevoked, Visit: visitID(day*officeVisits + k), Reason: "withdrawn",
				Actor: "ops-1", Detail: map[string]any{"request": "rq-1", "erased": len(recs)}})
		})
	}, &erased)
	o.checkpoint()
}

// erasing runs an erasure, counts what it wrote and the records it erased
// (*n, once it ran), and makes the maintenance step due.
func (o *office) erasing(erase func(), n *int) {
	w := o.wchar()
	erase()
	o.written += o.wchar() - w
	o.erased += *n
	if *n > 0 && o.due.IsZero() {
		o.due = o.clock.Now().Add(officeCompact)
	}
}

// maintain is the maintenance step, with its store.compacted event.
func (o *office) maintain() {
	w := o.wchar()
	start := time.Now()
	stats, err := o.db.Compact()
	if err != nil {
		o.tb.Fatal(err)
	}
	o.compact = max(o.compact, time.Since(start))
	o.written += o.wchar() - w
	o.stall = max(o.stall, stats.Stalled)
	o.compactions++
	o.due = time.Time{}
	o.update(func(tx *store.Tx) error {
		return tx.Append(&store.Event{Type: store.EventStoreCompacted, Actor: "agent",
			Detail: map[string]any{"bytes_before": stats.Before, "bytes_after": stats.After}})
	})
}

// checkpoint is the agent's checkpoint step: a write only when something
// happened.
func (o *office) checkpoint() {
	o.update(func(tx *store.Tx) error {
		_, _, err := tx.SignLog(testOrigin, o.signer, "agent")
		return err
	})
}

// update runs fn in a transaction and acknowledges the outbox, as the
// connected agent's publisher does.
func (o *office) update(fn func(tx *store.Tx) error) {
	if err := o.db.Update(fn); err != nil {
		o.tb.Fatal(err)
	}
	msgs, err := o.db.Pending(1000)
	if err != nil {
		o.tb.Fatal(err)
	}
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	if err := o.db.Ack(seqs...); err != nil {
		o.tb.Fatal(err)
	}
}

// wchar is the bytes the process has written (/proc/self/io), when
// measuring.
func (o *office) wchar() int64 {
	if !o.measure {
		return 0
	}
	f, err := os.Open("/proc/self/io")
	if err != nil {
		o.tb.Fatalf("bytes written are read from /proc/self/io: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				o.tb.Fatal(err)
			}
			return n
		}
	}
	o.tb.Fatal("no wchar in /proc/self/io")
	return 0
}

// report reports the metrics of BenchmarkYear.
func (o *office) report(b *testing.B) {
	var file int64
	for _, p := range []string{o.db.Path(), o.db.KeysPath()} {
		fi, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		file += fi.Size()
	}
	records, err := o.db.RecordCount()
	if err != nil {
		b.Fatal(err)
	}
	var logBytes int64
	for from := uint64(0); ; {
		evs, err := o.db.Events(from, 10_000)
		if err != nil {
			b.Fatal(err)
		}
		for _, ev := range evs {
			logBytes += int64(len(ev))
		}
		if len(evs) == 0 {
			break
		}
		from += uint64(len(evs))
	}
	crops := int64(records) * officeCrop
	b.ReportMetric(float64(file)/1e6, "file-MB")
	b.ReportMetric(float64(crops)/1e6, "crops-MB")
	b.ReportMetric(float64(logBytes)/1e6, "log-MB")
	b.ReportMetric(float64(file)/float64(crops+logBytes), "file-ratio")
	if o.erased > 0 {
		b.ReportMetric(float64(o.written)/float64(o.erased)/1e3, "erase-written-KB")
	}
	b.ReportMetric(float64(o.stall.Microseconds())/1e3, "stall-ms")
	b.ReportMetric(float64(o.compact.Microseconds())/1e3, "compact-ms")
	b.ReportMetric(float64(o.db.Size()), "events")
}
