package consent_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
)

// openssl runs OpenSSL and returns its standard output.
func openssl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(testenv.Program(t, "openssl"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, err
}

func mustOpenSSL(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := openssl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A kiosk vendor makes its key with OpenSSL, as SPEC says; the box must
// accept what it signs.
func TestOpenSSL_GenpkeyKeySignsTokens(t *testing.T) {
	dir := t.TempDir()
	keyPath, pubPath := filepath.Join(dir, "kiosk.key"), filepath.Join(dir, "kiosk.pub")
	mustOpenSSL(t, "genpkey", "-algorithm", "ed25519", "-out", keyPath)
	mustOpenSSL(t, "pkey", "-in", keyPath, "-pubout", "-out", pubPath)

	key, err := consent.ReadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := consent.ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := consent.SignConsent(key, "kiosk-9", consent.Consent{
		Issuer: "kiosk", Subject: "v-1", Visit: "visit-1", Audience: aud,
		Purposes: []string{"entry-security"}, Notice: noticeHash,
		IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier()
	v.Issuers["kiosk-9"] = pub
	if _, err := v.VerifyConsent([]byte(tok)); err != nil {
		t.Errorf("token signed with an OpenSSL key: %v", err)
	}
}

// OpenSSL reads the keys of keys gen, and derives from each private key
// exactly the public key file written beside it.
func TestOpenSSL_ReadsGeneratedKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := consent.GenerateKeys(dir, false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"device", "issuer", "operator"} {
		t.Run(name, func(t *testing.T) {
			derived := mustOpenSSL(t, "pkey", "-in", filepath.Join(dir, name+".key"), "-pubout")
			written, err := os.ReadFile(filepath.Join(dir, name+".pub"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(derived, written) {
				t.Errorf("openssl derives\n%s\nbut %s.pub holds\n%s", derived, name, written)
			}
			text := mustOpenSSL(t, "pkey", "-pubin", "-in", filepath.Join(dir, name+".pub"), "-noout", "-text")
			if !bytes.Contains(text, []byte("ED25519 Public-Key")) {
				t.Errorf("openssl reads %s.pub as:\n%s", name, text)
			}
		})
	}
}

// An auditor can check a token's signature with OpenSSL alone.
func TestOpenSSL_VerifiesTokenSignature(t *testing.T) {
	dir := t.TempDir()
	pubPEM, err := consent.MarshalPublicKey(public(issuerKey))
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "issuer.pub")
	sigPath := filepath.Join(dir, "token.sig")
	inPath := filepath.Join(dir, "token.input")
	tok, err := consent.SignConsent(issuerKey, "kiosk-1", consent.Consent{Issuer: "kiosk", Visit: "visit-42", IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{pubPath: pubPEM, sigPath: sig, inPath: []byte(tok[:i])} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	verify := []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-rawin", "-in", inPath, "-sigfile", sigPath}
	out := mustOpenSSL(t, verify...)
	if !bytes.Contains(out, []byte("Signature Verified Successfully")) {
		t.Errorf("openssl says: %s", out)
	}

	// The same check fails on a token whose claims were changed.
	other, _ := consent.SignConsent(issuerKey, "kiosk-1", consent.Consent{Issuer: "kiosk", Visit: "visit-43", IssuedAt: now})
	if err := os.WriteFile(inPath, []byte(other[:strings.LastIndexByte(other, '.')]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := openssl(t, verify...); err == nil {
		t.Errorf("openssl verified the signature over other claims: %s", out)
	}
}
