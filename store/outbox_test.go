package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// Events waiting in the outbox after an outage are served from the blocks
// the log keeps them in once 64 of them are complete.
func TestOutboxAcrossBlocks(t *testing.T) {
	db, clock := MustOpenDB(t)
	const n = 150
	for i := 0; i < n; i += 7 {
		MustUpdate(t, db, func(tx *store.Tx) error {
			for j := i; j < min(n, i+7); j++ {
				if err := tx.Append(&store.Event{Type: store.EventWindowOpened, Reason: fmt.Sprint("event ", j)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	events := MustEvents(t, db, 0, n+1)
	if len(events) != n {
		t.Fatalf("Events: %d, want %d", len(events), n)
	}
	for i, ev := range events {
		if !bytes.Contains(ev, []byte(fmt.Sprintf(`"seq":%d,`, i))) || !bytes.Contains(ev, []byte(fmt.Sprintf(`"event %d"`, i))) {
			t.Fatalf("event %d: %s", i, ev)
		}
	}
	for _, from := range []uint64{0, 63, 64, 100, 127, 128, 149} {
		if got := MustEvents(t, db, from, 3); !slices.EqualFunc(got, events[from:min(n, from+3)], bytes.Equal) {
			t.Errorf("Events(%d, 3) differ from the log", from)
		}
	}
	all := make([]uint64, n)
	for i := range all {
		all[i] = uint64(i)
	}
	assertPending(t, db, events, all...)
	if err := db.Ack(all[:70]...); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db, clock)
	assertPending(t, db, events, all[70:]...)
}

func TestOutbox(t *testing.T) {
	db, clock := MustOpenDB(t)
	MustAppend(t, db, 10, store.EventWindowOpened)
	events := MustEvents(t, db, 0, 10)

	t.Run("AllPendingInOrder", func(t *testing.T) {
		assertPending(t, db, events, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	})

	if err := db.Ack(0, 1, 2, 5); err != nil {
		t.Fatal(err)
	}
	t.Run("AckedGone", func(t *testing.T) {
		assertPending(t, db, events, 3, 4, 6, 7, 8, 9)
	})

	db = MustReopen(t, db, clock)
	t.Run("SurvivesReopen", func(t *testing.T) {
		assertPending(t, db, events, 3, 4, 6, 7, 8, 9)
	})

	t.Run("AckTwiceAndUnknown", func(t *testing.T) {
		if err := db.Ack(0, 3, 3, 1000); err != nil {
			t.Fatal(err)
		}
		assertPending(t, db, events, 4, 6, 7, 8, 9)
	})

	t.Run("Limit", func(t *testing.T) {
		msgs, err := db.Pending(2)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(msgs); !slices.Equal(got, []uint64{4, 6}) {
			t.Errorf("Pending(2) = %v, want [4 6]", got)
		}
		if _, err := db.Pending(0); err == nil {
			t.Error("Pending(0) accepted")
		}
	})

	t.Run("NewEventsQueued", func(t *testing.T) {
		MustAppend(t, db, 1, store.EventWindowClosed)
		assertPending(t, db, MustEvents(t, db, 0, 11), 4, 6, 7, 8, 9, 10)
	})

	t.Run("RolledBackEventNotQueued", func(t *testing.T) {
		err := db.Update(func(tx *store.Tx) error {
			if err := tx.Append(&store.Event{Type: store.EventWindowOpened}); err != nil {
				return err
			}
			return errors.New("abort")
		})
		if err == nil {
			t.Fatal("Update succeeded")
		}
		assertPending(t, db, MustEvents(t, db, 0, 11), 4, 6, 7, 8, 9, 10)
	})

	t.Run("AllAcked", func(t *testing.T) {
		msgs, err := db.Pending(100)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Ack(seqs(msgs)...); err != nil {
			t.Fatal(err)
		}
		assertPending(t, db, nil)
	})
}

// assertPending checks that the outbox holds exactly the events of want, in
// order, with their stored bytes, and that PendingCount agrees.
func assertPending(tb testing.TB, db *store.DB, events [][]byte, want ...uint64) {
	tb.Helper()
	msgs, err := db.Pending(1000)
	if err != nil {
		tb.Fatal(err)
	}
	if got := seqs(msgs); !slices.Equal(got, want) {
		tb.Fatalf("Pending = %v, want %v", got, want)
	}
	for _, m := range msgs {
		if !bytes.Equal(m.Payload, events[m.Seq]) {
			tb.Errorf("message %d: payload %s, want the stored event %s", m.Seq, m.Payload, events[m.Seq])
		}
	}
	if n, err := db.PendingCount(); err != nil || n != len(want) {
		tb.Errorf("PendingCount = %d, %v; want %d", n, err, len(want))
	}
}

func seqs(msgs []store.Message) []uint64 {
	s := make([]uint64, len(msgs))
	for i, m := range msgs {
		s[i] = m.Seq
	}
	return s
}

func TestSpend(t *testing.T) {
	db, clock := MustOpenDB(t)
	const jti = "token-1"
	until := clock.Now().Add(15 * time.Minute)
	spend := func(jti string, until time.Time) error {
		return db.Update(func(tx *store.Tx) error { return tx.Spend(jti, until) })
	}
	spent := func(t *testing.T, jti string, want bool) {
		t.Helper()
		if got, err := db.Spent(jti); err != nil || got != want {
			t.Errorf("Spent(%q) = %v, %v; want %v", jti, got, err, want)
		}
	}

	t.Run("NotYetSpent", func(t *testing.T) { spent(t, jti, false) })
	if err := spend(jti, until); err != nil {
		t.Fatal(err)
	}
	t.Run("Spent", func(t *testing.T) { spent(t, jti, true) })
	t.Run("ReplayRefused", func(t *testing.T) {
		clock.Advance(15*time.Minute - time.Nanosecond)
		if err := spend(jti, until.Add(time.Hour)); !errors.Is(err, store.ErrReplayed) {
			t.Fatalf("second Spend: %v, want ErrReplayed", err)
		}
		spent(t, jti, true)
	})
	t.Run("RolledBackNotRemembered", func(t *testing.T) {
		err := db.Update(func(tx *store.Tx) error {
			if err := tx.Spend("token-2", until); err != nil {
				return err
			}
			return errors.New("abort")
		})
		if err == nil {
			t.Fatal("Update succeeded")
		}
		spent(t, "token-2", false)
	})
	db = MustReopen(t, db, clock)
	t.Run("RememberedAcrossReopen", func(t *testing.T) { spent(t, jti, true) })
	t.Run("PastItsTime", func(t *testing.T) {
		clock.Advance(time.Nanosecond) // now == until
		spent(t, jti, false)
	})
	t.Run("ForgottenBySweep", func(t *testing.T) {
		if err := spend("token-3", clock.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		res := MustSweep(t, db, clock.Now())
		if res.Forgotten != 1 {
			t.Errorf("sweep forgot %d token ids, want 1", res.Forgotten)
		}
		spent(t, "token-3", true) // not yet past its time
		if err := spend(jti, clock.Now().Add(time.Hour)); err != nil {
			t.Errorf("Spend of a forgotten id: %v", err)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		if err := spend("", until); err == nil {
			t.Error("Spend of an empty id accepted")
		}
	})
}
