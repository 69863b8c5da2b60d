package consent_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/consentcam/consentcam/consent"
	"github.com/golang-jwt/jwt/v5"
)

var update = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/fuzz")

// Each fuzz input is a token and whether to sign it again with the trusted
// key, so that the fuzzer also reaches the claim rules behind the signature.
func FuzzVerifyConsent(f *testing.F) {
	f.Fuzz(func(t *testing.T, token []byte, resign bool) {
		if resign {
			token = resignToken(token, issuerKey)
		}
		v := newVerifier()
		c, err := v.VerifyConsent(token)
		checkOutcome(t, err, c != nil)
		if err == nil {
			checkConsentRules(t, v, c)
		}
	})
}

func FuzzVerifyRevoke(f *testing.F) {
	f.Fuzz(func(t *testing.T, token []byte, resign bool) {
		if resign {
			token = resignToken(token, operatorKey)
		}
		v := newVerifier()
		r, err := v.VerifyRevoke(token)
		checkOutcome(t, err, r != nil)
		if err == nil {
			checkRevokeRules(t, v, r)
		}
	})
}

// resignToken replaces whatever follows the last dot with a valid Ed25519
// signature of what precedes it.
func resignToken(token []byte, key ed25519.PrivateKey) []byte {
	i := bytes.LastIndexByte(token, '.')
	if i < 0 {
		return token
	}
	input := token[:i:i]
	return append(append(input, '.'), base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, input))...)
}

// checkOutcome: every refusal has a reason of the contract, and claims come
// back exactly when the signature had verified.
func checkOutcome(t *testing.T, err error, gotClaims bool) {
	t.Helper()
	r := consent.ReasonOf(err)
	switch {
	case err == nil && !gotClaims:
		t.Fatal("no error and no claims")
	case err != nil && !slices.Contains(allReasons, r):
		t.Fatalf("error %v has no reason of the contract", err)
	case err != nil && gotClaims != afterSignature(r):
		t.Fatalf("%s refusal: claims returned = %v", r, gotClaims)
	}
}

// checkConsentRules restates the contract's claim rules for a token that
// verified.
func checkConsentRules(t *testing.T, v *consent.Verifier, c *consent.Consent) {
	t.Helper()
	for name, value := range map[string]string{
		"iss": c.Issuer, "sub": c.Subject, "jti": c.JTI, "visit": c.Visit, "notice": c.Notice,
	} {
		if value == "" {
			t.Errorf("accepted a token without %s", name)
		}
		checkID(t, name, value, consent.MaxIDSize)
	}
	for _, p := range c.Purposes {
		checkID(t, "purpose", p, consent.MaxIDSize)
	}
	if c.KeyID != "kiosk-1" {
		t.Errorf("accepted a consent token under kid %q", c.KeyID)
	}
	if c.Audience != aud && c.Audience != "consentcam:office-07" {
		t.Errorf("accepted audience %q", c.Audience)
	}
	checkTimes(t, v, c.IssuedAt, c.NotBefore, c.Expires)
	if c.NotBefore.IsZero() {
		t.Error("accepted a token without nbf")
	}
	if len(c.Purposes) == 0 {
		t.Error("accepted a token without purposes")
	}
	for i, p := range c.Purposes {
		if !slices.Contains(v.Purposes, p) || slices.Contains(c.Purposes[:i], p) {
			t.Errorf("accepted purposes %q", c.Purposes)
		}
	}
	if c.Notice != v.NoticeHash {
		t.Errorf("accepted notice %q", c.Notice)
	}
	if c.Minor && !c.Guardian {
		t.Error("accepted a minor without guardian")
	}
}

func checkRevokeRules(t *testing.T, v *consent.Verifier, r *consent.Revoke) {
	t.Helper()
	for name, value := range map[string]string{"iss": r.Issuer, "jti": r.JTI, "reason": r.Reason} {
		if value == "" {
			t.Errorf("accepted a revoke command without %s", name)
		}
	}
	for name, value := range map[string]string{"iss": r.Issuer, "jti": r.JTI, "sub": r.Subject, "visit": r.Visit} {
		checkID(t, name, value, consent.MaxIDSize)
	}
	checkID(t, "reason", r.Reason, consent.MaxReasonSize)
	if (r.Subject == "") == (r.Visit == "") {
		t.Errorf("accepted sub %q and visit %q", r.Subject, r.Visit)
	}
	if r.KeyID != "ops-1" {
		t.Errorf("accepted a revoke command under kid %q", r.KeyID)
	}
	if r.Audience != aud && r.Audience != "consentcam:office-07" {
		t.Errorf("accepted audience %q", r.Audience)
	}
	checkTimes(t, v, r.IssuedAt, time.Time{}, r.Expires)
}

func checkTimes(t *testing.T, v *consent.Verifier, iat, nbf, exp time.Time) {
	t.Helper()
	now, skew := v.Now(), v.ClockSkew
	if iat.IsZero() || exp.IsZero() {
		t.Fatalf("accepted iat %v, exp %v", iat, exp)
	}
	if !now.Before(exp.Add(skew)) {
		t.Errorf("accepted a token that expired at %v", exp)
	}
	if now.Add(skew).Before(nbf) || now.Add(skew).Before(iat) {
		t.Errorf("accepted a token valid from %v, issued at %v", nbf, iat)
	}
	if exp.Sub(iat) > consent.MaxLifetime {
		t.Errorf("accepted a lifetime of %v", exp.Sub(iat))
	}
}

type seed struct {
	name   string
	token  []byte
	resign bool
	want   consent.Reason
}

