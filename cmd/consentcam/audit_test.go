package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

// witnessedLog is an audit log in a real store whose latest checkpoint went
// through real witnesses, and the files an auditor verifies it with.
type witnessedLog struct {
	db     *store.DB
	signer note.Signer
	origin string
	dir    string
	pubkey string // device.pub
	log    string // the log, JSON Lines
}

func newWitnessedLog(t *testing.T) *witnessedLog {
	t.Helper()
	l := &witnessedLog{dir: t.TempDir(), origin: store.Origin(e2eSite, e2eCamera)}
	keys := filepath.Join(l.dir, "keys")
	if out, err := runMain(t, "keys", "gen", "--dir", keys); err != nil {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	l.pubkey = filepath.Join(keys, "device.pub")
	device, err := consent.ReadPrivateKey(filepath.Join(keys, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	if l.signer, err = store.NewCheckpointSigner(l.origin, device); err != nil {
		t.Fatal(err)
	}
	l.db = store.NewDB(filepath.Join(l.dir, "state", StoreFile))
	l.db.MasterKey, l.db.Site, l.db.Camera = bytes.Repeat([]byte{7}, 32), e2eSite, e2eCamera
	if err := l.db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.db.Close() })
	return l
}

// vkey is the box's checkpoint verifier key, as a witness is configured
// with it.
func (l *witnessedLog) vkey(t *testing.T) string {
	t.Helper()
	pub, err := consent.ReadPublicKey(l.pubkey)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(l.origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

// checkpoint appends n events and a checkpoint, and writes the log file.
func (l *witnessedLog) checkpoint(t *testing.T, n int) []byte {
	t.Helper()
	var cp store.Checkpoint
	err := l.db.Update(func(tx *store.Tx) error {
		for i := range n {
			if err := tx.Append(&store.Event{Type: store.EventConsentDeclined, Visit: fmt.Sprintf("visit-%d", i)}); err != nil {
				return err
			}
		}
		var err error
		if cp, err = tx.Checkpoint(l.origin, l.signer); err != nil {
			return err
		}
		return tx.Append(cp.Event())
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := l.db.Events(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	l.log = filepath.Join(l.dir, "log.jsonl")
	if err := os.WriteFile(l.log, append(bytes.Join(evs, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return cp.Note
}

// witness has the checkpoint cosigned by the witnesses and writes the
// cosigned note to a file.
func (l *witnessedLog) witness(t *testing.T, cp []byte, ws ...*testenv.Omniwitness) string {
	t.Helper()
	pub, _ := consent.ReadPublicKey(l.pubkey)
	lv, err := store.NewCheckpointVerifier(l.origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	var cfg []witness.Config
	for _, w := range ws {
		cfg = append(cfg, witness.Config{Name: w.Name, URL: w.URL(), Key: w.VKey})
	}
	c, err := witness.NewClient(lv, l.db, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Witness(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint.txt")
	if err := os.WriteFile(path, res.Note, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerifyWitnesses(t *testing.T) {
	l := newWitnessedLog(t)
	box := testenv.WitnessedLog{Origin: l.origin, VKey: l.vkey(t)}
	w1 := testenv.StartOmniwitness(t, "witness.example/regulator", box)
	w2 := testenv.StartOmniwitness(t, "witness.example/head-office", box)
	both := l.witness(t, l.checkpoint(t, 5), w1, w2)
	w2.Stop()
	onlyW1 := l.witness(t, l.checkpoint(t, 3), w1, w2)
	// The latest checkpoint, cosigned by no one; the two above are of
	// prefixes of the log, which is what an auditor pulls later.
	uncosigned := writeTemp(t, l.checkpoint(t, 1))
	other := mustWitnessKey(t, "witness.example/other")

	verify := func(cp string, flags ...string) (string, int) {
		t.Helper()
		args := append([]string{"audit", "verify", "--pubkey", l.pubkey, "--checkpoint", cp}, flags...)
		out, err := runMain(t, append(args, l.log)...)
		var stderr bytes.Buffer
		code := (&Main{Stderr: &stderr}).ExitCode(err)
		return out + stderr.String(), code
	}

	for _, tc := range []struct {
		name  string
		cp    string
		flags []string
		code  int
		say   string
	}{
		{"cosigned by both", both, []string{"--witness", w1.VKey, "--witness", w2.VKey}, 0,
			"checkpoint cosigned by 2 of 2 trusted witnesses (witness.example/regulator at "},
		{"quorum 1 of 2, both cosigned", both, []string{"--witness", w1.VKey, "--witness", w2.VKey, "--quorum", "1"}, 0, "OK"},
		{"lacking the quorum", onlyW1, []string{"--witness", w1.VKey, "--witness", w2.VKey}, 1,
			"not enough cosignatures: 1 of the 2 needed; not cosigned by witness.example/head-office"},
		{"quorum 1 of 2, one cosigned", onlyW1, []string{"--witness", w1.VKey, "--witness", w2.VKey, "--quorum", "1"}, 0,
			"checkpoint cosigned by 1 of 2 trusted witnesses"},
		{"cosignature by another key", onlyW1, []string{"--witness", other}, 1,
			"signed by keys not trusted: witness.example/regulator+"},
		{"no cosignature at all", uncosigned, []string{"--witness", w1.VKey}, 1, "0 of the 1 needed"},
		{"forged cosignature", writeTemp(t, forge(t, both, w1.Name)), []string{"--witness", w1.VKey, "--quorum", "1", "--witness", w2.VKey}, 1,
			"invalid signature for key witness.example/regulator"},
		{"--quorum above the witnesses", both, []string{"--witness", w1.VKey, "--quorum", "2"}, 2, "--quorum 2"},
		{"--quorum without --witness", both, []string{"--quorum", "1"}, 2, "--quorum needs --witness"},
		{"a key that is not a vkey", both, []string{"--witness", "regulator"}, 2, "not a witness verifier key"},
		{"a key twice", both, []string{"--witness", w1.VKey, "--witness", w1.VKey}, 2, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := verify(tc.cp, tc.flags...)
			t.Logf("exit %d:\n%s", code, out)
			if code != tc.code || !strings.Contains(out, tc.say) {
				t.Errorf("exit %d, want %d, saying %q:\n%s", code, tc.code, tc.say, out)
			}
		})
	}

	t.Run("--witness without --checkpoint", func(t *testing.T) {
		_, err := runMain(t, "audit", "verify", "--pubkey", l.pubkey, "--witness", w1.VKey, l.log)
		var uerr *UsageError
		if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "--witness needs --checkpoint") {
			t.Errorf("err = %v, want a usage error", err)
		}
	})
}

// mustWitnessKey returns the vkey of a new witness key.
func mustWitnessKey(t *testing.T, name string) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.txt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// forge changes one byte of the signature (not the key id) in a witness's
// cosignature line of a note file.
func forge(t *testing.T, path, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "— "+name+" ") {
			j := len(l) - 4
			c := "A"
			if l[j] == 'A' {
				c = "B"
			}
			lines[i] = l[:j] + c + l[j+1:]
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no cosignature by %s in %s", name, data)
	return nil
}
