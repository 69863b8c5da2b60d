package store_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

func TestEventTypes(t *testing.T) {
	// The strings of SPEC, "Audit log".
	for _, tc := range []struct{ got, want string }{
		{store.EventAgentStarted, "agent.started"},
		{store.EventAgentStopped, "agent.stopped"},
		{store.EventNoticePublished, "notice.published"},
		{store.EventConsentAccepted, "consent.accepted"},
		{store.EventConsentRejected, "consent.rejected"},
		{store.EventConsentDeclined, "consent.declined"},
		{store.EventWindowOpened, "window.opened"},
		{store.EventWindowClosed, "window.closed"},
		{store.EventCaptureSaved, "capture.saved"},
		{store.EventCaptureSkipped, "capture.skipped"},
		{store.EventRecordAccessed, "record.accessed"},
		{store.EventRecordExpired, "record.expired"},
		{store.EventRecordErased, "record.erased"},
		{store.EventConsentRevoked, "consent.revoked"},
		{store.EventRevokeRejected, "revoke.rejected"},
		{store.EventStoreCompacted, "store.compacted"},
		{store.EventSourceFailed, "source.failed"},
		{store.EventSourceRecovered, "source.recovered"},
		{store.EventCheckpoint, "checkpoint"},
		{store.EventWitnessFailed, "witness.failed"},
		{store.EventWitnessRecovered, "witness.recovered"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("constant is %q, want %q", tc.got, tc.want)
			}
			db, _ := MustOpenDB(t)
			if tc.got == store.EventCheckpoint {
				MustCheckpoint(t, db)
				return
			}
			MustAppend(t, db, 1, tc.got)
		})
	}
}

