package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
	"go.etcd.io/bbolt"
)

// A damaged state file stops the daemon at start with exit 1, a message
// naming the file, what is wrong and what to do, and nothing written to
// the file; `consentcam store check` refuses it too. The intact store
// passes the check and the daemon starts on it again.
func TestE2EDamagedStore(t *testing.T) {
	b := newBox(t, boxConfig{scene: "nobody", window: time.Hour})
	for _, v := range []string{"v-1", "v-2", "v-3"} {
		b.postVisit(b.consentToken(v, "s-"+v, "channel-attribution"))
	}
	b.waitLogged(eventOf(store.EventWindowOpened, "v-1"))
	// The store has one writer: no check while the daemon runs.
	if out, err := runMain(t, "store", "check", "--config", b.config); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("store check with the daemon running: %v, want the store locked, and to stop the daemon first\n%s", err, out)
	}
	if code := b.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("consentcam run exited %d at SIGTERM", code)
	}
	path := filepath.Join(b.state, StoreFile)
	out, err := runMain(t, "store", "check", "--config", b.config)
	if err != nil || !strings.Contains(out, path+": ok: ") {
		t.Fatalf("store check on the intact store: %v\n%s", err, out)
	}
	intact, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	origin := []byte(store.Origin(b.site, b.camera) + "\n")

	for _, c := range []struct {
		name    string
		damage  func([]byte) []byte
		problem string // what the message says is wrong
	}{
		{"empty", func([]byte) []byte { return nil }, "the file is empty"},
		{"truncated", func(d []byte) []byte { return d[:len(d)/2] }, "cut short"},
		{"page header flipped", func(d []byte) []byte {
			// The flags of a page in use: no longer a branch or leaf page.
			return flipLive(t, d, func([]byte) int { return 8 })
		}, "reading it failed"},
		{"checkpoint flipped", func(d []byte) []byte {
			// The latest checkpoint's size and root.
			return flipLive(t, d, func(page []byte) int {
				if i := bytes.Index(page, origin); i >= 0 {
					return i + len(origin)
				}
				return -1
			})
		}, "checkpoint"},
		{"event flipped", func(d []byte) []byte {
			// An event of the log's tail.
			return flipLive(t, d, func(page []byte) int { return bytes.Index(page, []byte(`"visit":"v-2"`)) })
		}, "audit log: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			damaged := c.damage(bytes.Clone(intact))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "run", "--config", b.config)
			cmd.Env = append(os.Environ(), mainEnv+"=1")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("consentcam run: %v, want exit 1\n%s", err, out)
			}
			t.Logf("consentcam run says:\n%s", out)
			for _, want := range []string{path, c.problem, "The store is damaged", "Never delete or\noverwrite its files", "restore both\nfrom the same backup", "Damaged files"} {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("consentcam run says:\n%s\nwant it to say %q", out, want)
				}
			}
			if bytes.Contains(out, []byte("panic")) || bytes.Contains(out, []byte("goroutine ")) {
				t.Errorf("consentcam run panicked:\n%s", out)
			}
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(after, damaged) {
				t.Errorf("the damaged file was changed (%v)", err)
			}
			if out, err := runMain(t, "store", "check", "--config", b.config); !errors.Is(err, store.ErrDamaged) {
				t.Errorf("store check: %v, want the store refused as damaged\n%s", err, out)
			}
		})
	}

	if err := os.WriteFile(path, intact, 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	b.verifyPulledLog(t)
}

// flipLive returns data with 16 bytes flipped in the first page in use (a
// branch or leaf page, not a free one) where at returns an offset >= 0.
func flipLive(t *testing.T, data []byte, at func(page []byte) int) []byte {
	t.Helper()
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(copyPath, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	size, flipped := db.Info().PageSize, false
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type != "leaf" && p.Type != "branch" {
				continue
			}
			page := data[id*size : (id+1)*size]
			if i := at(page); i >= 0 && i+16 <= len(page) {
				for j := range 16 {
					page[i+j] ^= 0x5a
				}
				flipped = true
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !flipped {
		t.Fatal("no page in use to damage")
	}
	return data
}
