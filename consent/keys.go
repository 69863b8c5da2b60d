package consent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MasterKeySize is the size of the master key file, in bytes.
const MasterKeySize = 32

const (
	pemPrivate = "PRIVATE KEY" // PKCS#8, as openssl genpkey writes it
	pemPublic  = "PUBLIC KEY"  // PKIX SubjectPublicKeyInfo, as openssl pkey -pubout writes it
)

// MarshalPrivateKey encodes an Ed25519 private key as a PKCS#8 PEM block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("not an Ed25519 private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKey encodes an Ed25519 public key as a PKIX PEM block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePrivateKey decodes an Ed25519 private key from a PKCS#8 PEM block.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	der, err := pemBlock(data, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key (openssl genpkey -algorithm ed25519)", k)
	}
	return key, nil
}

// ParsePublicKey decodes an Ed25519 public key from a PKIX PEM block.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(data, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return pub, nil
}

func pemBlock(data []byte, want string) ([]byte, error) {
	b, _ := pem.Decode(data)
	switch {
	case b == nil:
		return nil, fmt.Errorf("no PEM block: want %q", want)
	case b.Type == "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted: decrypt it with openssl pkey")
	case b.Type != want:
		return nil, fmt.Errorf("a PEM %q block, want %q", b.Type, want)
	}
	return b.Bytes, nil
}

// ReadPrivateKey reads an Ed25519 private key from a PKCS#8 PEM file. Like
// the master key, the file must not be readable by group or others.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, perm, err := readSecret(path, 64<<10)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	if err := checkPrivate(path, perm); err != nil {
		return nil, err
	}
	return key, nil
}

// ReadPublicKey reads an Ed25519 public key from a PKIX PEM file.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}

// ReadMasterKey reads the master key: a file of exactly MasterKeySize random
// bytes that neither group nor others may read.
func ReadMasterKey(path string) ([]byte, error) {
	key, perm, err := readSecret(path, MasterKeySize+1)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(path, perm); err != nil {
		return nil, err
	}
	if len(key) != MasterKeySize {
		holds := fmt.Sprintf("%d", len(key))
		if len(key) > MasterKeySize {
			holds = fmt.Sprintf("more than %d", MasterKeySize)
		}
		return nil, fmt.Errorf("master key %s: holds %s bytes, must hold exactly %d random bytes (consentcam keys gen makes one)",
			path, holds, MasterKeySize)
	}
	return key, nil
}

// readSecret reads at most limit bytes of a regular file, and returns them
// with the file's permissions.
func readSecret(path string, limit int64) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("key %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, 0, fmt.Errorf("key %s: %w", path, err)
	}
	return data, fi.Mode().Perm(), nil
}

// checkPrivate refuses a secret key file that group or others may read.
func checkPrivate(path string, perm fs.FileMode) error {
	if perm&0o077 != 0 {
		return fmt.Errorf("key %s: readable by group or others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	return nil
}

// GenerateKeys writes a fresh set of keys into dir, creating it (0700) if
// needed: device.key, issuer.key and operator.key (Ed25519, PKCS#8 PEM, mode
// 0600), their public halves device.pub, issuer.pub and operator.pub (PKIX
// PEM, 0644), and master.key (MasterKeySize random bytes, 0600). It refuses to
// replace an existing file unless overwrite is set, and returns the paths it
// wrote.
func GenerateKeys(dir string, overwrite bool) ([]string, error) {
	type file struct {
		name string
		data []byte
		perm fs.FileMode
	}
	var files []file
	for _, name := range []string{"device", "issuer", "operator"} {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		priv, err := MarshalPrivateKey(key)
		if err != nil {
			return nil, err
		}
		pubPEM, err := MarshalPublicKey(pub)
		if err != nil {
			return nil, err
		}
		files = append(files, file{name + ".key", priv, 0o600}, file{name + ".pub", pubPEM, 0o644})
	}
	master := make([]byte, MasterKeySize)
	rand.Read(master) // never fails (crypto/rand)
	files = append(files, file{"master.key", master, 0o600})

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if !overwrite {
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("keys: %s exists: not replacing keys that may be in use", p)
			}
		}
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeFile(p, f.data, f.perm, overwrite); err != nil {
			return paths, fmt.Errorf("keys: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// writeFile writes data to a new file with mode perm. With overwrite it
// replaces any file at path atomically, and the new file has mode perm
// whatever the old one had.
func writeFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if !overwrite {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return err
		}
		return finish(f, data, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := finish(f, data, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// finish writes data to f, syncs and closes it, and removes path on failure.
func finish(f *os.File, data []byte, path string) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
