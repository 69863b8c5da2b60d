package store_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// crashChildEnv, when set, makes TestCrashRecovery the child: it writes to
// the store at that path until it is killed. crashStepEnv, when set to
// STEP:N, makes it kill itself the N-th time it has done that step of a
// write that spans both files (store.Step…).
const (
	crashChildEnv = "CONSENTCAM_STORE_CRASH_CHILD"
	crashStepEnv  = "CONSENTCAM_STORE_CRASH_STEP"
)

// TestCrashRecovery kills a process writing to the store with SIGKILL many
// times over: at random moments, and between the steps of a capture (its
// data key committed, its record not yet) and of an erasure (its records
// deleted, their keys not yet; the keys deleted, their pages not yet
// overwritten; overwritten, not yet synced). After each kill it checks that
// the store opens and holds a whole log (seqs without gap, a Merkle state
// equal to the hash of the leaves, an outbox and records consistent with
// it, bbolt's own check passing), that no record is without its data key,
// and that no data key but those of the records stored can be recovered
// from any page of either file.
func TestCrashRecovery(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("kills a child process many times; not in -short")
	}
	path := filepath.Join(t.TempDir(), "consentcam.db")
	type round struct {
		step string        // kill at this step, or
		wait time.Duration // at this moment
	}
	var rounds []round
	for range 8 {
		rounds = append(rounds, round{wait: time.Duration(5+rand.IntN(150)) * time.Millisecond})
	}
	for _, step := range []string{store.StepKeysCommitted, store.StepRecordsGone, store.StepKeysDeleted, store.StepPagesWiped} {
		rounds = append(rounds, round{step: step}, round{step: step})
	}
	rand.Shuffle(len(rounds), func(i, j int) { rounds[i], rounds[j] = rounds[j], rounds[i] })
	var sizes []uint64
	for i, r := range rounds {
		if r.step != "" {
			killChildAt(t, path, fmt.Sprintf("%s:%d", r.step, 1+rand.IntN(3)))
		} else {
			killChild(t, path, r.wait)
		}

		db := NewTestDB(path, NewClock())
		if err := db.Open(); err != nil {
			t.Fatalf("round %d (%+v): open after kill: %v", i, r, err)
		}
		size := db.Size()
		if len(sizes) > 0 && size < sizes[len(sizes)-1] {
			t.Fatalf("round %d (%+v): log shrank from %d to %d events", i, r, sizes[len(sizes)-1], size)
		}
		sizes = append(sizes, size)
		assertWholeLog(t, db)
		assertOnlyLiveKeys(t, db)
		MustClose(t, db) // bbolt check and store invariants (every record's key opens its image), then the log verified
	}
	if sizes[len(sizes)-1] == 0 || sizes[len(sizes)-1] == sizes[0] {
		t.Fatalf("the children made no progress: sizes %v", sizes)
	}
	t.Logf("log sizes after each kill: %v", sizes)
}

// assertOnlyLiveKeys checks that the data keys that can be recovered from
// the pages of the key file, freed pages included, are exactly those of the
// records stored (of crashChild's subjects), and that none can be recovered
// from the store file.
func assertOnlyLiveKeys(t *testing.T, db *store.DB) {
	t.Helper()
	var live []*store.Record
	for s := range crashSubjects {
		live = append(live, MustRecords(t, db, store.Selector{Subject: fmt.Sprintf("subj-%d", s)})...)
	}
	if got, want := recoverableKeys(t, db.KeysPath()), ids(live); !slices.Equal(got, want) {
		t.Fatalf("data keys recoverable from the key file: %v, want those of the records stored %v", got, want)
	}
	if got := recoverableKeys(t, db.Path()); len(got) != 0 {
		t.Fatalf("data keys recoverable from the store file: %v", got)
	}
}

// killChild starts the child on path, lets it write for d once it is ready,
// and kills it.
func killChild(t *testing.T, path string, d time.Duration) {
	t.Helper()
	cmd, stderr, ready := startChild(t, path)
	select {
	case <-ready:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child did not start: %s", stderr.Bytes())
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killed(err) {
		t.Fatalf("the child ended by itself (%v), not by the kill: %s", err, stderr.Bytes())
	}
}

// killChildAt starts the child on path with crashStepEnv set to step, and
// waits until it has killed itself there.
func killChildAt(t *testing.T, path, step string) {
	t.Helper()
	cmd, stderr, _ := startChild(t, path, crashStepEnv+"="+step)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if !killed(err) {
			t.Fatalf("the child did not die at %s (%v): %s", step, err, stderr.Bytes())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the child did not reach %s within a minute: %s", step, stderr.Bytes())
	}
}

// startChild starts the child writing to path, with env added; ready
// receives once it is writing.
func startChild(t *testing.T, path string, env ...string) (*exec.Cmd, *bytes.Buffer, <-chan bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), crashChildEnv+"="+path), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
	}()
	return cmd, &stderr, ready
}

