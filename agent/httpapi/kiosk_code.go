package httpapi

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Withdrawal codes. A visitor who agrees at the kiosk gets a code that lets
// them, and only them, withdraw later, without the box storing anything new:
//
//	random  = 10 random bytes; the subject id is "kiosk-" + hex(random)
//	tag     = HMAC-SHA256(k, random)[:10]
//	k       = HKDF-SHA256(secret: the kiosk issuer key's seed, info: codeInfo)
//	code    = Crockford base32 of random || tag, no padding: 32 characters,
//	          written in groups of four
//
// Whoever knows a subject id (it is in the audit log) still cannot make its
// code without the issuer key: the tag is an 80-bit MAC. Reading is forgiving
// (case, spaces, dashes, O for 0, I and L for 1); checking is in constant
// time.
const (
	codeRandomSize = 10
	codeTagSize    = 10
	codeInfo       = "consentcam kiosk withdrawal code v1"
	codeLength     = (codeRandomSize + codeTagSize) * 8 / 5
	subjectPrefix  = "kiosk-"
)

var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// errBadCode is the refusal of a withdrawal code; its message is for the
// visitor.
var errBadCode = errors.New("this is not a withdrawal code of this box")

// codeKey makes and checks withdrawal codes.
type codeKey []byte

func newCodeKey(issuer ed25519.PrivateKey) (codeKey, error) {
	k, err := hkdf.Key(sha256.New, issuer.Seed(), nil, codeInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("withdrawal code key: %w", err)
	}
	return k, nil
}

func (k codeKey) tag(random []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write(random)
	return m.Sum(nil)[:codeTagSize]
}

// newSubject returns a fresh pseudonymous subject id and its withdrawal code.
func (k codeKey) newSubject() (subject, code string) {
	random := make([]byte, codeRandomSize)
	rand.Read(random) // never fails: crypto/rand crashes the program instead
	return subjectPrefix + hex.EncodeToString(random), groupCode(crockford.EncodeToString(append(random, k.tag(random)...)))
}

// subjectOf checks a withdrawal code and returns the subject id it names.
func (k codeKey) subjectOf(code string) (string, error) {
	s := normalizeCode(code)
	if len(s) != codeLength {
		return "", fmt.Errorf("%w: a code has %d letters and digits (this has %d)", errBadCode, codeLength, len(s))
	}
	raw, err := crockford.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("%w: it holds a character that no code has", errBadCode)
	}
	random, tag := raw[:codeRandomSize], raw[codeRandomSize:]
	if !hmac.Equal(tag, k.tag(random)) {
		return "", fmt.Errorf("%w: check it for a typing mistake", errBadCode)
	}
	return subjectPrefix + hex.EncodeToString(random), nil
}

// normalizeCode reads a code as a person may type it.
func normalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\t', '\n', '\r':
			return -1
		case 'O':
			return '0'
		case 'I', 'L':
			return '1'
		}
		return r
	}, strings.ToUpper(code))
}

// groupCode writes a code in groups of four, for reading aloud and typing.
func groupCode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}
