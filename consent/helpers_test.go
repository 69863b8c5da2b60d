package consent_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/golang-jwt/jwt/v5"
)

// now is the verifier's clock in these tests.
var now = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// Keys from fixed seeds, so that tokens and fuzz seeds are reproducible.
var (
	issuerKey   = seededKey(1)
	operatorKey = seededKey(2)
	strangerKey = seededKey(3) // trusted by nobody
)

func seededKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return ed25519.NewKeyFromSeed(seed)
}

func public(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var noticeHash = func() string {
	sum := sha256.Sum256([]byte("the notice in force"))
	return hex.EncodeToString(sum[:])
}()

// newVerifier returns the verifier of camera entrance-1 at site office-07,
// trusting kiosk-1 to issue consent and ops-1 to revoke.
func newVerifier() *consent.Verifier {
	return &consent.Verifier{
		Site:       "office-07",
		Camera:     "entrance-1",
		Issuers:    map[string]ed25519.PublicKey{"kiosk-1": public(issuerKey)},
		Operators:  map[string]ed25519.PublicKey{"ops-1": public(operatorKey)},
		Purposes:   []string{"channel-attribution", "entry-security"},
		NoticeHash: noticeHash,
		ClockSkew:  30 * time.Second,
		Now:        func() time.Time { return now },
	}
}

const aud = "consentcam:office-07/entrance-1"

func unix(d time.Duration) int64 { return now.Add(d).Unix() }

// consentClaims are the claims of a valid consent token, issued a minute ago
// for ten minutes.
func consentClaims() map[string]any {
	return map[string]any{
		"iss":      "kiosk.office-07",
		"sub":      "v-7f3a9c",
		"jti":      "jti-1",
		"aud":      aud,
		"iat":      unix(-time.Minute),
		"nbf":      unix(-time.Minute),
		"exp":      unix(9 * time.Minute),
		"visit":    "visit-42",
		"purposes": []string{"channel-attribution"},
		"notice":   noticeHash,
	}
}

// revokeClaims are the claims of a valid revoke command for a subject.
func revokeClaims() map[string]any {
	return map[string]any{
		"iss":    "front-desk",
		"jti":    "req-1",
		"aud":    aud,
		"iat":    unix(-time.Minute),
		"exp":    unix(4 * time.Minute),
		"reason": "consent withdrawn",
		"sub":    "v-7f3a9c",
	}
}

var consentHeader = map[string]any{"typ": "consent+jwt", "kid": "kiosk-1"}
var revokeHeader = map[string]any{"typ": "revoke+jwt", "kid": "ops-1"}

// consentHeaderJSON is the header of a consent token as literal JSON, for
// rawToken.
const consentHeaderJSON = `{"alg":"EdDSA","typ":"consent+jwt","kid":"kiosk-1"}`

// absent, as a value in with, removes the member.
var absent = &struct{}{}

// with returns a copy of m with the changes applied.
func with(m map[string]any, changes map[string]any) map[string]any {
	out := maps.Clone(m)
	for k, v := range changes {
		if v == absent {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// token signs claims with the jwt library, as an issuer (or an attacker
// with a library) would: method and key as given, header members added to
// the library's alg and typ.
func token(tb testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) []byte {
	tb.Helper()
	t := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	t.Header = with(t.Header, header)
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(s)
}

// edToken is an EdDSA token signed by key.
func edToken(tb testing.TB, key ed25519.PrivateKey, header, claims map[string]any) []byte {
	tb.Helper()
	return token(tb, jwt.SigningMethodEdDSA, key, header, claims)
}

// rawToken signs header and claims given as literal JSON text, for what no
// JSON library would write (duplicate members).
func rawToken(key ed25519.PrivateKey, header, claims string) []byte {
	input := b64(header) + "." + b64(claims)
	return []byte(input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input))))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// segments splits a compact token.
func segments(tb testing.TB, tok []byte) []string {
	tb.Helper()
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	return parts
}

// afterSignature reports whether a refusal for this reason is found after the
// signature verified, so that the claims come with it.
func afterSignature(r consent.Reason) bool {
	switch r {
	case consent.ReasonTooLarge, consent.ReasonMalformed, consent.ReasonWrongType,
		consent.ReasonBadSignature, consent.ReasonUnknownKey:
		return false
	}
	return true
}

// allReasons are the refusal reasons of the contract.
var allReasons = []consent.Reason{
	consent.ReasonMalformed, consent.ReasonBadSignature, consent.ReasonUnknownKey,
	consent.ReasonWrongType, consent.ReasonWrongAudience, consent.ReasonExpired,
	consent.ReasonNotYetValid, consent.ReasonLifetimeTooLong, consent.ReasonReplayed,
	consent.ReasonUnknownPurpose, consent.ReasonStaleNotice, consent.ReasonMissingClaim,
	consent.ReasonGuardianRequired, consent.ReasonTooLarge,
}

// checkRefusal checks that err is a refusal for want (or nil when want is
// "") and that claims come with it exactly when the signature had verified.
func checkRefusal(t *testing.T, err error, gotClaims bool, want consent.Reason) {
	t.Helper()
	if got := consent.ReasonOf(err); got != want {
		t.Fatalf("reason = %q, want %q (error: %v)", got, want, err)
	}
	if want == "" {
		if err != nil || !gotClaims {
			t.Fatalf("valid token: error %v, claims returned %v", err, gotClaims)
		}
		return
	}
	var cerr *consent.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v is not a *consent.Error", err)
	}
	if got, want := gotClaims, afterSignature(want); got != want {
		t.Errorf("claims returned = %v, want %v for %s", got, want, cerr.Reason)
	}
}
