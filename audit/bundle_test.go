package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/consent"
)

// rewrite changes a file of a bundle and, so that only its content is
// wrong, its size and SHA-256 in the manifest.
func rewrite(t *testing.T, dir, name string, edit func([]byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(name))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = edit(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	editManifest(t, dir, func(m *audit.Manifest) {
		sum := sha256.Sum256(data)
		m.Files[name] = audit.FileDigest{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	})
}

func editManifest(t *testing.T, dir string, edit func(m *audit.Manifest)) {
	t.Helper()
	path := filepath.Join(dir, audit.FileManifest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m audit.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// smallBox is a box that ran briefly and keeps every rule.
func smallBox(t *testing.T) *audittest.Box {
	b := audittest.NewBox(t)
	b.Start()
	v := b.Visit()
	b.Advance(time.Minute)
	b.Revoke(v.Subject, "", "visitor withdrew")
	b.Visit()
	b.Advance(time.Hour)
	b.Stop()
	return b
}

func TestWriteOpenRoundTrip(t *testing.T) {
	b := smallBox(t)
	dir := b.WriteBundle()
	bundle, err := audit.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := b.Contents()
	if len(bundle.Evidence) != len(c.Evidence) || len(bundle.Evidence) != 3 {
		t.Errorf("%d pieces of evidence, wrote %d", len(bundle.Evidence), len(c.Evidence))
	}
	for _, e := range c.Evidence {
		if got := bundle.Evidence[e.Seq]; got == nil || got.Token != e.Token || got.JTI != e.JTI || got.Kind != e.Kind {
			t.Errorf("evidence of seq %d: got %+v, want %+v", e.Seq, got, e)
		}
	}
	if n := bundle.Notices[b.Notice.Hash()]; n == nil || !bytes.Equal(n.JSON, b.Notice.JSON()) ||
		n.Purposes[audittest.PurposeChannel] != 0 && len(n.Purposes) != len(b.Notice.Purposes) {
		t.Errorf("notice %+v", n)
	}
	if !bundle.Device.Equal(audittest.DeviceKey.Public()) || !bundle.Issuers[audittest.IssuerKID].Equal(audittest.IssuerKey.Public()) ||
		!bundle.Operators[audittest.OperatorKID].Equal(audittest.OperatorKey.Public()) {
		t.Error("keys differ")
	}
	if _, err := audit.Write(dir, c); err == nil {
		t.Error("Write into a bundle that exists: no error")
	}
}

// TestBadBundles: a bundle with a file missing, truncated, foreign or
// malformed is an error naming the file, never a crash and never a pass.
func TestBadBundles(t *testing.T) {
	b := smallBox(t)
	good := b.WriteBundle()
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	otherPEM, err := consent.MarshalPublicKey(otherKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	firstLine := func(data []byte) []byte { return data[:bytes.IndexByte(data, '\n')+1] }
	dropLast := func(data []byte) []byte {
		lines := bytes.SplitAfter(data, []byte("\n"))
		return bytes.Join(lines[:len(lines)-2], nil)
	}
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		file  string // the file the error names
		want  string
	}{
		{"no manifest", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, audit.FileManifest)) },
			audit.FileManifest, "missing"},
		{"a manifest of another kind", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, audit.FileManifest), []byte(`{"format":"zip"}`), 0o644)
		}, audit.FileManifest, `format "zip"`},
		{"a truncated manifest", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, audit.FileManifest))
			os.WriteFile(filepath.Join(dir, audit.FileManifest), data[:len(data)/2], 0o644)
		}, audit.FileManifest, "not a bundle manifest"},
		{"no evidence", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, audit.FileEvidence)) },
			audit.FileEvidence, "missing"},
		{"a truncated log", func(t *testing.T, dir string) {
			path := filepath.Join(dir, audit.FileLog)
			data, _ := os.ReadFile(path)
			os.WriteFile(path, dropLast(data), 0o644)
		}, audit.FileLog, "truncated"},
		{"a foreign device key", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, audit.FileDevice), otherPEM, 0o644)
		}, audit.FileDevice, "not the file this bundle was made with"},
		{"a file the manifest does not list", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o644)
		}, "notes.txt", "not listed"},
		{"a malformed evidence line", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileEvidence, func(data []byte) []byte { return append(data, "{\"seq\":\n"...) })
		}, audit.FileEvidence, "line 4"},
		{"evidence out of order", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileEvidence, func(data []byte) []byte { return append(data, firstLine(data)...) })
		}, audit.FileEvidence, "seq order"},
		{"a notice that does not hash to its name", func(t *testing.T, dir string) {
			rewrite(t, dir, "notices/"+b.Notice.Hash()+".json", func(data []byte) []byte {
				return bytes.Replace(data, []byte("Example Realty"), []byte("Other Realty"), 1)
			})
		}, "notices/" + b.Notice.Hash() + ".json", "hashes to"},
		{"a trust file that is not one", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileTrust, func([]byte) []byte { return []byte(`{"issuers":{"kiosk-1":"not a key"}}`) })
		}, audit.FileTrust, `issuers["kiosk-1"]`},
		{"a manifest of another box", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *audit.Manifest) { m.Camera = "back-door" })
		}, audit.FileManifest, "the log is of office-07/entrance-1"},
		{"settings that differ from those signed", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *audit.Manifest) { m.Settings.SweepInterval = audit.Duration(time.Hour) })
		}, audit.FileManifest, "sweep_interval 1h0m0s, not 1m0s"},
		{"evidence for an event that references none", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileEvidence, func(data []byte) []byte {
				return append([]byte(`{"seq":0,"kind":"consent","jti":"x","token":"a.b.c","expires":"2030-01-01T00:00:00Z"}`+"\n"), data...)
			})
		}, audit.FileEvidence, "seq 0 (agent.started), an event that references none"},
		{"evidence beyond the log", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileEvidence, func(data []byte) []byte {
				return append(data, `{"seq":100000,"kind":"consent","jti":"x","token":"a.b.c","expires":"2030-01-01T00:00:00Z"}`+"\n"...)
			})
		}, audit.FileEvidence, "beyond the log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir)
			var err error
			if bundle, oerr := audit.Open(dir); oerr != nil {
				err = oerr
			} else {
				var r *audit.Report
				r, err = audit.Check(bundle, audit.Options{})
				if err == nil && r.Passed() {
					t.Fatal("the report passes")
				}
				if err == nil {
					t.Fatalf("no error; report integrity %v", r.Integrity)
				}
			}
			var berr *audit.BundleError
			if !errors.As(err, &berr) {
				t.Fatalf("got %v (%T), want a *BundleError", err, err)
			}
			if berr.File != tc.file || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q naming %s, want it to name %s and say %q", err, berr.File, tc.file, tc.want)
			}
		})
	}
}

