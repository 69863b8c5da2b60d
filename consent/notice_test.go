package consent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/gowebpki/jcs"
)

func smallNotice() consent.Notice {
	return consent.Notice{
		Version:    2,
		Language:   "zh-CN",
		Languages:  []string{"zh-CN", "en"},
		Site:       "s",
		Camera:     "c",
		Controller: consent.Text{"zh-CN": "示例地产", "en": "Example"},
		Contact:    consent.Same("a@b"),
		Purposes: []consent.Purpose{{ID: "p", Description: consent.Text{"zh-CN": "用途", "en": "d <&>"},
			Retention: consent.Text{"zh-CN": "1天", "en": "1 day"}, RetentionSeconds: 86400}},
		Collected:   consent.Text{"zh-CN": "x", "en": "x"},
		Method:      consent.Text{"zh-CN": "m", "en": "m"},
		Storage:     consent.Text{"zh-CN": "st", "en": "st"},
		Withdraw:    consent.Text{"zh-CN": "w", "en": "w"},
		Sensitive:   consent.Text{"zh-CN": "se", "en": "se"},
		Refusal:     consent.Text{"zh-CN": "r", "en": "r"},
		Alternative: consent.Text{"zh-CN": "前台", "en": "desk"},
		Minors:      consent.Text{"zh-CN": "mi", "en": "mi"},
		Compliance:  &consent.Compliance{PIAReference: "PIA-1", PIADate: "2025-05-20", DPOContact: consent.Same("dpo@b")},
	}
}

// The canonical form below is written by hand following RFC 8785: members
// sorted by name (by UTF-16 code units: "en" before "zh-CN"), no white
// space, UTF-8 as is, no HTML escaping.
func TestNotice_HashKnownAnswer(t *testing.T) {
	const canonical = `{"alternative":{"en":"desk","zh-CN":"前台"},"camera":"c","collected":{"en":"x","zh-CN":"x"},` +
		`"compliance":{"dpo_contact":{"en":"dpo@b","zh-CN":"dpo@b"},"pia_date":"2025-05-20","pia_reference":"PIA-1"},` +
		`"contact":{"en":"a@b","zh-CN":"a@b"},"controller":{"en":"Example","zh-CN":"示例地产"},` +
		`"language":"zh-CN","languages":["zh-CN","en"],"method":{"en":"m","zh-CN":"m"},"minors":{"en":"mi","zh-CN":"mi"},` +
		`"purposes":[{"description":{"en":"d <&>","zh-CN":"用途"},"id":"p","retention":{"en":"1 day","zh-CN":"1天"},"retention_seconds":86400}],` +
		`"refusal":{"en":"r","zh-CN":"r"},"sensitive":{"en":"se","zh-CN":"se"},"site":"s","storage":{"en":"st","zh-CN":"st"},` +
		`"version":2,"withdraw":{"en":"w","zh-CN":"w"}}`
	sum := sha256.Sum256([]byte(canonical))
	want := hex.EncodeToString(sum[:])
	n := smallNotice()
	if got := n.Hash(); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	wantJSON := strings.Replace(canonical, `"language"`, `"hash":"`+want+`","language"`, 1)
	if got := string(n.JSON()); got != wantJSON {
		t.Errorf("JSON =\n%s\nwant\n%s", got, wantJSON)
	}
	n.Compliance = nil
	if strings.Contains(string(n.JSON()), "compliance") {
		t.Error("a notice without compliance has a compliance member")
	}
}