func TestAppend(t *testing.T) {
	t.Run("Fields", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		clock.Advance(1234567 * time.Microsecond) // 1.234567 s: stored to the ms
		ev := &store.Event{
			Seq: 99, Site: "forged", Camera: "forged", // set by Append, whatever the caller says
			Type: store.EventConsentRejected, Visit: "visit-1", Subject: "subj-a",
			Purposes: []string{purposeChannel}, Reason: "expired", Actor: "kiosk-1",
			Detail: map[string]any{"kid": "kiosk-1", "n": 2},
		}
		MustUpdate(t, db, func(tx *store.Tx) error { return tx.Append(ev) })

		wantTime := epoch.Add(1234 * time.Millisecond)
		if ev.Seq != 0 || !ev.Time.Equal(wantTime) || ev.Time.Location() != time.UTC || ev.Site != testSite || ev.Camera != testCamera {
			t.Errorf("event after Append: seq %d, time %v, site %s, camera %s", ev.Seq, ev.Time, ev.Site, ev.Camera)
		}
		got := MustEvents(t, db, 0, 10)
		// No "record": omitted when empty.
		want := `{"seq":0,"time":"2026-11-27T09:00:01.234Z","type":"consent.rejected","site":"office-07","camera":"entrance-1",` +
			`"visit":"visit-1","subject":"subj-a","purposes":["channel-attribution"],"reason":"expired","actor":"kiosk-1","detail":{"kid":"kiosk-1","n":2}}`
		if len(got) != 1 || string(got[0]) != want {
			t.Errorf("stored event:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("DetailOfAnyShape", func(t *testing.T) {
		// Whatever the detail holds, the stored event is in the one form
		// VerifyLog accepts (the end-of-test check verifies the log).
		db, _ := MustOpenDB(t)
		type box struct{ Y, X int } // fields not in key order
		ev := &store.Event{Type: store.EventCaptureSaved, Detail: map[string]any{
			"box":     box{Y: 2, X: 1},
			"score":   0.9300000000000001,
			"big":     uint64(1<<63 + 1),
			"at":      epoch,
			"text":    "<é & \u00e9>\n\"",
			"nested":  map[string]any{"b": []any{1, "two", nil, true}, "a": struct{}{}},
			"bytes":   []byte{0xff, 0xd8},
			"invalid": "\xff",
		}}
		MustUpdate(t, db, func(tx *store.Tx) error { return tx.Append(ev) })
		var got struct{ Detail map[string]any }
		if err := json.Unmarshal(MustEvents(t, db, 0, 1)[0], &got); err != nil {
			t.Fatal(err)
		}
		if b := got.Detail["box"]; !reflect.DeepEqual(b, map[string]any{"X": 1.0, "Y": 2.0}) {
			t.Errorf("detail box %v", b)
		}
		if s := got.Detail["text"]; s != "<é & \u00e9>\n\"" {
			t.Errorf("detail text %q", s)
		}
	})

	t.Run("OptionalFieldsOmitted", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 1, store.EventAgentStarted)
		MustUpdate(t, db, func(tx *store.Tx) error { return tx.Append(&store.Event{Type: store.EventAgentStopped}) })
		var fields map[string]any
		if err := json.Unmarshal(MustEvents(t, db, 1, 1)[0], &fields); err != nil {
			t.Fatal(err)
		}
		if got, want := slices.Sorted(maps.Keys(fields)), []string{"camera", "seq", "site", "time", "type"}; !slices.Equal(got, want) {
			t.Errorf("fields %v, want %v", got, want)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		for _, tc := range []struct {
			name string
			ev   *store.Event
		}{
			{"UnknownType", &store.Event{Type: "record.leaked"}},
			{"NoType", &store.Event{}},
			{"DetailNotJSON", &store.Event{Type: store.EventSourceFailed, Detail: map[string]any{"ch": make(chan int)}}},
			{"CheckpointWithout", &store.Event{Type: store.EventCheckpoint}},
			{"CheckpointOfAnotherTree", store.Checkpoint{Size: 7, Root: make([]byte, 32), Note: []byte("x")}.Event()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := db.Update(func(tx *store.Tx) error { return tx.Append(tc.ev) }); err == nil {
					t.Fatal("Append accepted it")
				}
			})
		}
		MustAppend(t, db, 1, store.EventAgentStarted)
		if got := MustEvents(t, db, 0, 10); len(got) != 1 || !bytes.Contains(got[0], []byte(`"seq":0`)) {
			t.Errorf("after refusals the log is %s, want one event with seq 0", got)
		}
	})

	t.Run("RollbackLeavesNoGap", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 2, store.EventAgentStarted)
		failure := errors.New("failed")
		err := db.Update(func(tx *store.Tx) error {
			for range 3 {
				if err := tx.Append(&store.Event{Type: store.EventWindowOpened}); err != nil {
					return err
				}
			}
			return failure
		})
		if !errors.Is(err, failure) {
			t.Fatalf("err = %v", err)
		}
		if got := db.Size(); got != 2 {
			t.Errorf("Size = %d after a rolled-back append, want 2", got)
		}
		MustAppend(t, db, 1, store.EventWindowClosed)
		assertSeqs(t, db, 3)
	})

	t.Run("ManyInOneTransaction", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustUpdate(t, db, func(tx *store.Tx) error {
			for range 10 {
				if err := tx.Append(&store.Event{Type: store.EventWindowOpened}); err != nil {
					return err
				}
			}
			return nil
		})
		assertSeqs(t, db, 10)
	})

	t.Run("SeqAcrossReopen", func(t *testing.T) {
		db, clock := MustOpenDB(t)
		MustAppend(t, db, 5, store.EventAgentStarted)
		root := MustRoot(t, db, 5)
		db = MustReopen(t, db, clock)
		if got := db.Size(); got != 5 {
			t.Fatalf("Size after reopen = %d, want 5", got)
		}
		if got := MustRoot(t, db, 5); !bytes.Equal(got, root) {
			t.Errorf("root after reopen %x, want %x", got, root)
		}
		MustAppend(t, db, 5, store.EventAgentStopped)
		assertSeqs(t, db, 10)
	})
}

