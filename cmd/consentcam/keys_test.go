package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// runArgs runs consentcam in-process and returns what it printed and its
// exit status.
func runArgs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code = m.ExitCode(m.Run(context.Background(), args))
	return out.String(), errb.String(), code
}

func TestKeysGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	stdout, stderr, code := runArgs(t, "keys", "gen", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var want []string
	for _, name := range []string{"device.key", "device.pub", "issuer.key", "issuer.pub", "operator.key", "operator.pub", "master.key"} {
		want = append(want, filepath.Join(dir, name))
	}
	if got := strings.Fields(stdout); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("printed %q, want the paths %q", got, want)
	}
	for _, p := range want {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if strings.Contains(stdout+stderr, "BEGIN") {
		t.Error("printed key material")
	}

	t.Run("again", func(t *testing.T) {
		before, _ := os.ReadFile(want[0])
		_, stderr, code := runArgs(t, "keys", "gen", "--dir", dir)
		if code != 1 || !strings.Contains(stderr, "exists") {
			t.Errorf("exit %d, stderr %q; want 1 and a message saying the keys exist", code, stderr)
		}
		if after, _ := os.ReadFile(want[0]); !bytes.Equal(before, after) {
			t.Error("device.key was replaced")
		}
	})
	t.Run("force", func(t *testing.T) {
		before, _ := os.ReadFile(want[0])
		if _, stderr, code := runArgs(t, "keys", "gen", "--dir", dir, "--force"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if after, _ := os.ReadFile(want[0]); bytes.Equal(before, after) {
			t.Error("device.key was not replaced")
		}
	})
}

// Every command: -h prints its usage and exits 0; mistakes exit 2.
func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string // a fragment of what is printed on stderr
	}{
		{"keys help", []string{"keys", "--help"}, 0, "consentcam keys gen --dir DIR"},
		{"keys gen help", []string{"keys", "gen", "--help"}, 0, "--force"},
		{"keys gen -h", []string{"keys", "gen", "-h"}, 0, "--dir DIR"},
		{"token help", []string{"token", "-h"}, 0, "consentcam token revoke"},
		{"token consent help", []string{"token", "consent", "--help"}, 0, "--notice HASH"},
		{"token revoke help", []string{"token", "revoke", "--help"}, 0, "--reason R"},
		{"notice help", []string{"notice", "--help"}, 0, "--config FILE"},
		{"version help", []string{"version", "--help"}, 0, "consentcam version"},
		{"run help", []string{"run", "-h"}, 0, "--config FILE"},
		{"audit pull help", []string{"audit", "pull", "-h"}, 0, "--token-file F"},
		{"audit verify help", []string{"audit", "verify", "--help"}, 0, "--pubkey FILE"},
		{"audit check help", []string{"audit", "check", "-h"}, 0, "--report FILE.html"},
		{"store help", []string{"store", "-h"}, 0, "consentcam store check --config FILE"},
		{"store check help", []string{"store", "check", "-h"}, 0, "The daemon must be stopped first"},

		{"keys alone", []string{"keys"}, 2, "say gen"},
		{"keys unknown", []string{"keys", "rotate"}, 2, `unknown command "rotate"`},
		{"keys gen without dir", []string{"keys", "gen"}, 2, "--dir is required"},
		{"keys gen with an argument", []string{"keys", "gen", "--dir", dir, "extra"}, 2, `unexpected argument "extra"`},
		{"keys gen unknown flag", []string{"keys", "gen", "--dir", dir, "--bits", "4096"}, 2, "flag provided but not defined: -bits"},
		{"token alone", []string{"token"}, 2, "say consent or revoke"},
		{"token unknown", []string{"token", "refresh"}, 2, `unknown command "refresh"`},
		{"notice without config", []string{"notice", "--hash"}, 2, "--config is required"},
		{"version with an argument", []string{"version", "now"}, 2, `unexpected argument "now"`},
		{"version unknown flag", []string{"version", "--short"}, 2, "flag provided but not defined: -short"},
		{"run without config", []string{"run"}, 2, "--config is required"},
		{"run unknown flag", []string{"run", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"audit alone", []string{"audit"}, 2, "pull, verify or check"},
		{"audit pull unknown flag", []string{"audit", "pull", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"audit pull without token", []string{"audit", "pull", "--url", "http://127.0.0.1:1"}, 2, "--token-file is required"},
		{"audit verify without key", []string{"audit", "verify"}, 2, "--pubkey is required"},
		{"store alone", []string{"store"}, 2, "store needs a subcommand: check"},
		{"store unknown", []string{"store", "compact"}, 2, `unknown store subcommand "compact"`},
		{"store check without config", []string{"store", "check"}, 2, "--config is required"},
		{"audit check quorum without witness", []string{"audit", "check", dir, "--quorum", "1"}, 2, "audit check: --quorum needs --witness"},
		{"audit check bad witness key", []string{"audit", "check", dir, "--witness", "regulator"}, 2, "audit check: --witness \"regulator\""},
		{"audit verify two logs", []string{"audit", "verify", "--pubkey", "k", "a", "b"}, 2, `unexpected argument "b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runArgs(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tt.stderr, stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "device.key")); err == nil {
		t.Error("a usage mistake wrote keys")
	}
}

// keys vkey prints what a witness verifies the camera's checkpoints with.
func TestKeysVKey(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runArgs(t, "keys", "gen", "--dir", dir); code != 0 {
		t.Fatalf("keys gen: %s", stderr)
	}
	stdout, stderr, code := runArgs(t, "keys", "vkey", "--pubkey", filepath.Join(dir, "device.pub"), "--site", "office-07", "--camera", "entrance-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	v, err := note.NewVerifier(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatalf("%q is not a vkey: %v", stdout, err)
	}
	if v.Name() != "consentcam/office-07/entrance-1" {
		t.Errorf("key name %q, want the origin", v.Name())
	}
	device, err := consent.ReadPrivateKey(filepath.Join(dir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := store.NewCheckpointSigner(v.Name(), device)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "consentcam/office-07/entrance-1\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("a checkpoint the device signed does not verify with the vkey: %v", err)
	}

	if _, _, code := runArgs(t, "keys", "vkey", "--pubkey", filepath.Join(dir, "device.pub"), "--site", "Office 7", "--camera", "e"); code != 2 {
		t.Errorf("bad site: exit %d, want 2", code)
	}
}
