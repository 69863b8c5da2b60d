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
	"testing"
	"testing/fstest"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/store"
)

// FuzzOpenBundle feeds the bundle reader and the checker arbitrary files
// (seeds: a real bundle, and testdata/fuzz/FuzzOpenBundle). The manifest's
// digests are made to match the files, so that the fuzzer reaches the
// parsers behind them. Nothing may panic; every refusal is a *BundleError
// naming a file; a bundle that passes has a log that verifies.
func FuzzOpenBundle(f *testing.F) {
	b := audittest.NewBox(f)
	b.Start()
	v := b.Visit(audittest.Purposes(channel, security))
	b.Read(v, channel)
	b.Advance(time.Minute)
	b.Revoke(v.Subject, "", "visitor withdrew")
	b.Stop()
	dir := b.WriteBundle()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	noticeName := "notices/" + b.Notice.Hash() + ".json"
	manifest, log, cp, evidence, trust, notice := read(audit.FileManifest), read(audit.FileLog), read(audit.FileCheckpoint),
		read(audit.FileEvidence), read(audit.FileTrust), read(noticeName)
	device := read(audit.FileDevice)
	f.Add(manifest, log, cp, evidence, trust, notice)
	f.Add(manifest, log[:len(log)/2], cp, evidence, trust, notice)
	f.Add(manifest, log, cp, evidence[:len(evidence)-10], trust, notice)
	f.Add(manifest, log, cp, []byte{}, []byte(`{}`), []byte{})

	f.Fuzz(func(t *testing.T, manifest, log, cp, evidence, trust, notice []byte) {
		fsys := fstest.MapFS{
			audit.FileLog:        {Data: log},
			audit.FileCheckpoint: {Data: cp},
			audit.FileEvidence:   {Data: evidence},
			audit.FileTrust:      {Data: trust},
			audit.FileDevice:     {Data: device},
		}
		if len(notice) > 0 {
			fsys[noticeName] = &fstest.MapFile{Data: notice}
		}
		var m map[string]any
		if json.Unmarshal(manifest, &m) == nil && m != nil {
			files := map[string]any{}
			for name, file := range fsys {
				sum := sha256.Sum256(file.Data)
				files[name] = map[string]any{"size": len(file.Data), "sha256": hex.EncodeToString(sum[:])}
			}
			m["files"] = files
			manifest, _ = json.Marshal(m)
		}
		fsys[audit.FileManifest] = &fstest.MapFile{Data: manifest}

		bundle, err := audit.OpenFS(fsys)
		if err != nil {
			wantBundleError(t, err)
			return
		}
		r, err := audit.Check(bundle, audit.Options{})
		if err != nil {
			wantBundleError(t, err)
			return
		}
		if r.Passed() {
			if _, err := store.VerifyLog(bytes.NewReader(log), cp, audittest.DeviceKey.Public().(ed25519.PublicKey)); err != nil {
				t.Fatalf("a bundle passes whose log does not verify: %v", err)
			}
		}
	})
}

func wantBundleError(t *testing.T, err error) {
	t.Helper()
	var berr *audit.BundleError
	if !errors.As(err, &berr) || berr.File == "" {
		t.Fatalf("error %v (%T) is not a *BundleError naming a file", err, err)
	}
}