// fuzzSeeds are the seed corpus: deterministic tokens (fixed keys, jti and
// clock) that reach each stage of the verifier.
func fuzzSeeds(t *testing.T) map[string][]seed {
	c := consentClaims()
	r := revokeClaims()
	sc := func(claims map[string]any) []byte { return edToken(t, issuerKey, consentHeader, claims) }
	sr := func(claims map[string]any) []byte { return edToken(t, operatorKey, revokeHeader, claims) }
	good := sc(c)
	return map[string][]seed{
		"FuzzVerifyConsent": {
			{"valid", good, false, ""},
			{"valid-resigned", good, true, ""},
			{"valid-site-wide-minor", sc(with(c, map[string]any{"aud": []string{"consentcam:office-07"}, "minor": true, "guardian": true})), false, ""},
			{"too-large", sc(with(c, map[string]any{"pad": string(bytes.Repeat([]byte{'x'}, 9<<10))})), false, consent.ReasonTooLarge},
			{"malformed-base64", append(bytes.Clone(good[:20]), append([]byte{'!'}, good[21:]...)...), false, consent.ReasonMalformed},
			{"malformed-duplicate", rawToken(issuerKey, consentHeaderJSON, `{"aud":"a","aud":"b"}`), true, consent.ReasonMalformed},
			{"wrong-type", sr(r), false, consent.ReasonWrongType},
			{"alg-none", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, consentHeader, c), false, consent.ReasonBadSignature},
			{"hs256", token(t, jwt.SigningMethodHS256, []byte(public(issuerKey)), consentHeader, c), false, consent.ReasonBadSignature},
			{"unknown-key", edToken(t, issuerKey, with(consentHeader, map[string]any{"kid": "kiosk-9"}), c), false, consent.ReasonUnknownKey},
			{"missing-visit", sc(with(c, map[string]any{"visit": absent})), false, consent.ReasonMissingClaim},
			{"wrong-audience", sc(with(c, map[string]any{"aud": "consentcam:office-08"})), false, consent.ReasonWrongAudience},
			{"expired", sc(with(c, map[string]any{"exp": unix(-time.Hour)})), false, consent.ReasonExpired},
			{"not-yet-valid", sc(with(c, map[string]any{"nbf": unix(time.Hour)})), false, consent.ReasonNotYetValid},
			{"lifetime", sc(with(c, map[string]any{"exp": unix(time.Hour)})), false, consent.ReasonLifetimeTooLong},
			{"guardian", sc(with(c, map[string]any{"minor": true})), false, consent.ReasonGuardianRequired},
			{"unknown-purpose", sc(with(c, map[string]any{"purposes": []string{"resale"}})), false, consent.ReasonUnknownPurpose},
			{"stale-notice", sc(with(c, map[string]any{"notice": "0"})), false, consent.ReasonStaleNotice},
		},
		"FuzzVerifyRevoke": {
			{"valid-subject", sr(r), false, ""},
			{"valid-visit-resigned", sr(with(r, map[string]any{"sub": absent, "visit": "visit-42"})), true, ""},
			{"too-large", sr(with(r, map[string]any{"pad": string(bytes.Repeat([]byte{'x'}, 9<<10))})), false, consent.ReasonTooLarge},
			{"malformed", []byte("a.b"), false, consent.ReasonMalformed},
			{"wrong-type", good, false, consent.ReasonWrongType},
			{"alg-none", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, revokeHeader, r), false, consent.ReasonBadSignature},
			{"issuer-key", edToken(t, issuerKey, with(revokeHeader, map[string]any{"kid": "kiosk-1"}), r), false, consent.ReasonUnknownKey},
			{"both-sub-and-visit", sr(with(r, map[string]any{"visit": "visit-42"})), false, consent.ReasonMissingClaim},
			{"wrong-audience", sr(with(r, map[string]any{"aud": []string{"consentcam:office-08"}})), false, consent.ReasonWrongAudience},
			{"expired", sr(with(r, map[string]any{"exp": unix(-time.Hour)})), false, consent.ReasonExpired},
			{"not-yet-valid", sr(with(r, map[string]any{"nbf": unix(time.Hour)})), false, consent.ReasonNotYetValid},
			{"lifetime", sr(with(r, map[string]any{"exp": unix(time.Hour)})), false, consent.ReasonLifetimeTooLong},
		},
	}
}

// The seed corpus in testdata/fuzz holds exactly these seeds (go test
// -run FuzzSeeds -update rewrites it), and each still reaches the stage it
// was made for.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		for _, s := range seeds {
			t.Run(target+"/"+s.name, func(t *testing.T) {
				tok := s.token
				v := newVerifier()
				var err error
				if target == "FuzzVerifyConsent" {
					if s.resign {
						tok = resignToken(tok, issuerKey)
					}
					_, err = v.VerifyConsent(tok)
				} else {
					if s.resign {
						tok = resignToken(tok, operatorKey)
					}
					_, err = v.VerifyRevoke(tok)
				}
				if got := consent.ReasonOf(err); got != s.want {
					t.Errorf("reason = %q, want %q (%v)", got, s.want, err)
				}

				path := filepath.Join("testdata", "fuzz", target, s.name)
				want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", s.token, s.resign)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (go test ./consent -run FuzzSeeds -update writes it)", err)
				}
				if string(got) != want {
					t.Errorf("%s is stale: go test ./consent -run FuzzSeeds -update rewrites it", path)
				}
			})
		}
	}
}

// checkID fails the test for an accepted identifier over max bytes or with
// a control character.
func checkID(t *testing.T, name, value string, max int) {
	t.Helper()
	if len(value) > max || strings.ContainsFunc(value, unicode.IsControl) {
		t.Errorf("accepted %s %q: over %d bytes or with a control character", name, value, max)
	}
}
