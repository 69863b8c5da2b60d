package consent

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignConsent signs c as a consent token with key, naming the key kid
// (c.KeyID is not used). A missing JTI is filled with a random one. Times are
// written in whole seconds. Empty fields are left out, so a token missing a
// claim the contract requires is refused by Verifier as missing-claim.
func SignConsent(key ed25519.PrivateKey, kid string, c Consent) (string, error) {
	claims := jwt.MapClaims{"jti": jtiOrRandom(c.JTI)}
	set(claims, "iss", c.Issuer)
	set(claims, "sub", c.Subject)
	set(claims, "aud", c.Audience)
	setTime(claims, "iat", c.IssuedAt)
	setTime(claims, "nbf", c.NotBefore)
	setTime(claims, "exp", c.Expires)
	set(claims, "visit", c.Visit)
	if len(c.Purposes) > 0 {
		claims["purposes"] = c.Purposes
	}
	set(claims, "notice", c.Notice)
	if c.Minor {
		claims["minor"] = true
	}
	if c.Guardian {
		claims["guardian"] = true
	}
	return sign(key, kid, TypConsent, claims)
}

// SignRevoke signs r as a revoke command with an operator key, naming the
// key kid (r.KeyID is not used). Like SignConsent, it fills a missing JTI and
// leaves empty fields out.
func SignRevoke(key ed25519.PrivateKey, kid string, r Revoke) (string, error) {
	claims := jwt.MapClaims{"jti": jtiOrRandom(r.JTI)}
	set(claims, "iss", r.Issuer)
	set(claims, "aud", r.Audience)
	setTime(claims, "iat", r.IssuedAt)
	setTime(claims, "exp", r.Expires)
	set(claims, "reason", r.Reason)
	set(claims, "sub", r.Subject)
	set(claims, "visit", r.Visit)
	return sign(key, kid, TypRevoke, claims)
}

func sign(key ed25519.PrivateKey, kid, typ string, claims jwt.MapClaims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", errors.New("sign: not an Ed25519 private key")
	}
	if kid == "" {
		return "", errors.New("sign: the key id (kid) is empty")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["typ"] = typ
	t.Header["kid"] = kid
	return t.SignedString(key)
}

// jtiOrRandom returns jti, or when it is empty a random one of 128 bits.
func jtiOrRandom(jti string) string {
	if jti != "" {
		return jti
	}
	return rand.Text()
}

func set(claims jwt.MapClaims, name, value string) {
	if value != "" {
		claims[name] = value
	}
}

func setTime(claims jwt.MapClaims, name string, t time.Time) {
	if !t.IsZero() {
		claims[name] = t.Unix()
	}
}
