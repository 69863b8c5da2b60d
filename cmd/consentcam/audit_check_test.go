package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/consent"
)

// lawfulBundle is the bundle of a box that kept every rule for two hours.
func lawfulBundle(t *testing.T) string {
	b := audittest.NewBox(t)
	b.Start()
	v := b.Visit(audittest.Purposes(audittest.PurposeChannel, audittest.PurposeSecurity))
	b.Advance(time.Minute)
	b.Decline()
	b.Read(v, audittest.PurposeSecurity)
	w := b.Visit()
	b.Advance(time.Minute)
	b.Revoke(w.Subject, "", "visitor withdrew")
	b.Advance(2 * time.Hour)
	b.Stop()
	return b.WriteBundle()
}

func writePub(t *testing.T, pub ed25519.PublicKey) string {
	t.Helper()
	data, err := consent.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "device.pub")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditCheck(t *testing.T) {
	lawful := lawfulBundle(t)

	b := audittest.NewBox(t)
	b.Start()
	b.Visit(audittest.Minor(false))
	b.Advance(time.Hour)
	b.Stop()
	minor := b.WriteBundle()

	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.CopyFS(broken, os.DirFS(lawful)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(broken, "evidence.jsonl"))

	// A log changed, and its digest in the manifest with it: it no longer
	// verifies.
	tampered := filepath.Join(t.TempDir(), "tampered")
	if err := os.CopyFS(tampered, os.DirFS(lawful)); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(tampered, audit.FileLog)
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log = bytes.Replace(log, []byte(`"reason":"visitor withdrew"`), []byte(`"reason":"visitor withdrew!"`), 1)
	if err := os.WriteFile(logPath, log, 0o644); err != nil {
		t.Fatal(err)
	}
	manifestPath := filepath.Join(tampered, audit.FileManifest)
	var m audit.Manifest
	if data, err := os.ReadFile(manifestPath); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	sum := sha256.Sum256(log)
	m.Files[audit.FileLog] = audit.FileDigest{Size: int64(len(log)), SHA256: hex.EncodeToString(sum[:])}
	if data, err := json.Marshal(m); err != nil || os.WriteFile(manifestPath, data, 0o644) != nil {
		t.Fatalf("manifest: %v", err)
	}

	report := filepath.Join(t.TempDir(), "report.html")
	other := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     []string
		stderr     string
		wantReport bool
	}{
		{"a lawful box", []string{lawful, "--report", report}, 0,
			[]string{"rule 1  PASS", "rule 7  PASS", "visitors asked 3: agreed 2 (channel-attribution 2, entry-security 1), declined 1", "\nPASS\n"}, "", true},
		{"flags first", []string{"--pubkey", writePub(t, audittest.DeviceKey.Public().(ed25519.PublicKey)), lawful}, 0,
			[]string{"\nPASS\n"}, "", false},
		{"a minor without a guardian", []string{minor, "--report", report}, 1,
			[]string{"rule 3  FAIL", "accepted without a guardian", "FAIL: rules 3 broken"}, "rules 3 broken", true},
		{"a bundle without evidence", []string{broken}, 1, nil, "evidence.jsonl: missing", false},
		{"a log that does not verify", []string{tampered, "--report", report}, 1,
			[]string{"log     FAIL", "root mismatch", "\nFAIL\n"}, "audit.jsonl does not verify", true},
		{"another device key", []string{lawful, "--pubkey", writePub(t, other.Public().(ed25519.PublicKey))}, 1, nil, "not the device key given", false},
		{"no bundle", []string{}, 2, nil, "name the bundle directory", false},
		{"two bundles", []string{lawful, minor}, 2, nil, "unexpected argument", false},
		{"an unknown flag", []string{lawful, "--fast"}, 2, nil, "flag provided but not defined", false},
		{"a negative tolerance", []string{lawful, "--tolerance", "-1s"}, 2, nil, "must not be negative", false},
		{"not a directory", []string{filepath.Join(lawful, "manifest.json")}, 1, nil, "not a directory", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(report)
			stdout, stderr, code := runArgs(t, append([]string{"audit", "check"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if _, err := os.Stat(report); (err == nil) != tc.wantReport {
				t.Errorf("report written: %v, want %v", err == nil, tc.wantReport)
			}
		})
	}
}