// TestLogThatDoesNotVerify: a log that does not verify fails, with the
// reason audit verify gives, whatever the rules would say.
func TestLogThatDoesNotVerify(t *testing.T) {
	b := smallBox(t)
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  string
	}{
		{"truncated below the checkpoint, manifest and all", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileLog, func(data []byte) []byte {
				lines := bytes.SplitAfter(data, []byte("\n"))
				return bytes.Join(lines[:len(lines)-3], nil)
			})
		}, "log shorter than checkpoint"},
		{"an event changed", func(t *testing.T, dir string) {
			rewrite(t, dir, audit.FileLog, func(data []byte) []byte {
				return bytes.Replace(data, []byte(`"reason":"visitor withdrew"`), []byte(`"reason":"expired"`), 1)
			})
		}, "root mismatch"},
		{"signed by another device", func(t *testing.T, dir string) {
			other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
			rewrite(t, dir, audit.FileDevice, func([]byte) []byte {
				p, _ := consent.MarshalPublicKey(other.Public().(ed25519.PublicKey))
				return p
			})
		}, "not signed by the given key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := b.WriteBundle()
			tc.spoil(t, dir)
			bundle, err := audit.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, err := audit.Check(bundle, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Passed() || r.Integrity == nil || !strings.Contains(r.Integrity.Error(), tc.want) ||
				!strings.Contains(r.Integrity.Error(), audit.FileLog) {
				t.Errorf("passed %v, integrity %v; want it to name %s and say %q", r.Passed(), r.Integrity, audit.FileLog, tc.want)
			}
		})
	}
}

// TestSettingsFromManifest: an agent that signs no settings is judged on
// the manifest's, which the report says; without them the bundle cannot be
// judged.
func TestSettingsFromManifest(t *testing.T) {
	b := audittest.NewBox(t)
	b.Unsigned = true
	b.Start()
	b.Visit()
	b.Advance(time.Hour)
	b.Stop()
	dir := b.WriteBundle()
	r := mustCheck(t, dir)
	wantPass(t, r)
	if len(r.Runs) != 1 || r.Runs[0].Signed {
		t.Errorf("runs %+v: want one, with unsigned settings", r.Runs)
	}
	editManifest(t, dir, func(m *audit.Manifest) { m.Settings = nil })
	bundle, err := audit.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var berr *audit.BundleError
	if _, err := audit.Check(bundle, audit.Options{}); !errors.As(err, &berr) || berr.File != audit.FileManifest {
		t.Errorf("no settings anywhere: got %v, want an error naming %s", err, audit.FileManifest)
	}
}

// TestDeviceKeyGiven: an auditor who holds the device key refuses a bundle
// of another.
func TestDeviceKeyGiven(t *testing.T) {
	dir := smallBox(t).WriteBundle()
	bundle, err := audit.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Check(bundle, audit.Options{Device: audittest.DeviceKey.Public().(ed25519.PublicKey)}); err != nil {
		t.Errorf("the right key: %v", err)
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	if _, err := audit.Check(bundle, audit.Options{Device: other.Public().(ed25519.PublicKey)}); err == nil ||
		!strings.Contains(err.Error(), audit.FileDevice) {
		t.Errorf("another key: %v", err)
	}
}
