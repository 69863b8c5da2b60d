package store_test

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

const (
	purposeChannel  = "channel-attribution"
	purposeSecurity = "entry-security"
)

func TestPutRecord(t *testing.T) {
	t.Run("EncryptedAtRest", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		jpeg := FaceJPEG(t)
		rec := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, 720*time.Hour))
		MustPut(t, db, jpeg, rec)

		var sealed []byte
		if err := db.View(func(tx *store.Tx) error {
			sealed = tx.SealedImage(rec.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		raw := MustRead(t, db.Path())
		// The ciphertext is in the file (in chunks): we are looking at the
		// right bytes.
		if _, ok := sharedChunk(raw, sealed, 32); !ok {
			t.Fatal("the sealed image is not in the file")
		}
		// The JPEG's start of image and APP0 segment (FF D8 FF E0, JFIF).
		if header := jpeg[:11]; bytes.Contains(raw, header) {
			t.Errorf("the file holds the JPEG header %x", header)
		}
		if chunk, ok := sharedChunk(raw, jpeg, 32); ok {
			t.Errorf("the file holds plaintext image bytes %x", chunk)
		}

		var got []byte
		MustUpdate(t, db, func(tx *store.Tx) error {
			var err error
			got, err = tx.Image(rec.ID, purposeChannel)
			return err
		})
		if !bytes.Equal(got, jpeg) {
			t.Errorf("Image returned %d bytes, want the %d stored", len(got), len(jpeg))
		}
	})

	t.Run("RecordReadBack", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		rec := NewRecord(clock, "subj-a", "visit-1",
			Retained(clock, purposeChannel, time.Hour), Retained(clock, purposeSecurity, 2*time.Hour))
		rec.Camera = ""
		MustPut(t, db, []byte("image"), rec)
		rec.Camera = testCamera // an empty camera is the DB's

		MustUpdate(t, db, func(tx *store.Tx) error {
			got, err := tx.Record(rec.ID)
			if err != nil {
				return err
			}
			if !recordsEqual(got, rec) {
				t.Errorf("Record = %+v, want %+v", got, rec)
			}
			for _, sel := range []store.Selector{{Subject: "subj-a"}, {Visit: "visit-1"}} {
				recs, err := tx.Records(sel)
				if err != nil {
					return err
				}
				if len(recs) != 1 || !recordsEqual(recs[0], rec) {
					t.Errorf("Records(%v) = %+v, want the record", sel, recs)
				}
			}
			return nil
		})
		if n, err := db.RecordCount(); err != nil || n != 1 {
			t.Errorf("RecordCount = %d, %v; want 1", n, err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		good := func() *store.Record {
			return NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
		}
		existing := good()
		MustPut(t, db, []byte("image"), existing)

		for _, tc := range []struct {
			name   string
			modify func(r *store.Record)
			image  []byte
		}{
			{"NoID", func(r *store.Record) { r.ID = "" }, nil},
			{"LongID", func(r *store.Record) { r.ID = string(make([]byte, 65)) }, nil},
			{"NoSubject", func(r *store.Record) { r.Subject = "" }, nil},
			{"NoVisit", func(r *store.Record) { r.Visit = "" }, nil},
			{"NoNotice", func(r *store.Record) { r.Notice = "" }, nil},
			{"NoJTI", func(r *store.Record) { r.JTI = "" }, nil},
			{"InvalidUTF8", func(r *store.Record) { r.Subject = "\xff" }, nil},
			{"NoTags", func(r *store.Record) { r.Purposes = nil }, nil},
			{"TagTwice", func(r *store.Record) { r.Purposes = append(r.Purposes, r.Purposes[0]) }, nil},
			{"TagExpiresAtCapture", func(r *store.Record) { r.Purposes[0].Expires = r.CapturedAt }, nil},
			{"ZeroTime", func(r *store.Record) { r.CapturedAt = time.Time{} }, nil},
			{"EmptyBox", func(r *store.Record) { r.Box.W = 0 }, nil},
			{"NaNScore", func(r *store.Record) { r.Score = math.NaN() }, nil},
			{"NoImage", func(r *store.Record) {}, []byte{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := good()
				tc.modify(r)
				image := tc.image
				if image == nil {
					image = []byte("image")
				}
				err := db.Update(func(tx *store.Tx) error { return tx.PutRecord(r, image) })
				if err == nil {
					t.Fatal("PutRecord accepted it")
				}
			})
		}
		t.Run("DuplicateID", func(t *testing.T) {
			r := good()
			r.ID = existing.ID
			err := db.Update(func(tx *store.Tx) error { return tx.PutRecord(r, []byte("other")) })
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("err = %v, want ErrExists", err)
			}
		})
		if n, err := db.RecordCount(); err != nil || n != 1 {
			t.Errorf("RecordCount = %d, %v; want 1 (only the valid record)", n, err)
		}
	})
}

