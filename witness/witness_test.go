package witness_test

// The scenarios of issue 15 against a real C2SP witness: transparency-dev's
// omniwitness on a loopback port (internal/testenv installs and starts it),
// configured for the test log's origin and key, and real store files for
// the logs.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

// push witnesses a checkpoint and fails the test if the call itself fails.
func push(tb testing.TB, c *witness.Client, cp []byte) *witness.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Witness(ctx, cp)
	if err != nil {
		tb.Fatalf("Witness: %v", err)
	}
	return res
}

// verifyLog checks the box's whole log against a checkpoint note, as
// `consentcam audit verify --checkpoint` does.
func (b *box) verifyLog(checkpoint []byte) {
	b.tb.Helper()
	evs, err := b.db.Events(0, 1<<20)
	if err != nil {
		b.tb.Fatal(err)
	}
	var lines strings.Builder
	for _, ev := range evs {
		lines.Write(ev)
		lines.WriteByte('\n')
	}
	if _, err := store.VerifyLog(strings.NewReader(lines.String()), checkpoint, testDeviceKey.Public().(ed25519.PublicKey)); err != nil {
		b.tb.Errorf("the log does not verify against the cosigned checkpoint: %v\n%s", err, checkpoint)
	}
}

func TestNormalOperation(t *testing.T) {
	w1, w2 := startWitness(t, "witness.example/w1"), startWitness(t, "witness.example/w2")
	b := newBox(t)
	c := b.client(0, w1, w2)
	vs := verifiers(t, w1, w2)

	var prev uint64
	for round := range 5 {
		before := time.Now().Add(-time.Second).Truncate(time.Second)
		res := push(t, c, b.checkpoint(3+round))
		if res.Cosigned() != 2 || !res.QuorumMet() || res.Quorum != 2 {
			t.Fatalf("round %d: %d of %d cosigned: %+v", round, res.Cosigned(), res.Quorum, res.Statuses)
		}
		for _, st := range res.Statuses {
			// One request each, from the size cosigned the round before
			// (0 at first: the witness trusts the first checkpoint it sees).
			if st.Err != nil || st.Requests != 1 || st.Old != prev || st.Changed || st.Skipped {
				t.Errorf("round %d: %s: %+v, want cosigned with one request from %d", round, st.Witness, st, prev)
			}
			if st.Time.Before(before) || st.Time.After(time.Now()) {
				t.Errorf("round %d: %s: cosignature time %v, want about now", round, st.Witness, st.Time)
			}
		}
		got, err := witness.VerifyCosigned(res.Note, logVerifier(t), vs, 0)
		if err != nil {
			t.Fatalf("round %d: the cosigned note does not verify: %v\n%s", round, err, res.Note)
		}
		if got.Size != res.Size || got.Origin != testOrigin || len(got.Witnesses) != 2 || len(got.Others) != 0 {
			t.Errorf("round %d: VerifyCosigned = %+v", round, got)
		}
		b.verifyLog(res.Note)
		prev = res.Size
	}
	if got := c.Sizes(); got[w1.Name] != prev || got[w2.Name] != prev || len(got) != 2 {
		t.Errorf("Sizes() = %v, want both at %d", got, prev)
	}

	t.Run("the same checkpoint again", func(t *testing.T) {
		cp, err := b.db.LatestCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		res := push(t, c, cp)
		for _, st := range res.Statuses {
			if st.Err != nil || st.Old != prev || st.Requests != 1 {
				t.Errorf("%s: %+v, want cosigned again", st.Witness, st)
			}
		}
	})

	t.Run("a new client told the sizes saves the round trip", func(t *testing.T) {
		fresh := b.client(0, w1, w2)
		fresh.SetSizes(c.Sizes())
		res := push(t, fresh, b.checkpoint(2))
		for _, st := range res.Statuses {
			if st.Err != nil || st.Old != prev || st.Requests != 1 {
				t.Errorf("%s: %+v, want one request from %d", st.Witness, st, prev)
			}
		}
		prev = res.Size
	})

	t.Run("a new client that knows nothing resynchronises on 409", func(t *testing.T) {
		res := push(t, b.client(0, w1, w2), b.checkpoint(2))
		for _, st := range res.Statuses {
			if st.Err != nil || st.Old != prev || st.Requests != 2 {
				t.Errorf("%s: %+v, want cosigned at the second request, from %d", st.Witness, st, prev)
			}
		}
	})
}