// A kiosk checks a published notice the SPEC way, with any JSON library:
// drop hash, canonicalise, SHA-256.
func TestNotice_JSONCarriesItsHash(t *testing.T) {
	n := consent.NewNotice("office-07", "entrance-1", 20*time.Second, "")
	n.Controller, n.Contact, n.Withdraw = consent.Same("Example Realty Ltd."), consent.Same("privacy@example.com"), consent.Same("Ask the front desk.")
	n.Alternative = consent.Text{"en": "Sign in at the front desk instead.", "zh-CN": "请到前台登记。"}
	n.Purposes = []consent.Purpose{consent.NewPurpose("channel-attribution", consent.Same("Tell which sales channel brought you"), 720*time.Hour)}

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

// Every member of the notice, in every language, is covered by the hash:
// a kiosk cannot show a text other than the one the token names.
func TestNotice_HashCoversEveryField(t *testing.T) {
	base := smallNotice().Hash()
	type change struct {
		name   string
		change func(*consent.Notice)
	}
	changes := []change{
		{"version", func(n *consent.Notice) { n.Version = 3 }},
		{"language", func(n *consent.Notice) { n.Language = "en" }},
		{"languages", func(n *consent.Notice) { n.Languages = []string{"en", "zh-CN"} }},
		{"site", func(n *consent.Notice) { n.Site = "s2" }},
		{"camera", func(n *consent.Notice) { n.Camera = "c2" }},
		{"purpose id", func(n *consent.Notice) { n.Purposes[0].ID = "q" }},
		{"purpose retention seconds", func(n *consent.Notice) { n.Purposes[0].RetentionSeconds = 86401 }},
		{"another purpose", func(n *consent.Notice) { n.Purposes = append(n.Purposes, n.Purposes[0]) }},
		{"no compliance", func(n *consent.Notice) { n.Compliance = nil }},
		{"pia reference", func(n *consent.Notice) { n.Compliance.PIAReference = "PIA-2" }},
		{"pia date", func(n *consent.Notice) { n.Compliance.PIADate = "2025-05-21" }},
	}
	texts := map[string]func(*consent.Notice) consent.Text{
		"controller":          func(n *consent.Notice) consent.Text { return n.Controller },
		"contact":             func(n *consent.Notice) consent.Text { return n.Contact },
		"purpose description": func(n *consent.Notice) consent.Text { return n.Purposes[0].Description },
		"purpose retention":   func(n *consent.Notice) consent.Text { return n.Purposes[0].Retention },
		"collected":           func(n *consent.Notice) consent.Text { return n.Collected },
		"method":              func(n *consent.Notice) consent.Text { return n.Method },
		"storage":             func(n *consent.Notice) consent.Text { return n.Storage },
		"withdraw":            func(n *consent.Notice) consent.Text { return n.Withdraw },
		"sensitive":           func(n *consent.Notice) consent.Text { return n.Sensitive },
		"refusal":             func(n *consent.Notice) consent.Text { return n.Refusal },
		"alternative":         func(n *consent.Notice) consent.Text { return n.Alternative },
		"minors":              func(n *consent.Notice) consent.Text { return n.Minors },
		"dpo contact":         func(n *consent.Notice) consent.Text { return n.Compliance.DPOContact },
	}
	for name, text := range texts {
		for _, lang := range consent.Languages {
			changes = append(changes, change{name + " in " + lang, func(n *consent.Notice) { text(n)[lang] += "." }})
		}
		changes = append(changes, change{name + " in one language fewer", func(n *consent.Notice) { delete(text(n), "en") }})
	}
	for _, tt := range changes {
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
	a := consent.NewNotice("office-07", "entrance-1", 20*time.Second, "")
	b := consent.NewNotice("office-07", "entrance-1", 20*time.Second, consent.LangChinese)
	if a.Hash() != b.Hash() {
		t.Error("two notices built from the same settings have different hashes")
	}
	if a.Language != "zh-CN" || !slices.Equal(a.Languages, []string{"zh-CN", "en"}) {
		t.Errorf("by default the notice is bound in %q, languages %v; want zh-CN first", a.Language, a.Languages)
	}
	if en := consent.NewNotice("office-07", "entrance-1", 20*time.Second, consent.LangEnglish); en.Language != "en" ||
		!slices.Equal(en.Languages, []string{"en", "zh-CN"}) || en.Hash() == a.Hash() {
		t.Errorf("bound in English: language %q, languages %v, hash changed %v", en.Language, en.Languages, en.Hash() != a.Hash())
	}
	if !strings.Contains(a.Method["en"], "20 seconds") || !strings.Contains(a.Method["zh-CN"], "20秒") {
		t.Errorf("method %q does not say how long the capture window is", a.Method)
	}
	if c := consent.NewNotice("office-07", "entrance-1", 45*time.Second, ""); c.Hash() == a.Hash() {
		t.Error("the window length does not change the notice")
	}
	for name, text := range map[string]consent.Text{
		"collected": a.Collected, "method": a.Method, "storage": a.Storage, "sensitive": a.Sensitive, "refusal": a.Refusal,
		"minors": a.Minors,
	} {
		for _, lang := range consent.Languages {
			if strings.TrimSpace(text[lang]) == "" {
				t.Errorf("%s has no %s text", name, lang)
			}
		}
		if text["en"] == text["zh-CN"] {
			t.Errorf("%s says the same in both languages: %q", name, text["en"])
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
		words, zh string
		seconds   int64
	}{
		{720 * time.Hour, "30 days", "30天", 2592000},
		{24 * time.Hour, "1 day", "1天", 86400},
		{36 * time.Hour, "1 day and 12 hours", "1天12小时", 129600},
		{90 * time.Minute, "1 hour and 30 minutes", "1小时30分钟", 5400},
		{26*time.Hour + time.Minute + time.Second, "1 day, 2 hours, 1 minute and 1 second", "1天2小时1分钟1秒", 93661},
		{45 * time.Second, "45 seconds", "45秒", 45},
		{1500 * time.Millisecond, "2 seconds", "2秒", 2}, // rounded up: never promise less than is kept
	} {
		t.Run(tt.words, func(t *testing.T) {
			desc := consent.Text{"zh-CN": "保障入口安全", "en": "Keep the entrance safe"}
			p := consent.NewPurpose("entry-security", desc, tt.retention)
			if p.Retention["en"] != tt.words || p.Retention["zh-CN"] != tt.zh || p.RetentionSeconds != tt.seconds {
				t.Errorf("retention = %v, %d s; want %q, %q, %d s", p.Retention, p.RetentionSeconds, tt.words, tt.zh, tt.seconds)
			}
			if p.ID != "entry-security" || !p.Description.Equal(desc) {
				t.Errorf("purpose = %+v", p)
			}
		})
	}
}

func TestText(t *testing.T) {
	for _, tt := range []struct {
		name    string
		text    consent.Text
		binding string
		err     string
	}{
		{"both", consent.Text{"zh-CN": "甲", "en": "A"}, "zh-CN", ""},
		{"binding only", consent.Text{"zh-CN": "甲"}, "zh-CN", ""},
		{"the same in every language", consent.Same("a@b"), "en", ""},
		{"no binding text", consent.Text{"en": "A"}, "zh-CN", "no text in zh-CN, the binding language"},
		{"an empty text", consent.Text{"zh-CN": "甲", "en": " "}, "zh-CN", "the en text is empty"},
		{"a language the notice is not written in", consent.Text{"zh-CN": "甲", "fr": "A"}, "zh-CN", `language "fr" is not one`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.text.Check(tt.binding)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Check = %v, want %q", err, tt.err)
			}
		})
	}
	tx := consent.Text{"zh-CN": "甲"}
	if got := tx.In("en", "zh-CN"); got != "甲" {
		t.Errorf("In(en) of a text without English = %q, want the binding text", got)
	}
	for _, tag := range []string{"zh-cn", "ZH-CN", "EN"} {
		if l, ok := consent.CanonicalLanguage(tag); !ok || !strings.EqualFold(l, tag) {
			t.Errorf("CanonicalLanguage(%q) = %q, %v", tag, l, ok)
		}
	}
	if _, ok := consent.CanonicalLanguage("zh"); ok {
		t.Error(`"zh" names no language of the notice, yet is taken`)
	}
}

// A published notice reads back as it was built, and a version 1 notice
// (texts as plain English strings) still reads.
func TestNotice_ReadBack(t *testing.T) {
	n := smallNotice()
	var back consent.Notice
	if err := json.Unmarshal(n.JSON(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Hash() != n.Hash() {
		t.Errorf("read back, the notice hashes to %s, not %s", back.Hash(), n.Hash())
	}
	var v1 consent.Notice
	if err := json.Unmarshal([]byte(`{"version":1,"controller":"Example","purposes":[{"id":"p","description":"d","retention":"1 day","retention_seconds":86400}]}`), &v1); err != nil {
		t.Fatal(err)
	}
	if v1.Controller["en"] != "Example" || v1.Purposes[0].Description["en"] != "d" {
		t.Errorf("version 1 notice read as %+v", v1)
	}
}