func TestImage(t *testing.T) {
	db, clock := MustOpenDB(t)
	rec := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
	MustPut(t, db, []byte("image"), rec)

	image := func(id, purpose string) error {
		return db.View(func(tx *store.Tx) error {
			_, err := tx.Image(id, purpose)
			return err
		})
	}
	t.Run("Tagged", func(t *testing.T) {
		if err := image(rec.ID, purposeChannel); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NotTagged", func(t *testing.T) {
		if err := image(rec.ID, purposeSecurity); !errors.Is(err, store.ErrPurpose) {
			t.Fatalf("err = %v, want ErrPurpose", err)
		}
	})
	t.Run("NoSuchRecord", func(t *testing.T) {
		if err := image(store.NewID(), purposeChannel); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("TagExpiredBeforeSweep", func(t *testing.T) {
		clock.Advance(time.Hour)
		if err := image(rec.ID, purposeChannel); !errors.Is(err, store.ErrPurpose) {
			t.Fatalf("err = %v, want ErrPurpose", err)
		}
	})
}

func TestErase(t *testing.T) {
	setup := func(t *testing.T) (*store.DB, map[string]*store.Record) {
		db, clock := MustOpenDB(t)
		tag := Retained(clock, purposeChannel, time.Hour)
		recs := map[string]*store.Record{
			"a1": NewRecord(clock, "subj-a", "visit-1", tag),
			"a2": NewRecord(clock, "subj-a", "visit-2", tag),
			"b1": NewRecord(clock, "subj-b", "visit-1", tag), // a companion in the same visit
			"c3": NewRecord(clock, "subj-c", "visit-3", tag),
			"c4": NewRecord(clock, "subj-c", "visit-4", tag),
		}
		for _, name := range slices.Sorted(maps.Keys(recs)) {
			MustPut(t, db, []byte("image of "+name), recs[name])
		}
		return db, recs
	}
	erase := func(t *testing.T, db *store.DB, sel store.Selector) []*store.Record {
		t.Helper()
		var erased []*store.Record
		MustUpdate(t, db, func(tx *store.Tx) error {
			var err error
			if erased, err = tx.Erase(sel); err != nil {
				return err
			}
			for _, r := range erased {
				if err := tx.Append(&store.Event{Type: store.EventRecordErased, Subject: r.Subject, Visit: r.Visit, Record: r.ID}); err != nil {
					return err
				}
			}
			return nil
		})
		return erased
	}

	t.Run("Subject", func(t *testing.T) {
		db, recs := setup(t)
		erased := erase(t, db, store.Selector{Subject: "subj-a"})

		if got, want := ids(erased), sortedIDs(recs["a1"], recs["a2"]); !slices.Equal(got, want) {
			t.Errorf("erased %v, want %v", got, want)
		}
		assertGone(t, db, "subj-a", recs["a1"], recs["a2"])
		assertPresent(t, db, recs["b1"], recs["c3"], recs["c4"])
		if got := MustRecords(t, db, store.Selector{Visit: "visit-1"}); !slices.Equal(ids(got), []string{recs["b1"].ID}) {
			t.Errorf("visit-1 has %v, want only subj-b's record", ids(got))
		}
		if n, err := db.RecordCount(); err != nil || n != 3 {
			t.Errorf("RecordCount = %d, %v; want 3", n, err)
		}
	})

	t.Run("VisitOfSubjectWithOtherRecords", func(t *testing.T) {
		db, recs := setup(t)
		erased := erase(t, db, store.Selector{Visit: "visit-3"})
		if got, want := ids(erased), []string{recs["c3"].ID}; !slices.Equal(got, want) {
			t.Errorf("erased %v, want %v", got, want)
		}
		assertGoneRecords(t, db, recs["c3"]) // its key too, though its subject has another record
		assertPresent(t, db, recs["c4"])

		erase(t, db, store.Selector{Visit: "visit-4"})
		assertGone(t, db, "subj-c", recs["c3"], recs["c4"])
		assertPresent(t, db, recs["a1"], recs["a2"], recs["b1"])
	})

	t.Run("VisitOfTwoSubjects", func(t *testing.T) {
		db, recs := setup(t)
		erased := erase(t, db, store.Selector{Visit: "visit-1"})
		if got, want := ids(erased), sortedIDs(recs["a1"], recs["b1"]); !slices.Equal(got, want) {
			t.Errorf("erased %v, want %v", got, want)
		}
		assertGone(t, db, "subj-b", recs["b1"])
		assertPresent(t, db, recs["a2"]) // subj-a keeps its key for visit-2
	})

	t.Run("NameIsPrefixOfAnother", func(t *testing.T) {
		db, _ := setup(t)
		clock := NewClock()
		longer := NewRecord(clock, "subj-ab", "visit-10", Retained(clock, purposeChannel, time.Hour))
		MustPut(t, db, []byte("image"), longer)
		erase(t, db, store.Selector{Subject: "subj-a"})
		erase(t, db, store.Selector{Visit: "visit-1"})
		assertPresent(t, db, longer)
	})

	t.Run("Nothing", func(t *testing.T) {
		db, _ := setup(t)
		if erased := erase(t, db, store.Selector{Subject: "nobody"}); len(erased) != 0 {
			t.Errorf("erased %v, want nothing", ids(erased))
		}
	})

	t.Run("BadSelector", func(t *testing.T) {
		db, _ := setup(t)
		for _, sel := range []store.Selector{{}, {Subject: "subj-a", Visit: "visit-1"}} {
			err := db.Update(func(tx *store.Tx) error {
				_, err := tx.Erase(sel)
				return err
			})
			if err == nil {
				t.Errorf("Erase(%+v) succeeded", sel)
			}
		}
	})

	t.Run("RolledBackWithItsEvents", func(t *testing.T) {
		db, recs := setup(t)
		size := db.Size()
		failure := errors.New("publish failed")
		err := db.Update(func(tx *store.Tx) error {
			if _, err := tx.Erase(store.Selector{Subject: "subj-a"}); err != nil {
				return err
			}
			if err := tx.Append(&store.Event{Type: store.EventConsentRevoked, Subject: "subj-a"}); err != nil {
				return err
			}
			return failure
		})
		if !errors.Is(err, failure) {
			t.Fatalf("err = %v, want the function's", err)
		}
		assertPresent(t, db, recs["a1"], recs["a2"])
		if got := db.Size(); got != size {
			t.Errorf("Size = %d after rollback, want %d", got, size)
		}
	})
}

func TestSweep(t *testing.T) {
	t.Run("TagsExpireSeparately", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		rec := NewRecord(clock, "subj-a", "visit-1",
			Retained(clock, purposeChannel, time.Hour), Retained(clock, purposeSecurity, 24*time.Hour))
		other := NewRecord(clock, "subj-b", "visit-2", Retained(clock, purposeChannel, 48*time.Hour))
		MustPut(t, db, []byte("image"), rec, other)

		clock.Advance(59 * time.Minute)
		if res := MustSweep(t, db, clock.Now()); len(res.Expired) != 0 {
			t.Errorf("sweep before any expiry: %+v", res.Expired)
		}

		clock.Advance(time.Minute) // exactly the first expiry: expired
		res := MustSweep(t, db, clock.Now())
		want := []store.Expiry{{Record: rec, Purposes: []string{purposeChannel}}}
		if !slices.EqualFunc(res.Expired, want, expiryEqual) {
			t.Errorf("sweep at 1h: %+v, want %+v", res.Expired, want)
		}
		MustUpdate(t, db, func(tx *store.Tx) error {
			got, err := tx.Record(rec.ID)
			if err != nil {
				return err
			}
			if p := purposes(got); !slices.Equal(p, []string{purposeSecurity}) {
				t.Errorf("record purposes %v, want [%s]", p, purposeSecurity)
			}
			if _, err := tx.Image(rec.ID, purposeChannel); !errors.Is(err, store.ErrPurpose) {
				t.Errorf("Image for the dropped purpose: %v, want ErrPurpose", err)
			}
			_, err = tx.Image(rec.ID, purposeSecurity)
			return err
		})

		clock.Advance(23 * time.Hour)
		res = MustSweep(t, db, clock.Now())
		left := *rec
		left.Purposes = rec.Purposes[1:]
		want = []store.Expiry{{Record: &left, Purposes: []string{purposeSecurity}, Deleted: true}}
		if !slices.EqualFunc(res.Expired, want, expiryEqual) {
			t.Errorf("sweep at 24h: %+v, want %+v", res.Expired, want)
		}
		assertGone(t, db, "subj-a", rec)
		assertPresent(t, db, other)
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		rec := NewRecord(clock, "subj-a", "visit-1", Retained(clock, purposeChannel, time.Hour))
		MustPut(t, db, []byte("image"), rec)
		db = MustReopen(t, db, clock)
		clock.Advance(time.Hour)
		want := []store.Expiry{{Record: rec, Purposes: []string{purposeChannel}, Deleted: true}}
		if res := MustSweep(t, db, clock.Now()); !slices.EqualFunc(res.Expired, want, expiryEqual) {
			t.Errorf("sweep after reopen: %+v, want %+v", res.Expired, want)
		}
	})
}

// MustSweep sweeps and appends record.expired for each expired record, as
// the agent does.
func MustSweep(tb testing.TB, db *store.DB, now time.Time) *store.SweepResult {
	tb.Helper()
	var res *store.SweepResult
	MustUpdate(tb, db, func(tx *store.Tx) error {
		var err error
		if res, err = tx.Sweep(now); err != nil {
			return err
		}
		for _, x := range res.Expired {
			if err := tx.Append(&store.Event{Type: store.EventRecordExpired, Subject: x.Record.Subject, Record: x.Record.ID,
				Purposes: x.Purposes, Detail: map[string]any{"deleted": x.Deleted}}); err != nil {
				return err
			}
		}
		return nil
	})
	return res
}

func MustRecords(tb testing.TB, db *store.DB, sel store.Selector) []*store.Record {
	tb.Helper()
	var recs []*store.Record
	if err := db.View(func(tx *store.Tx) error {
		var err error
		recs, err = tx.Records(sel)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return recs
}

// assertGone checks that nothing of the records is left (assertGoneRecords)
// and that their subject has no record left.
func assertGone(tb testing.TB, db *store.DB, subject string, recs ...*store.Record) {
	tb.Helper()
	assertGoneRecords(tb, db, recs...)
	if got := MustRecords(tb, db, store.Selector{Subject: subject}); len(got) != 0 {
		tb.Errorf("subject %s: records %v left", subject, ids(got))
	}
}

// assertGoneRecords checks that nothing of the records is left: record,
// index entries, data key. (Check, at the end of every test, finds any crop
// chunk left over.)
func assertGoneRecords(tb testing.TB, db *store.DB, recs ...*store.Record) {
	tb.Helper()
	err := db.View(func(tx *store.Tx) error {
		for _, r := range recs {
			if _, err := tx.Record(r.ID); !errors.Is(err, store.ErrNotFound) {
				tb.Errorf("Record(%s): %v, want ErrNotFound", r.ID, err)
			}
			if db.WrappedKey(r.ID) != nil {
				tb.Errorf("record %s: data key left", r.ID)
			}
			if got, err := tx.Records(store.Selector{Visit: r.Visit}); err != nil || slices.Contains(ids(got), r.ID) {
				tb.Errorf("record %s: still indexed under its visit (%v)", r.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// assertPresent checks that the records are stored and their images decrypt.
func assertPresent(tb testing.TB, db *store.DB, recs ...*store.Record) {
	tb.Helper()
	err := db.View(func(tx *store.Tx) error {
		for _, r := range recs {
			if _, err := tx.Image(r.ID, r.Purposes[0].Purpose); err != nil {
				tb.Errorf("record %s: %v", r.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func recordsEqual(a, b *store.Record) bool {
	return a.ID == b.ID && a.Visit == b.Visit && a.Subject == b.Subject && a.Camera == b.Camera &&
		a.CapturedAt.Equal(b.CapturedAt) && a.Box == b.Box && a.Detector == b.Detector &&
		a.Score == b.Score && a.Notice == b.Notice && a.JTI == b.JTI &&
		slices.EqualFunc(a.Purposes, b.Purposes, func(x, y store.Tag) bool { return x.Purpose == y.Purpose && x.Expires.Equal(y.Expires) })
}

func expiryEqual(a, b store.Expiry) bool {
	return recordsEqual(a.Record, b.Record) && slices.Equal(a.Purposes, b.Purposes) && a.Deleted == b.Deleted
}

func ids(recs []*store.Record) []string {
	s := make([]string, len(recs))
	for i, r := range recs {
		s[i] = r.ID
	}
	slices.Sort(s)
	return s
}

func sortedIDs(recs ...*store.Record) []string { return ids(recs) }

// sharedChunk reports a chunk of n bytes of secret, taken at a multiple of
// n, found in haystack: any run of 2n-1 bytes of secret contains one.
func sharedChunk(haystack, secret []byte, n int) ([]byte, bool) {
	for i := 0; i+n <= len(secret); i += n {
		if bytes.Contains(haystack, secret[i:i+n]) {
			return secret[i : i+n], true
		}
	}
	return nil, false
}
