package testenv

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// OmniwitnessVersion is the omniwitness (github.com/transparency-dev/witness,
// which has no release tags) the tests run: a pseudo-version that installs
// from the Go module proxy. The Makefile's OMNIWITNESS_VERSION must be the
// same (TestOmniwitnessVersionInMakefile checks it).
const OmniwitnessVersion = "v0.0.0-20260720115447-2e1c6971d19e"

const omniwitnessPackage = "github.com/transparency-dev/witness/cmd/omniwitness"

// OmniwitnessDir is where the omniwitness binary is cached, outside the
// checkout: $CONSENTCAM_OMNIWITNESS_DIR, or consentcam/omniwitness-VERSION in
// the user's cache directory (~/.cache). `make test-deps` installs it there.
func OmniwitnessDir() (string, error) {
	if d := os.Getenv("CONSENTCAM_OMNIWITNESS_DIR"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "consentcam", "omniwitness-"+OmniwitnessVersion), nil
}

// OmniwitnessBin returns the path of the omniwitness binary, installing it
// with `go install` on first use (a minute or two; one test process at a time
// under a file lock). When it cannot be installed the test is skipped, or
// fails under CI.
func OmniwitnessBin(tb testing.TB) string {
	tb.Helper()
	dir, err := OmniwitnessDir()
	if err != nil {
		missing(tb, "omniwitness: no cache directory: %v", err)
	}
	bin := filepath.Join(dir, "omniwitness")
	if isExecutable(bin) {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		missing(tb, "omniwitness: %v", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		missing(tb, "omniwitness: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		missing(tb, "omniwitness: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(bin) { // another test process installed it meanwhile
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		missing(tb, "omniwitness is not installed and go is not on PATH to install it: run `make test-deps`")
	}
	tb.Logf("installing omniwitness %s into %s (once)", OmniwitnessVersion, dir)
	cmd := exec.Command(goBin, "install", omniwitnessPackage+"@"+OmniwitnessVersion)
	// GOFLAGS of the project (such as -mod) do not apply to go install pkg@version.
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(tb, "go install %s@%s: %v\n%s", omniwitnessPackage, OmniwitnessVersion, err, out)
	}
	return bin
}

// WitnessedLog is a log a witness follows: its checkpoint origin and the
// note verifier key (vkey) of its checkpoints.
type WitnessedLog struct {
	Origin string
	VKey   string
}

// Omniwitness is a real C2SP tlog-witness (transparency-dev's omniwitness)
// on a loopback port the test picked, keeping its state in a SQLite file of
// its own so that it can be stopped and started again without forgetting
// what it cosigned. Nothing in it reaches out: no distributor, no bastion,
// no public witness network list, no metrics listener.
type Omniwitness struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	// Name is the witness's key name; VKey its cosignature/v1 verifier key,
	// as its operator would publish it.
	Name string
	VKey string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}

	logMu sync.Mutex
	log   bytes.Buffer
}

// StartOmniwitness starts a witness named name with a new key that follows
// logs. It is stopped when the test ends.
func StartOmniwitness(tb testing.TB, name string, logs ...WitnessedLog) *Omniwitness {
	tb.Helper()
	w := &Omniwitness{tb: tb, bin: OmniwitnessBin(tb), dir: tb.TempDir(), port: FreePort(tb), Name: name}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	if w.VKey, err = fnote.VKeyToCosignatureV1(vkey); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "witness.key"), []byte(skey), 0o600); err != nil {
		tb.Fatal(err)
	}
	var yaml strings.Builder
	yaml.WriteString("Logs:\n")
	for _, l := range logs {
		fmt.Fprintf(&yaml, "  - Origin: %q\n    PublicKey: %q\n", l.Origin, l.VKey)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "logs.yaml"), []byte(yaml.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	w.Start()
	tb.Cleanup(func() {
		w.Stop()
		if tb.Failed() {
			tb.Logf("omniwitness %s log:\n%s", name, w.Log())
		}
	})
	return w
}

// URL is the witness's submission prefix: http://127.0.0.1:PORT.
func (w *Omniwitness) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", w.port) }

// Start (re)starts the witness and waits until it accepts connections.
func (w *Omniwitness) Start() {
	w.tb.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil {
		w.tb.Fatal("omniwitness already running")
	}
	cmd := exec.Command(w.bin,
		"--listen", fmt.Sprintf("127.0.0.1:%d", w.port),
		"--metrics_listen=",
		"--db_file", filepath.Join(w.dir, "witness.db"),
		"--private_key_path", filepath.Join(w.dir, "witness.key"),
		"--additional_logs", filepath.Join(w.dir, "logs.yaml"),
		"--logtostderr", "--v=1")
	cmd.Stdout, cmd.Stderr = witnessLog{w}, witnessLog{w}
	if err := cmd.Start(); err != nil {
		w.tb.Fatalf("start omniwitness: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	w.cmd, w.done = cmd, done
	exited := false
	listening := WaitUntil(30*time.Second, func() bool {
		select {
		case <-done:
			exited = true
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", w.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	switch {
	case exited:
		w.tb.Fatalf("omniwitness exited at start:\n%s", w.Log())
	case !listening:
		w.tb.Fatalf("omniwitness not listening on port %d after 30s:\n%s", w.port, w.Log())
	}
}

// Stop stops the witness (it keeps its state file) and waits.
func (w *Omniwitness) Stop() {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.cmd = nil
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Log is what the witness printed so far.
func (w *Omniwitness) Log() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.String()
}

type witnessLog struct{ w *Omniwitness }

func (l witnessLog) Write(p []byte) (int, error) {
	l.w.logMu.Lock()
	defer l.w.logMu.Unlock()
	return l.w.log.Write(p)
}