// killed reports whether a child's Wait error says SIGKILL ended it.
func killed(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
}

// crashSubjects is how many subjects crashChild's records have.
const crashSubjects = 5

// crashChild writes everything the store does, transaction after
// transaction, until killed: events one or several at a time, records,
// erasures, sweeps, spent token ids, checkpoints, acknowledgements, and the
// maintenance step after erasures.
func crashChild(t *testing.T, path string) {
	clock := NewClock()
	db := NewTestDB(path, clock)
	if arg := os.Getenv(crashStepEnv); arg != "" {
		step, n, _ := strings.Cut(arg, ":")
		left, err := strconv.Atoi(n)
		if err != nil {
			t.Fatal(err)
		}
		db.SetHook(func(s string) {
			if s == step {
				if left--; left == 0 {
					syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
				}
			}
		})
	}
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Duration(db.Size()) * time.Minute)
	signer := MustSigner(t)
	image := bytes.Repeat([]byte("not a real image "), 1000)
	fmt.Println("ready")
	for i := 0; ; i++ {
		clock.Advance(time.Minute)
		subject := fmt.Sprintf("subj-%d", i%crashSubjects)
		erased := false
		err := db.Update(func(tx *store.Tx) error {
			for range 1 + i%3 {
				if err := tx.Append(&store.Event{Type: store.EventWindowOpened, Subject: subject}); err != nil {
					return err
				}
			}
			switch i % 5 {
			case 0:
				rec := NewRecord(clock, subject, fmt.Sprintf("visit-%d", i), Retained(clock, purposeChannel, 7*time.Minute))
				if err := tx.PutRecord(rec, image); err != nil {
					return err
				}
			case 1:
				res, err := tx.Sweep(clock.Now())
				if err != nil {
					return err
				}
				erased = len(res.Expired) > 0
			case 2:
				if err := tx.Spend(fmt.Sprintf("jti-%d", i), clock.Now().Add(3*time.Minute)); err != nil {
					return err
				}
			case 3:
				_, _, err := tx.SignLog(testOrigin, signer, "agent")
				return err
			case 4:
				if i%15 == 4 {
					recs, err := tx.Erase(store.Selector{Subject: subject})
					if err != nil {
						return err
					}
					erased = len(recs) > 0
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if erased && i%2 == 0 {
			if _, err := db.Compact(); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 0 {
			msgs, err := db.Pending(3)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if err := db.Ack(m.Seq); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// assertWholeLog checks the log against the textbook Merkle tree hash of its
// leaves, and the outbox against the log.
func assertWholeLog(t *testing.T, db *store.DB) {
	t.Helper()
	n := db.Size()
	evs := MustEvents(t, db, 0, int(n)+1)
	if uint64(len(evs)) != n {
		t.Fatalf("%d events stored, Size %d", len(evs), n)
	}
	for i, b := range evs {
		var ev struct{ Seq uint64 }
		if err := json.Unmarshal(b, &ev); err != nil || ev.Seq != uint64(i) {
			t.Fatalf("event %d: seq %d (%v)", i, ev.Seq, err)
		}
	}
	if got, want := MustRoot(t, db, n), mth(evs); !bytes.Equal(got, want) {
		t.Fatalf("Root(%d) = %x, the leaves hash to %x", n, got, want)
	}
	msgs, err := db.Pending(int(n) + 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(msgs, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) }) {
		t.Fatalf("outbox out of order: %v", seqs(msgs))
	}
	for _, m := range msgs {
		if !bytes.Equal(m.Payload, evs[m.Seq]) {
			t.Fatalf("outbox message %d differs from the event", m.Seq)
		}
	}
	if count, err := db.PendingCount(); err != nil || count != len(msgs) {
		t.Fatalf("PendingCount %d (%v), outbox holds %d", count, err, len(msgs))
	}
}