func TestWitnessDownThenBack(t *testing.T) {
	w := startWitness(t, "witness.example/w1")
	b := newBox(t)
	c := b.client(0, w)
	cosigned := push(t, c, b.checkpoint(4)).Size

	w.Stop()
	// The first failure is a change to record; repeats are not; after n
	// failures in a row the client sits out 2^(n-1)-1 pushes.
	want := []struct {
		skipped  bool
		changed  bool
		failures int
	}{
		{false, true, 1}, {false, false, 2}, {true, false, 2}, {false, false, 3}, {true, false, 3}, {true, false, 3}, {true, false, 3},
	}
	for i, wt := range want {
		res := push(t, c, b.checkpoint(2))
		st := res.Statuses[0]
		if !errors.Is(st.Err, witness.ErrDown) || witness.Reason(st.Err) != "down" {
			t.Fatalf("push %d with the witness down: %+v, want a down error", i, st)
		}
		if st.Skipped != wt.skipped || st.Changed != wt.changed || st.Failures != wt.failures {
			t.Errorf("push %d: skipped %v changed %v failures %d, want %v %v %d",
				i, st.Skipped, st.Changed, st.Failures, wt.skipped, wt.changed, wt.failures)
		}
		if res.QuorumMet() {
			t.Errorf("push %d: quorum met with the only witness down", i)
		}
		// The agent still has its own checkpoint to publish.
		if _, err := witness.VerifyCosigned(res.Note, logVerifier(t), verifiers(t, w), 0); !errors.Is(err, witness.ErrQuorum) {
			t.Errorf("push %d: VerifyCosigned = %v, want ErrQuorum", i, err)
		}
		b.verifyLog(res.Note)
	}

	w.Start()
	st := push(t, c, b.checkpoint(1)).Statuses[0]
	switch {
	case st.Err != nil:
		t.Fatalf("witness back: %v", st.Err)
	case !st.Changed || st.Failures != 3:
		t.Errorf("witness back: changed %v failures %d, want a recovery after 3 failures", st.Changed, st.Failures)
	case st.Old != cosigned || st.Requests != 1:
		// It caught up with one consistency proof, from what it cosigned
		// before going down to the log of now.
		t.Errorf("witness back: %d requests from %d, want 1 from %d", st.Requests, st.Old, cosigned)
	}
}

func TestRestoredBackupIsAFork(t *testing.T) {
	w := startWitness(t, "witness.example/w1")
	b := newBox(t)
	c := b.client(0, w)
	push(t, c, b.checkpoint(5))
	backup := filepath.Join(t.TempDir(), "backup.db")
	b.copyTo(backup)
	push(t, c, b.checkpoint(5))
	witnessed := push(t, c, b.checkpoint(5)).Size
	original := filepath.Join(t.TempDir(), "original.db")
	b.copyTo(original)

	for _, tc := range []struct {
		name   string
		events int  // appended to the restored log
		fresh  bool // the agent restarted: a client that knows no size
		status int  // what the witness answered last (0: nothing asked)
	}{
		{"restored log shorter than witnessed", 2, false, 0},
		{"restored log shorter than witnessed, after a restart", 2, true, 409},
		{"restored log appended past what was witnessed", 40, false, 422},
		{"restored log appended past what was witnessed, after a restart", 40, true, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.restore(backup)
			cl := c
			if tc.fresh {
				cl = b.client(0, w)
			}
			res := push(t, cl, b.checkpoint(tc.events))
			st := res.Statuses[0]
			var werr *witness.Error
			if !errors.As(st.Err, &werr) || !errors.Is(st.Err, witness.ErrFork) || witness.Reason(st.Err) != "fork" {
				t.Fatalf("status %+v, want a fork error", st)
			}
			if werr.Status != tc.status || werr.Witness != w.Name {
				t.Errorf("error %+v, want status %d from %s", werr, tc.status, w.Name)
			}
			if res.QuorumMet() || bytesContain(res.Note, w.Name) {
				t.Errorf("the forked checkpoint carries a cosignature:\n%s", res.Note)
			}
			t.Logf("%v", st.Err)
		})
	}

	// The witness kept the history it saw: the original log goes on.
	b.restore(original)
	st := push(t, b.client(0, w), b.checkpoint(1)).Statuses[0]
	if st.Err != nil || st.Old != witnessed {
		t.Errorf("the original log after the forks: %+v, want cosigned from %d", st, witnessed)
	}
}