// assertSeqs checks that the log holds seqs 0 to n-1, in order, and that its
// root is the textbook Merkle tree hash of the events' bytes.
func assertSeqs(tb testing.TB, db *store.DB, n int) {
	tb.Helper()
	evs := MustEvents(tb, db, 0, n+10)
	if len(evs) != n || db.Size() != uint64(n) {
		tb.Fatalf("log has %d events, Size %d; want %d", len(evs), db.Size(), n)
	}
	for i, b := range evs {
		var ev store.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			tb.Fatalf("event %d: %v", i, err)
		}
		if ev.Seq != uint64(i) {
			tb.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
	if got, want := MustRoot(tb, db, uint64(n)), mth(evs); !bytes.Equal(got, want) {
		tb.Fatalf("Root(%d) = %x, the events hash to %x", n, got, want)
	}
}

func TestProofs(t *testing.T) {
	db, _ := MustOpenDB(t)
	// More than two blocks of 64 events, the last one unfinished.
	const n = 140
	// Batches of varied sizes, so trees grow by one and by several leaves.
	for appended, batch := 0, 1; appended < n; batch = batch%7 + 1 {
		k := min(batch, n-appended)
		MustUpdate(t, db, func(tx *store.Tx) error {
			for range k {
				if err := tx.Append(&store.Event{Type: store.EventWindowOpened, Reason: strconv.Itoa(appended)}); err != nil {
					return err
				}
			}
			return nil
		})
		appended += k
	}
	leaves := MustEvents(t, db, 0, n)
	hasher := rfc6962.DefaultHasher
	roots := make([][]byte, n+1)
	for size := range uint64(n + 1) {
		roots[size] = MustRoot(t, db, size)
		if want := mth(leaves[:size]); !bytes.Equal(roots[size], want) {
			t.Fatalf("Root(%d) = %x, want %x", size, roots[size], want)
		}
	}

	t.Run("Inclusion", func(t *testing.T) {
		for size := uint64(1); size <= n; size++ {
			for seq := range size {
				p, err := db.InclusionProof(seq, size)
				if err != nil {
					t.Fatalf("InclusionProof(%d, %d): %v", seq, size, err)
				}
				if err := proof.VerifyInclusion(hasher, seq, size, hasher.HashLeaf(leaves[seq]), p, roots[size]); err != nil {
					t.Fatalf("InclusionProof(%d, %d) does not verify: %v", seq, size, err)
				}
				// A proof for one event does not pass for another.
				other := (seq + 1) % size
				if other != seq && proof.VerifyInclusion(hasher, seq, size, hasher.HashLeaf(leaves[other]), p, roots[size]) == nil {
					t.Fatalf("InclusionProof(%d, %d) verifies event %d too", seq, size, other)
				}
			}
		}
	})

	t.Run("Consistency", func(t *testing.T) {
		for to := uint64(0); to <= n; to++ {
			for from := uint64(0); from <= to; from++ {
				p, err := db.ConsistencyProof(from, to)
				if err != nil {
					t.Fatalf("ConsistencyProof(%d, %d): %v", from, to, err)
				}
				if err := proof.VerifyConsistency(hasher, from, to, p, roots[from], roots[to]); err != nil {
					t.Fatalf("ConsistencyProof(%d, %d) does not verify: %v", from, to, err)
				}
			}
		}
	})

	t.Run("OutOfRange", func(t *testing.T) {
		for name, f := range map[string]func() error{
			"InclusionSeqAtSize":  func() error { _, err := db.InclusionProof(5, 5); return err },
			"InclusionBeyondLog":  func() error { _, err := db.InclusionProof(0, n+1); return err },
			"ConsistencyBackward": func() error { _, err := db.ConsistencyProof(6, 5); return err },
			"ConsistencyBeyond":   func() error { _, err := db.ConsistencyProof(1, n+1); return err },
			"RootBeyondLog":       func() error { _, err := db.Root(n + 1); return err },
		} {
			t.Run(name, func(t *testing.T) {
				if f() == nil {
					t.Fatal("accepted")
				}
			})
		}
	})
}

// TestSignLog: the checkpoint step of the agent appends a checkpoint event
// only when something happened since the last one, and always leaves the
// latest checkpoint covering the whole log.
func TestSignLog(t *testing.T) {
	signLog := func(t *testing.T, db *store.DB) (store.Checkpoint, *store.Event) {
		t.Helper()
		var c store.Checkpoint
		var ev *store.Event
		MustUpdate(t, db, func(tx *store.Tx) error {
			var err error
			c, ev, err = tx.SignLog(testOrigin, MustSigner(t), "agent")
			return err
		})
		return c, ev
	}
	// covers checks that c is the latest checkpoint and signs the whole log.
	covers := func(t *testing.T, db *store.DB, c store.Checkpoint) {
		t.Helper()
		n := db.Size()
		if c.Size != n || !bytes.Equal(c.Root, MustRoot(t, db, n)) {
			t.Errorf("checkpoint of size %d, the log has %d events", c.Size, n)
		}
		if latest, err := db.LatestCheckpoint(); err != nil || !bytes.Equal(latest, c.Note) {
			t.Errorf("LatestCheckpoint is not the checkpoint returned (%v)", err)
		}
		rep, err := store.VerifyLog(bytes.NewReader(MustLog(t, db)), c.Note, testDevicePub)
		if err != nil || rep.Uncovered != 0 {
			t.Errorf("the log against the checkpoint: %+v, %v; want every event covered", rep, err)
		}
	}

	t.Run("AfterEvents", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 3, store.EventWindowOpened)
		c, ev := signLog(t, db)
		if ev == nil || ev.Seq != 3 || ev.Type != store.EventCheckpoint || ev.Actor != "agent" || ev.Detail["size"] != uint64(3) {
			t.Fatalf("event appended: %+v, want a checkpoint event at seq 3 of the 3 events before it", ev)
		}
		covers(t, db, c) // size 4: its own event included
	})

	t.Run("NothingHappened", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 2, store.EventWindowOpened)
		first, _ := signLog(t, db)
		files := map[string][]byte{db.Path(): MustRead(t, db.Path()), db.KeysPath(): MustRead(t, db.KeysPath())}
		for range 3 {
			c, ev := signLog(t, db)
			if ev != nil {
				t.Fatalf("a checkpoint event with nothing new: %+v", ev)
			}
			if !bytes.Equal(c.Note, first.Note) {
				t.Errorf("checkpoint changed with nothing new:\n%s\nthen\n%s", first.Note, c.Note)
			}
		}
		for path, b := range files {
			if !bytes.Equal(MustRead(t, path), b) {
				t.Errorf("%s was written with nothing new", path)
			}
		}
		covers(t, db, first)
		// Then something happens.
		MustAppend(t, db, 1, store.EventWindowClosed)
		c, ev := signLog(t, db)
		if ev == nil || ev.Seq != 4 {
			t.Fatalf("event appended: %+v, want a checkpoint event at seq 4", ev)
		}
		covers(t, db, c)
	})

	t.Run("OnlyCheckpointEventsSince", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 2, store.EventWindowOpened)
		MustCheckpoint(t, db) // an event at seq 2, signing the 2 events before it
		c, ev := signLog(t, db)
		if ev != nil {
			t.Errorf("a second checkpoint event in a row: %+v", ev)
		}
		covers(t, db, c) // size 3
	})

	// A new device key signs the log again at the next step, even when
	// nothing happened.
	t.Run("NewDeviceKey", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 2, store.EventWindowOpened)
		signLog(t, db)
		newKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x43}, ed25519.SeedSize))
		newSigner, err := store.NewCheckpointSigner(testOrigin, newKey)
		if err != nil {
			t.Fatal(err)
		}
		var c store.Checkpoint
		var ev *store.Event
		MustUpdate(t, db, func(tx *store.Tx) error {
			c, ev, err = tx.SignLog(testOrigin, newSigner, "agent")
			return err
		})
		if ev != nil {
			t.Errorf("a checkpoint event with nothing new: %+v", ev)
		}
		v, err := store.NewCheckpointVerifier(testOrigin, newKey.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(c.Note, note.VerifierList(v)); err != nil || c.Size != db.Size() {
			t.Errorf("checkpoint of size %d (log %d) not signed with the new key: %v", c.Size, db.Size(), err)
		}
		// And back to the test key, which the end-of-test check expects.
		c, _ = signLog(t, db)
		covers(t, db, c)
	})

	t.Run("EmptyLog", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		c, ev := signLog(t, db)
		if ev != nil {
			t.Errorf("a checkpoint event in an empty log: %+v", ev)
		}
		covers(t, db, c)
	})
}

