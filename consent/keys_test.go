package consent_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/consent"
)

func writeFile(t *testing.T, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return p
}

func TestKeyPEM_RoundTrip(t *testing.T) {
	priv, err := consent.MarshalPrivateKey(issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := consent.MarshalPublicKey(public(issuerKey))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(priv, []byte("-----BEGIN PRIVATE KEY-----\n")) || !bytes.HasPrefix(pub, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Errorf("PEM types:\n%s\n%s", priv, pub)
	}
	gotPriv, err := consent.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := consent.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(issuerKey) || !gotPub.Equal(public(issuerKey)) {
		t.Error("keys differ after a round trip through PEM")
	}
}

func TestParseKey_Errors(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	priv, _ := consent.MarshalPrivateKey(issuerKey)
	pub, _ := consent.MarshalPublicKey(public(issuerKey))
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }

	for _, tt := range []struct {
		name, want string
		data       []byte
		private    bool
	}{
		{"private: nothing", "no PEM block", nil, true},
		{"private: a public key", `"PUBLIC KEY" block`, pub, true},
		{"private: an ECDSA key", "not an Ed25519 key", pemOf("PRIVATE KEY", ecDER), true},
		{"private: encrypted", "encrypted", pemOf("ENCRYPTED PRIVATE KEY", []byte{1}), true},
		{"private: broken DER", "not a PKCS#8", pemOf("PRIVATE KEY", []byte{1, 2, 3}), true},
		{"public: a private key", `"PRIVATE KEY" block`, priv, false},
		{"public: an ECDSA key", "not an Ed25519 key", pemOf("PUBLIC KEY", ecPubDER), false},
		{"public: broken DER", "not a PKIX", pemOf("PUBLIC KEY", []byte{1}), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.private {
				_, err = consent.ParsePrivateKey(tt.data)
			} else {
				_, err = consent.ParsePublicKey(tt.data)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestReadMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	for _, tt := range []struct {
		name string
		data []byte
		perm os.FileMode
		want string // a fragment of the error, "" for none
	}{
		{"32 bytes, 0600", key, 0o600, ""},
		{"32 bytes, 0400", key, 0o400, ""},
		{"group-readable", key, 0o640, "chmod 600"},
		{"world-readable", key, 0o604, "chmod 600"},
		{"31 bytes", key[:31], 0o600, "holds 31 bytes"},
		{"33 bytes: a trailing newline", append(append([]byte{}, key...), '\n'), 0o600, "holds more than 32 bytes"},
		{"hex text", []byte(strings.Repeat("a5", 32)), 0o600, "exactly 32"},
		{"empty", nil, 0o600, "holds 0 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := consent.ReadMasterKey(writeFile(t, "master.key", tt.data, tt.perm))
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "" && !bytes.Equal(got, key):
				t.Errorf("key = %x, want %x", got, key)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error = %v, want one saying %q", err, tt.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := consent.ReadMasterKey(filepath.Join(t.TempDir(), "master.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error = %v, want not-exist", err)
		}
	})
	t.Run("a directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dir, 0o700)
		if _, err := consent.ReadMasterKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestReadPrivateKey(t *testing.T) {
	priv, _ := consent.MarshalPrivateKey(issuerKey)
	t.Run("0600", func(t *testing.T) {
		got, err := consent.ReadPrivateKey(writeFile(t, "issuer.key", priv, 0o600))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(issuerKey) {
			t.Error("wrong key")
		}
	})
	t.Run("world-readable", func(t *testing.T) {
		_, err := consent.ReadPrivateKey(writeFile(t, "issuer.key", priv, 0o644))
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("error = %v, want one saying chmod 600", err)
		}
	})
	t.Run("the error names the file", func(t *testing.T) {
		p := writeFile(t, "issuer.key", []byte("not a key"), 0o600)
		if _, err := consent.ReadPrivateKey(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error = %v, want one naming %s", err, p)
		}
	})
}

func TestGenerateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	paths, err := consent.GenerateKeys(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"device.key", "device.pub", "issuer.key", "issuer.pub", "operator.key", "operator.pub", "master.key"}
	if len(paths) != len(names) {
		t.Fatalf("wrote %v", paths)
	}
	for i, name := range names {
		if got, want := paths[i], filepath.Join(dir, name); got != want {
			t.Errorf("path %d = %s, want %s", i, got, want)
		}
		fi, err := os.Stat(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if _, err := consent.ReadMasterKey(filepath.Join(dir, "master.key")); err != nil {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, name := range []string{"device", "issuer", "operator"} {
		key, err := consent.ReadPrivateKey(filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := consent.ReadPublicKey(filepath.Join(dir, name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Equal(key.Public()) {
			t.Errorf("%s.pub is not the public half of %s.key", name, name)
		}
		if seen[string(pub)] {
			t.Errorf("%s has the same key as another", name)
		}
		seen[string(pub)] = true
	}

	before := readAll(t, paths)
	t.Run("refuses to replace keys", func(t *testing.T) {
		os.Remove(filepath.Join(dir, "device.key")) // even when only some exist
		if _, err := consent.GenerateKeys(dir, false); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Fatalf("error = %v, want one saying a file exists", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "device.key")); !os.IsNotExist(err) {
			t.Error("wrote device.key although it refused")
		}
		after := readAll(t, paths[1:])
		for i, p := range paths[1:] {
			if !bytes.Equal(after[i], before[i+1]) {
				t.Errorf("%s changed", p)
			}
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		if err := os.Chmod(filepath.Join(dir, "issuer.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := consent.GenerateKeys(dir, true); err != nil {
			t.Fatal(err)
		}
		after := readAll(t, paths)
		for i, p := range paths[1:] {
			if bytes.Equal(after[i+1], before[i+1]) {
				t.Errorf("%s was not replaced", p)
			}
		}
		if fi, _ := os.Stat(filepath.Join(dir, "issuer.key")); fi.Mode().Perm() != 0o600 {
			t.Errorf("replaced issuer.key has mode %v, want 0600", fi.Mode().Perm())
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != len(names) {
			t.Errorf("directory holds %d files, want %d (temporary files left?)", len(entries), len(names))
		}
	})
}

func readAll(t *testing.T, paths []string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}
