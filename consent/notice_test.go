package consent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/gowebpki/jcs"
)

func smallNotice() consent.Notice {
	return consent.Notice{
		Version:    1,
		Site:       "s",
		Camera:     "c",
		Controller: "示例地产",
		Contact:    "a@b",
		Purposes:   []consent.Purpose{{ID: "p", Description: "d <&>", Retention: "1 day", RetentionSeconds: 86400}},
		Collected:  "x",
		Method:     "m",
		Storage:    "st",
		Withdraw:   "w",
		Sensitive:  "se",
		Refusal:    "r",
	}
}

// The canonical form below is written by hand following RFC 8785: members
// sorted by name, no white space, UTF-8 as is, no HTML escaping.
func TestNotice_HashKnownAnswer(t *testing.T) {
	const canonical = `{"camera":"c","collected":"x","contact":"a@b","controller":"示例地产","method":"m",` +
		`"purposes":[{"description":"d <&>","id":"p","retention":"1 day","retention_seconds":86400}],` +
		`"refusal":"r","sensitive":"se","site":"s","storage":"st","version":1,"withdraw":"w"}`
	sum := sha256.Sum256([]byte(canonical))
	want := hex.EncodeToString(sum[:])
	n := smallNotice()
	if got := n.Hash(); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	wantJSON := strings.Replace(canonical, `"method"`, `"hash":"`+want+`","method"`, 1)
	if got := string(n.JSON()); got != wantJSON {
		t.Errorf("JSON =\n%s\nwant\n%s", got, wantJSON)
	}
}

// A kiosk checks a published notice the SPEC way, with any JSON library:
// drop hash, canonicalise, SHA-256.
func TestNotice_JSONCarriesItsHash(t *testing.T) {
	n := consent.NewNotice("office-07", "entrance-1", 20*time.Second)
	n.Controller, n.Contact, n.Withdraw = "Example Realty Ltd.", "privacy@example.com", "Ask the front desk."
	n.Purposes = []consent.Purpose{consent.NewPurpose("channel-attribution", "Tell which sales channel brought you", 720*time.Hour)}

	var m map[string]any
	if err := json.Unmarshal(n.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	hash, _ := m["hash"].(string)
	delete(m, "hash")
	indented, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	canon, err := jcs.Transform(indented)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canon)
	if got, want := hash, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("published hash = %s, recomputed %s", got, want)
	}
	if got, want := hash, n.Hash(); got != want {
		t.Errorf("published hash = %s, Hash() = %s", got, want)
	}
}

func TestNotice_HashCoversEveryField(t *testing.T) {
	base := smallNotice().Hash()
	for _, tt := range []struct {
		name   string
		change func(*consent.Notice)
	}{
		{"version", func(n *consent.Notice) { n.Version = 2 }},
		{"site", func(n *consent.Notice) { n.Site = "s2" }},
		{"camera", func(n *consent.Notice) { n.Camera = "c2" }},
		{"controller", func(n *consent.Notice) { n.Controller = "other" }},
		{"contact", func(n *consent.Notice) { n.Contact = "x@y" }},
		{"purpose id", func(n *consent.Notice) { n.Purposes[0].ID = "q" }},
		{"purpose description", func(n *consent.Notice) { n.Purposes[0].Description = "e" }},
		{"purpose retention", func(n *consent.Notice) { n.Purposes[0].Retention = "2 days" }},
		{"purpose retention seconds", func(n *consent.Notice) { n.Purposes[0].RetentionSeconds = 86401 }},
		{"another purpose", func(n *consent.Notice) { n.Purposes = append(n.Purposes, n.Purposes[0]) }},
		{"collected", func(n *consent.Notice) { n.Collected = "y" }},
		{"method", func(n *consent.Notice) { n.Method = "n" }},
		{"storage", func(n *consent.Notice) { n.Storage = "su" }},
		{"withdraw", func(n *consent.Notice) { n.Withdraw = "v" }},
		{"sensitive", func(n *consent.Notice) { n.Sensitive = "sf" }},
		{"refusal", func(n *consent.Notice) { n.Refusal = "s" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := smallNotice()
			tt.change(&n)
			if n.Hash() == base {
				t.Errorf("changing %s left the hash unchanged", tt.name)
			}
		})
	}
}

func TestNewNotice(t *testing.T) {
	a := consent.NewNotice("office-07", "entrance-1", 20*time.Second)
	b := consent.NewNotice("office-07", "entrance-1", 20*time.Second)
	if a.Hash() != b.Hash() {
		t.Error("two notices built from the same settings have different hashes")
	}
	if !strings.Contains(a.Method, "20 seconds") {
		t.Errorf("method %q does not say how long the capture window is", a.Method)
	}
	if c := consent.NewNotice("office-07", "entrance-1", 45*time.Second); c.Hash() == a.Hash() {
		t.Error("the window length does not change the notice")
	}
	for name, text := range map[string]string{
		"collected": a.Collected, "method": a.Method, "storage": a.Storage, "sensitive": a.Sensitive, "refusal": a.Refusal,
	} {
		if strings.TrimSpace(text) == "" {
			t.Errorf("%s is empty", name)
		}
	}
	if a.Version != consent.NoticeVersion || a.Site != "office-07" || a.Camera != "entrance-1" {
		t.Errorf("version, site, camera = %d, %q, %q", a.Version, a.Site, a.Camera)
	}
	if bytes.Contains(a.JSON(), []byte(`\u003c`)) {
		t.Error("JSON escapes HTML characters, which RFC 8785 does not")
	}
}

func TestNewPurpose_Retention(t *testing.T) {
	for _, tt := range []struct {
		retention time.Duration
		words     string
		seconds   int64
	}{
		{720 * time.Hour, "30 days", 2592000},
		{24 * time.Hour, "1 day", 86400},
		{36 * time.Hour, "1 day and 12 hours", 129600},
		{90 * time.Minute, "1 hour and 30 minutes", 5400},
		{26*time.Hour + time.Minute + time.Second, "1 day, 2 hours, 1 minute and 1 second", 93661},
		{45 * time.Second, "45 seconds", 45},
		{1500 * time.Millisecond, "2 seconds", 2}, // rounded up: never promise less than is kept
	} {
		t.Run(tt.words, func(t *testing.T) {
			p := consent.NewPurpose("entry-security", "Keep the entrance safe", tt.retention)
			if p.Retention != tt.words || p.RetentionSeconds != tt.seconds {
				t.Errorf("retention = %q, %d s; want %q, %d s", p.Retention, p.RetentionSeconds, tt.words, tt.seconds)
			}
			if p.ID != "entry-security" || p.Description != "Keep the entrance safe" {
				t.Errorf("purpose = %+v", p)
			}
		})
	}
}