func TestCheckpoint(t *testing.T) {
	t.Run("SignsTheTree", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		MustAppend(t, db, 9, store.EventWindowOpened)
		c := MustCheckpoint(t, db)
		if c.Origin != testOrigin || c.Size != 9 || !bytes.Equal(c.Root, MustRoot(t, db, 9)) {
			t.Errorf("checkpoint %s %d %x, want %s 9 and the root of 9 events", c.Origin, c.Size, c.Root, testOrigin)
		}
		v, err := store.NewCheckpointVerifier(testOrigin, testDevicePub)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open(c.Note, note.VerifierList(v))
		if err != nil {
			t.Fatalf("note does not open: %v\n%s", err, c.Note)
		}
		wantText := fmt.Sprintf("%s\n9\n%s\n", testOrigin, base64.StdEncoding.EncodeToString(c.Root))
		if n.Text != wantText {
			t.Errorf("note text %q, want %q", n.Text, wantText)
		}
		latest, err := db.LatestCheckpoint()
		if err != nil || !bytes.Equal(latest, c.Note) {
			t.Errorf("LatestCheckpoint = %q, %v; want the note", latest, err)
		}
		// The event after it carries it.
		var ev struct {
			Seq    uint64
			Type   string
			Detail struct {
				Size uint64
				Root string
				Note string
			}
		}
		if err := json.Unmarshal(MustEvents(t, db, 9, 1)[0], &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != 9 || ev.Type != store.EventCheckpoint || ev.Detail.Size != 9 ||
			ev.Detail.Root != base64.StdEncoding.EncodeToString(c.Root) || ev.Detail.Note != string(c.Note) {
			t.Errorf("checkpoint event %+v", ev)
		}
	})

	t.Run("EmptyTree", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		c := MustCheckpoint(t, db)
		if want := mth(nil); c.Size != 0 || !bytes.Equal(c.Root, want) {
			t.Errorf("checkpoint of the empty log: size %d root %x, want 0 %x", c.Size, c.Root, want)
		}
	})

	t.Run("None", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		if _, err := db.LatestCheckpoint(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LatestCheckpoint = %v, want ErrNotFound", err)
		}
	})

	t.Run("RolledBack", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		first := MustCheckpoint(t, db)
		err := db.Update(func(tx *store.Tx) error {
			c, err := tx.Checkpoint(testOrigin, MustSigner(t))
			if err != nil {
				return err
			}
			if err := tx.Append(c.Event()); err != nil {
				return err
			}
			return errors.New("shutdown")
		})
		if err == nil {
			t.Fatal("Update succeeded")
		}
		if got, err := db.LatestCheckpoint(); err != nil || !bytes.Equal(got, first.Note) {
			t.Errorf("LatestCheckpoint after rollback is not the first one (%v)", err)
		}
		if got := db.Size(); got != 1 {
			t.Errorf("Size = %d after a rolled-back checkpoint, want 1", got)
		}
	})

	t.Run("SignerNotOfOrigin", func(t *testing.T) {
		db, _ := MustOpenDB(t)
		other, err := store.NewCheckpointSigner("consentcam/office-07/other", testDeviceKey)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *store.Tx) error {
			_, err := tx.Checkpoint(testOrigin, other)
			return err
		})
		if err == nil {
			t.Fatal("Checkpoint signed with a key named after another origin")
		}
	})
}