func TestSecondBoxWithTheSameKey(t *testing.T) {
	w := startWitness(t, "witness.example/w1")
	first, second := newBox(t), newBox(t) // same origin, same device key
	c1, c2 := first.client(0, w), second.client(0, w)
	witnessed := push(t, c1, first.checkpoint(10)).Size

	for _, tc := range []struct {
		name   string
		events int
		status int
	}{
		{"shorter history", 3, 409},
		{"longer history", 30, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := push(t, c2, second.checkpoint(tc.events))
			st := res.Statuses[0]
			var werr *witness.Error
			if !errors.As(st.Err, &werr) || !errors.Is(werr, witness.ErrFork) || werr.Status != tc.status {
				t.Fatalf("second box: %+v, want a fork error with status %d", st, tc.status)
			}
			t.Logf("%v", st.Err)
		})
	}

	st := push(t, c1, first.checkpoint(1)).Statuses[0]
	if st.Err != nil || st.Old != witnessed || st.Requests != 1 {
		t.Errorf("first box after the fork attempts: %+v, want cosigned from %d", st, witnessed)
	}
}

func TestRefused(t *testing.T) {
	b := newBox(t)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, err := note.NewEd25519VerifierKey(testOrigin, stranger.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	// C2SP tlog-witness says 404 and 403. The omniwitness pinned answers 500
	// to both (its SQLite log list fails on an unknown origin; it does not
	// map a checkpoint without a trusted signature): the client can only
	// call that down. TestProtocol covers 404 and 403.
	for _, tc := range []struct {
		name string
		log  []testenv.WitnessedLog
		spec int
	}{
		{"witness does not know the log", nil, 404},
		{"witness knows the origin with another key", []testenv.WitnessedLog{{Origin: testOrigin, VKey: otherKey}}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testenv.StartOmniwitness(t, "witness.example/w1", tc.log...)
			res := push(t, b.client(0, w), b.checkpoint(1))
			st := res.Statuses[0]
			var werr *witness.Error
			switch {
			case !errors.As(st.Err, &werr):
				t.Fatalf("%+v, want an error", st)
			case werr.Status == tc.spec && errors.Is(werr, witness.ErrRefused):
			case werr.Status == 500 && errors.Is(werr, witness.ErrDown):
			default:
				t.Errorf("%v, want refused (%d) or, from this omniwitness, down (500)", werr, tc.spec)
			}
			if res.QuorumMet() || bytesContain(res.Note, w.Name) {
				t.Errorf("cosigned:\n%s", res.Note)
			}
			t.Logf("%v", st.Err)
		})
	}

	t.Run("cosignature by another key than configured", func(t *testing.T) {
		w := startWitness(t, "witness.example/w1")
		// The name is right, the key is not.
		res := push(t, b.clientOf(0, witness.Config{Name: w.Name, URL: w.URL(), Key: mustVKey(t, w.Name)}), b.checkpoint(1))
		st := res.Statuses[0]
		if !errors.Is(st.Err, witness.ErrBadResponse) || witness.Reason(st.Err) != "bad-response" {
			t.Fatalf("%+v, want a bad response", st)
		}
		if bytesContain(res.Note, w.Name) {
			t.Errorf("a cosignature not verified by the configured key is in the note:\n%s", res.Note)
		}
		t.Logf("%v", st.Err)
	})
}

func TestQuorum(t *testing.T) {
	w1, w2 := startWitness(t, "witness.example/w1"), startWitness(t, "witness.example/w2")
	b := newBox(t)
	w2.Stop()
	for _, tc := range []struct {
		quorum int
		met    bool
	}{{1, true}, {2, false}, {0, false}} {
		res := push(t, b.client(tc.quorum, w1, w2), b.checkpoint(1))
		if res.Cosigned() != 1 || res.QuorumMet() != tc.met {
			t.Errorf("quorum %d: %d cosigned, met %v; want 1 cosigned, met %v", tc.quorum, res.Cosigned(), res.QuorumMet(), tc.met)
		}
		if _, err := witness.VerifyCosigned(res.Note, logVerifier(t), verifiers(t, w1, w2), tc.quorum); (err == nil) != tc.met {
			t.Errorf("quorum %d: VerifyCosigned = %v", tc.quorum, err)
		}
	}
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }
