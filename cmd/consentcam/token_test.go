package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
)

// keysDir returns a directory holding a fresh set of keys.
func keysDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := consent.GenerateKeys(dir, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readPub(t *testing.T, path string) ed25519.PublicKey {
	t.Helper()
	pub, err := consent.ReadPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// issuedAt reads the iat claim of a token without verifying it, so that the
// verifier's clock can be set to the moment the token was made.
func issuedAt(t *testing.T, tok string) time.Time {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a compact JWT", tok)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ IAT int64 }
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	return time.Unix(claims.IAT, 0).UTC()
}

// testNotice is the notice of testdata/notice.yaml, as the agent builds it.
func testNotice(t *testing.T) consent.Notice {
	t.Helper()
	cfg, err := ReadConfigFile(filepath.Join("testdata", "notice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return noticeFromConfig(cfg)
}

// verifierFor is the verifier of camera entrance-1 at office-07, trusting the
// keys in dir, with its clock at the time the token was issued.
func verifierFor(t *testing.T, dir, tok string) *consent.Verifier {
	t.Helper()
	iat := issuedAt(t, tok)
	return &consent.Verifier{
		Site:       "office-07",
		Camera:     "entrance-1",
		Issuers:    map[string]ed25519.PublicKey{"kiosk-1": readPub(t, filepath.Join(dir, "issuer.pub"))},
		Operators:  map[string]ed25519.PublicKey{"ops-1": readPub(t, filepath.Join(dir, "operator.pub"))},
		Purposes:   []string{"channel-attribution", "entry-security"},
		NoticeHash: testNotice(t).Hash(),
		Now:        func() time.Time { return iat },
	}
}

// oneToken checks that a token command printed exactly one line.
func oneToken(t *testing.T, stdout string) string {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("printed %q, want one line", stdout)
	}
	return strings.TrimSuffix(stdout, "\n")
}

// The token a visitor's consent makes, from the notice the kiosk showed
// (notice --hash) to the verifier of the box.
func TestTokenConsent(t *testing.T) {
	dir := keysDir(t)
	hash, stderr, code := runArgs(t, "notice", "--config", filepath.Join("testdata", "notice.yaml"), "--hash")
	if code != 0 {
		t.Fatalf("notice --hash: exit %d: %s", code, stderr)
	}
	hash = strings.TrimSpace(hash)
	base := []string{"token", "consent", "--key", filepath.Join(dir, "issuer.key"), "--kid", "kiosk-1",
		"--site", "office-07", "--visit", "visit-42", "--subject", "v-7f3a9c", "--notice", hash}

	for _, tt := range []struct {
		name     string
		args     []string
		audience string
		purposes []string
		ttl      time.Duration
		minor    bool
		issuer   string
	}{
		{"this camera", []string{"--camera", "entrance-1", "--purpose", "channel-attribution"},
			"consentcam:office-07/entrance-1", []string{"channel-attribution"}, 10 * time.Minute, false, "consentcam-cli"},
		{"any camera of the site", []string{"--purpose", "entry-security"},
			"consentcam:office-07", []string{"entry-security"}, 10 * time.Minute, false, "consentcam-cli"},
		{"several purposes, short ttl", []string{"--purpose", "entry-security", "--purpose", "channel-attribution", "--ttl", "3m"},
			"consentcam:office-07", []string{"entry-security", "channel-attribution"}, 3 * time.Minute, false, "consentcam-cli"},
		{"minor with guardian", []string{"--purpose", "entry-security", "--minor", "--guardian", "--issuer", "front-desk"},
			"consentcam:office-07", []string{"entry-security"}, 10 * time.Minute, true, "front-desk"},
		{"longest ttl", []string{"--purpose", "entry-security", "--ttl", "15m"},
			"consentcam:office-07", []string{"entry-security"}, 15 * time.Minute, false, "consentcam-cli"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runArgs(t, append(base, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			tok := oneToken(t, stdout)
			got, err := verifierFor(t, dir, tok).VerifyConsent([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			iat := issuedAt(t, tok)
			want := &consent.Consent{
				Issuer: tt.issuer, KeyID: "kiosk-1", Subject: "v-7f3a9c", JTI: got.JTI, Visit: "visit-42",
				Audience: tt.audience, Purposes: tt.purposes, Notice: hash,
				IssuedAt: iat, NotBefore: iat, Expires: iat.Add(tt.ttl),
				Minor: tt.minor, Guardian: tt.minor, Token: tok, // the token printed, as verified
			}
			if got.JTI == "" || !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestTokenConsent_Mistakes(t *testing.T) {
	dir := keysDir(t)
	key := filepath.Join(dir, "issuer.key")
	hash := strings.Repeat("ab", 32)
	// args are valid arguments without the flag named by without, and with extra.
	args := func(without string, extra ...string) []string {
		out := []string{"token", "consent"}
		for _, f := range [][2]string{{"--key", key}, {"--kid", "kiosk-1"}, {"--site", "office-07"}, {"--visit", "visit-42"},
			{"--subject", "v-1"}, {"--purpose", "entry-security"}, {"--notice", hash}} {
			if f[0] != without {
				out = append(out, f[0], f[1])
			}
		}
		return append(out, extra...)
	}
	if _, stderr, code := runArgs(t, args("")...); code != 0 {
		t.Fatalf("the base arguments fail: exit %d: %s", code, stderr)
	}
	loose := filepath.Join(t.TempDir(), "issuer.key")
	data, _ := os.ReadFile(key)
	os.WriteFile(loose, data, 0o644)
	os.Chmod(loose, 0o644)

	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no key", args("--key"), 2, "--key is required"},
		{"no kid", args("--kid"), 2, "--kid is required"},
		{"no site", args("--site"), 2, "--site is required"},
		{"no visit", args("--visit"), 2, "--visit is required"},
		{"no subject", args("--subject"), 2, "--subject is required"},
		{"no purpose", args("--purpose"), 2, "--purpose is required"},
		{"no notice", args("--notice"), 2, "--notice is required"},
		{"empty issuer", args("", "--issuer", ""), 2, "--issuer is required"},
		{"site with capitals", args("", "--site", "Office-07"), 2, "--site"},
		{"camera with a slash", args("", "--camera", "a/b"), 2, "--camera"},
		{"purpose not an id", args("--purpose", "--purpose", "Channel Attribution"), 2, "not a purpose id"},
		{"notice not a hash", args("", "--notice", "1234"), 2, "64 lowercase hex"},
		{"notice in upper case", args("", "--notice", strings.ToUpper(hash)), 2, "64 lowercase hex"},
		{"ttl over 15 minutes", args("", "--ttl", "16m"), 2, "at most 15m0s"},
		{"ttl zero", args("", "--ttl", "0s"), 2, "more than 0"},
		{"ttl not a duration", args("", "--ttl", "ten"), 2, "invalid value"},
		{"purpose given twice", args("", "--purpose", "entry-security"), 2, "given twice"},
		{"an argument left over", args("", "visit-43"), 2, `unexpected argument "visit-43"`},
		{"minor without guardian", args("", "--minor"), 2, "--minor needs --guardian"},
		{"key file missing", args("", "--key", filepath.Join(dir, "nope.key")), 1, "no such file"},
		{"key readable by others", args("", "--key", loose), 1, "chmod 600"},
		{"public key as key", args("", "--key", filepath.Join(dir, "issuer.pub")), 1, `"PUBLIC KEY" block`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runArgs(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, want %d, with stderr saying %q:\n%s", code, tt.code, tt.stderr, stderr)
			}
			if stdout != "" {
				t.Errorf("printed %q", stdout)
			}
		})
	}
}

func TestTokenRevoke(t *testing.T) {
	dir := keysDir(t)
	base := []string{"token", "revoke", "--key", filepath.Join(dir, "operator.key"), "--kid", "ops-1", "--site", "office-07"}
	for _, tt := range []struct {
		name string
		args []string
		want consent.Revoke
		ttl  time.Duration
	}{
		{"subject", []string{"--camera", "entrance-1", "--subject", "v-7f3a9c"},
			consent.Revoke{Subject: "v-7f3a9c", Reason: "consent withdrawn", Audience: "consentcam:office-07/entrance-1"}, 5 * time.Minute},
		{"visit, with a reason", []string{"--visit", "visit-42", "--reason", "captured by mistake", "--ttl", "1m"},
			consent.Revoke{Visit: "visit-42", Reason: "captured by mistake", Audience: "consentcam:office-07"}, time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runArgs(t, append(base, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			tok := oneToken(t, stdout)
			got, err := verifierFor(t, dir, tok).VerifyRevoke([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Issuer, want.KeyID, want.JTI = "consentcam-cli", "ops-1", got.JTI
			want.IssuedAt = issuedAt(t, tok)
			want.Expires = want.IssuedAt.Add(tt.ttl)
			want.Token = tok // the command printed, as verified
			if got.JTI == "" || !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"neither subject nor visit", nil, "exactly one of --subject and --visit"},
		{"both subject and visit", []string{"--subject", "v-1", "--visit", "visit-1"}, "exactly one of --subject and --visit"},
		{"empty reason", []string{"--subject", "v-1", "--reason", ""}, "--reason is required"},
		{"ttl over 15 minutes", []string{"--subject", "v-1", "--ttl", "1h"}, "at most 15m0s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runArgs(t, append(base, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.stderr) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr saying %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
}