// TestCheckpointKeys checks our note keys against those the note package
// generates itself for the same Ed25519 key.
func TestCheckpointKeys(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// skey is PRIVATE+KEY+name+hash+base64(0x01 || seed).
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		t.Fatalf("unexpected signer key encoding: %v", err)
	}
	key := ed25519.NewKeyFromSeed(raw[1:])

	theirs, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	theirVerifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := store.NewCheckpointSigner(testOrigin, key)
	if err != nil {
		t.Fatal(err)
	}
	ourVerifier, err := store.NewCheckpointVerifier(testOrigin, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if ours.Name() != theirs.Name() || ours.KeyHash() != theirs.KeyHash() {
		t.Errorf("our signer is %s+%08x, note's %s+%08x", ours.Name(), ours.KeyHash(), theirs.Name(), theirs.KeyHash())
	}
	if ourVerifier.Name() != theirVerifier.Name() || ourVerifier.KeyHash() != theirVerifier.KeyHash() {
		t.Errorf("our verifier is %s+%08x, note's %s+%08x", ourVerifier.Name(), ourVerifier.KeyHash(), theirVerifier.Name(), theirVerifier.KeyHash())
	}
	signed, err := note.Sign(&note.Note{Text: testOrigin + "\n1\nAAAA\n"}, ours)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(theirVerifier)); err != nil {
		t.Errorf("note's verifier refuses our signature: %v", err)
	}

	t.Run("BadKeys", func(t *testing.T) {
		if _, err := store.NewCheckpointSigner(testOrigin, key[:10]); err == nil {
			t.Error("signer from a short key")
		}
		if _, err := store.NewCheckpointSigner("has space", key); err == nil {
			t.Error("signer with an invalid name")
		}
		if _, err := store.NewCheckpointVerifier(testOrigin, []byte("short")); err == nil {
			t.Error("verifier from a short key")
		}
	})
}

func MustEvents(tb testing.TB, db *store.DB, from uint64, limit int) [][]byte {
	tb.Helper()
	evs, err := db.Events(from, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

func MustRoot(tb testing.TB, db *store.DB, size uint64) []byte {
	tb.Helper()
	root, err := db.Root(size)
	if err != nil {
		tb.Fatal(err)
	}
	return root
}
