package store_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const (
	testSite   = "office-07"
	testCamera = "entrance-1"
)

var (
	testMasterKey = bytes.Repeat([]byte{0x5c}, 32)
	testOrigin    = store.Origin(testSite, testCamera)
	// testDeviceKey signs the checkpoints of every test store.
	testDeviceKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
	testDevicePub = testDeviceKey.Public().(ed25519.PublicKey)
	// epoch is where every test clock starts.
	epoch = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
)

// Clock is a settable clock for DB.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

func NewClock() *Clock { return &Clock{t: epoch} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// NewTestDB returns an unopened DB for path with the test key, site, camera
// and clock.
func NewTestDB(path string, clock *Clock) *store.DB {
	db := store.NewDB(path)
	db.MasterKey = testMasterKey
	db.Site = testSite
	db.Camera = testCamera
	db.Now = clock.Now
	return db
}

// MustOpenDB opens a new store in a temporary directory with a clock at
// epoch. When the test ends it checks the store (MustCheck) and closes it.
func MustOpenDB(tb testing.TB) (*store.DB, *Clock) {
	tb.Helper()
	clock := NewClock()
	return MustOpenDBAt(tb, filepath.Join(tb.TempDir(), "consentcam.db"), clock), clock
}

// MustOpenDBAt opens the store at path, checked and closed when the test ends.
func MustOpenDBAt(tb testing.TB, path string, clock *Clock) *store.DB {
	tb.Helper()
	db := NewTestDB(path, clock)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Check(); errors.Is(err, store.ErrClosed) {
			return // closed by the test, which reopened it or checked it first
		} else if err != nil {
			tb.Error(err)
		}
		MustVerifyLog(tb, db)
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

// MustReopen checks and closes db, then opens its file again.
func MustReopen(tb testing.TB, db *store.DB, clock *Clock) *store.DB {
	tb.Helper()
	MustClose(tb, db)
	return MustOpenDBAt(tb, db.Path(), clock)
}

// MustClose checks the store, verifies its log and closes it.
func MustClose(tb testing.TB, db *store.DB) {
	tb.Helper()
	if err := db.Check(); err != nil {
		tb.Fatal(err)
	}
	MustVerifyLog(tb, db)
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// MustVerifyLog verifies the store's whole log, against its latest
// checkpoint when there is one, as an auditor would.
func MustVerifyLog(tb testing.TB, db *store.DB) {
	tb.Helper()
	cp, err := db.LatestCheckpoint()
	if errors.Is(err, store.ErrNotFound) {
		cp = nil
	} else if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.VerifyLog(bytes.NewReader(MustLog(tb, db)), cp, testDevicePub); err != nil {
		tb.Errorf("audit log does not verify: %v", err)
	}
}

// MustLog returns the whole log as JSON Lines.
func MustLog(tb testing.TB, db *store.DB) []byte {
	tb.Helper()
	evs, err := db.Events(0, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	for _, ev := range evs {
		b.Write(ev)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// MustUpdate runs fn in db.Update and fails the test on error.
func MustUpdate(tb testing.TB, db *store.DB, fn func(tx *store.Tx) error) {
	tb.Helper()
	if err := db.Update(fn); err != nil {
		tb.Fatal(err)
	}
}

// MustAppend appends events of type typ, one transaction each.
func MustAppend(tb testing.TB, db *store.DB, n int, typ string) {
	tb.Helper()
	for i := range n {
		MustUpdate(tb, db, func(tx *store.Tx) error {
			return tx.Append(&store.Event{Type: typ, Reason: fmt.Sprint("event ", i)})
		})
	}
}

// MustCheckpoint signs the tree and appends the checkpoint event carrying
// it, in one transaction, whether or not anything happened since the last
// one (SignLog is what the agent calls).
func MustCheckpoint(tb testing.TB, db *store.DB) store.Checkpoint {
	tb.Helper()
	signer := MustSigner(tb)
	var c store.Checkpoint
	MustUpdate(tb, db, func(tx *store.Tx) error {
		var err error
		if c, err = tx.Checkpoint(testOrigin, signer); err != nil {
			return err
		}
		return tx.Append(c.Event())
	})
	return c
}

func MustSigner(tb testing.TB) note.Signer {
	tb.Helper()
	s, err := store.NewCheckpointSigner(testOrigin, testDeviceKey)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// NewRecord returns a valid record captured at the clock's time, tagged with
// each purpose for the given retention.
func NewRecord(clock *Clock, subject, visit string, tags ...store.Tag) *store.Record {
	return &store.Record{
		ID:         store.NewID(),
		Visit:      visit,
		Subject:    subject,
		CapturedAt: clock.Now(),
		Box:        store.Box{X: 100, Y: 80, W: 120, H: 150},
		Detector:   "yunet",
		Score:      0.93,
		Notice:     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		JTI:        "jti-" + store.NewID(),
		Purposes:   tags,
	}
}

// Retained is a tag for purpose expiring d after the clock's time.
func Retained(clock *Clock, purpose string, d time.Duration) store.Tag {
	return store.Tag{Purpose: purpose, Expires: clock.Now().Add(d)}
}

// MustPut stores records with the same image, each in its own transaction
// with its capture.saved event, as the agent does.
func MustPut(tb testing.TB, db *store.DB, image []byte, recs ...*store.Record) {
	tb.Helper()
	for _, r := range recs {
		MustUpdate(tb, db, func(tx *store.Tx) error {
			if err := tx.PutRecord(r, image); err != nil {
				return err
			}
			return tx.Append(&store.Event{Type: store.EventCaptureSaved, Visit: r.Visit, Subject: r.Subject, Record: r.ID, Purposes: purposes(r)})
		})
	}
}

// purposes lists the purposes a record is tagged with.
func purposes(r *store.Record) []string {
	p := make([]string, len(r.Purposes))
	for i, t := range r.Purposes {
		p[i] = t.Purpose
	}
	return p
}

// FaceJPEG is a real JPEG face crop from testdata.
func FaceJPEG(tb testing.TB) []byte {
	tb.Helper()
	return MustRead(tb, testenv.Face(tb, "webcam-portrait.jpg"))
}

// MustRead returns the raw bytes of a file.
func MustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mth is the RFC 6962 Merkle tree hash of leaves, computed the textbook way
// (section 2.1), independently of the store's compact ranges.
func mth(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return rfc6962.DefaultHasher.HashLeaf(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return rfc6962.DefaultHasher.HashChildren(mth(leaves[:k]), mth(leaves[k:]))
}
