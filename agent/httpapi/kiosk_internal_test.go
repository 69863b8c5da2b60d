package httpapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/capture"
)

func mustCodeKey(t *testing.T) codeKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := newCodeKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A withdrawal code names its subject, reads as people type it, and cannot
// be altered or made without the issuer key.
func TestWithdrawalCode(t *testing.T) {
	k := mustCodeKey(t)
	subject, code := k.newSubject()

	if !regexp.MustCompile(`^kiosk-[0-9a-f]{20}$`).MatchString(subject) {
		t.Errorf("subject %q, want kiosk- and 20 hex digits", subject)
	}
	if !regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){7}$`).MatchString(code) {
		t.Errorf("code %q, want 8 groups of 4 Crockford base32 characters", code)
	}
	other, otherCode := k.newSubject()
	if other == subject || otherCode == code {
		t.Errorf("two subjects alike: %s %s", subject, code)
	}

	t.Run("read as typed", func(t *testing.T) {
		plain := strings.ReplaceAll(code, "-", "")
		for name, typed := range map[string]string{
			"as given":        code,
			"lower case":      strings.ToLower(code),
			"no dashes":       plain,
			"spaces":          " " + strings.ReplaceAll(code, "-", " ") + "\n",
			"O, I, L for 0,1": strings.NewReplacer("0", "O", "1", "l").Replace(plain),
		} {
			got, err := k.subjectOf(typed)
			if err != nil || got != subject {
				t.Errorf("%s (%q): %q, %v; want %q", name, typed, got, err, subject)
			}
		}
	})

	t.Run("every one-character change is refused", func(t *testing.T) {
		plain := []byte(strings.ReplaceAll(code, "-", ""))
		for i := range plain {
			changed := append([]byte(nil), plain...)
			changed[i] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(strings.IndexByte("0123456789ABCDEFGHJKMNPQRSTVWXYZ", plain[i])+1)%32]
			if got, err := k.subjectOf(string(changed)); !errors.Is(err, errBadCode) {
				t.Errorf("code changed at %d accepted for %q", i, got)
			}
		}
	})

	t.Run("another kiosk's code is refused", func(t *testing.T) {
		_, foreign := mustCodeKey(t).newSubject()
		if got, err := k.subjectOf(foreign); !errors.Is(err, errBadCode) {
			t.Errorf("foreign code accepted for %q", got)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for name, bad := range map[string]string{
			"empty":      "",
			"short":      code[:len(code)-1],
			"long":       code + "0",
			"letter U":   "U" + code[1:],
			"not base32": strings.Repeat("*", 32),
			"subject id": subject,
		} {
			if _, err := k.subjectOf(bad); !errors.Is(err, errBadCode) {
				t.Errorf("%s: err = %v, want errBadCode", name, err)
			}
		}
	})
}

// The kiosk page explains, in both languages, every reason the agent gives
// for saving nothing.
func TestKioskExplainsEverySkipReason(t *testing.T) {
	js, err := os.ReadFile("web/static/kiosk.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{
		string(capture.NoFace), string(capture.MultipleFaces), string(capture.LowQuality),
		agent.ReasonQueueTimeout, agent.ReasonQueueFull, agent.ReasonRevoked, agent.ReasonShutdown, agent.ReasonEncodeFailed,
		agent.ReasonSourceDown, agent.ReasonInterrupted,
	} {
		if !regexp.MustCompile(`'` + regexp.QuoteMeta(reason) + `': \['[^']+',\s*'[^']+'\]`).Match(js) {
			t.Errorf("kiosk.js has no English and Chinese text for capture.skipped reason %q", reason)
		}
	}
}
