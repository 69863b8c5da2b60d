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
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

// crashChildEnv, when set, makes TestCrashRecovery the child: it writes to
// the store at that path until it is killed.
const crashChildEnv = "CONSENTCAM_STORE_CRASH_CHILD"

// TestCrashRecovery kills a process writing to the store with SIGKILL, at
// random moments, many times over, and checks after each kill that the file
// opens and holds a whole log: seqs without gap, a Merkle state equal to the
// hash of the leaves, an outbox and records consistent with it, and bbolt's
// own check passing.
func TestCrashRecovery(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("kills a child process many times; not in -short")
	}
	path := filepath.Join(t.TempDir(), "consentcam.db")
	var sizes []uint64
	for round := range 12 {
		killChild(t, path, time.Duration(5+rand.IntN(150))*time.Millisecond)

		db := NewTestDB(path, NewClock())
		if err := db.Open(); err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		size := db.Size()
		if len(sizes) > 0 && size < sizes[len(sizes)-1] {
			t.Fatalf("round %d: log shrank from %d to %d events", round, sizes[len(sizes)-1], size)
		}
		sizes = append(sizes, size)
		assertWholeLog(t, db)
		MustClose(t, db) // bbolt check and store invariants, then the log verified
	}
	if sizes[len(sizes)-1] == 0 || sizes[len(sizes)-1] == sizes[0] {
		t.Fatalf("the children made no progress: sizes %v", sizes)
	}
	t.Logf("log sizes after each kill: %v", sizes)
}

// killChild starts the child on path, lets it write for d once it is ready,
// and kills it.
func killChild(t *testing.T, path string, d time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
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
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended by itself (%v), not by the kill: %s", err, stderr.Bytes())
	}
}

// crashChild writes everything the store does, transaction after
// transaction, until killed: events one or several at a time, records,
// erasures, sweeps, spent token ids, checkpoints, acknowledgements.
func crashChild(t *testing.T, path string) {
	clock := NewClock()
	db := NewTestDB(path, clock)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Duration(db.Size()) * time.Minute)
	signer := MustSigner(t)
	image := bytes.Repeat([]byte("not a real image "), 1000)
	fmt.Println("ready")
	for i := 0; ; i++ {
		clock.Advance(time.Minute)
		subject := fmt.Sprintf("subj-%d", i%5)
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
				if _, err := tx.Sweep(clock.Now()); err != nil {
					return err
				}
			case 2:
				if err := tx.Spend(fmt.Sprintf("jti-%d", i), clock.Now().Add(3*time.Minute)); err != nil {
					return err
				}
			case 3:
				c, err := tx.Checkpoint(testOrigin, signer)
				if err != nil {
					return err
				}
				return tx.Append(c.Event())
			case 4:
				if i%15 == 4 {
					if _, err := tx.Erase(store.Selector{Subject: subject}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
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
