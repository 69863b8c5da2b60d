package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
)

func readExample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.Root(), "deploy", "consentcam.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The shipped example must stay a valid configuration.
func TestParseConfig_Example(t *testing.T) {
	c, err := ParseConfig("example.yaml", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Capture.Window, 20*time.Second; got != want {
		t.Errorf("capture.window = %v, want %v", got, want)
	}
	if got, want := c.Purposes[0].Retention, 720*time.Hour; got != want {
		t.Errorf("retention = %v, want %v", got, want)
	}
	if got, want := c.MQTT.TopicPrefix, "consentcam/v1/office-07/entrance-1"; got != want {
		t.Errorf("topic_prefix = %q, want %q", got, want)
	}
}

const minimal = `site: office-07
camera: entrance-1
issuers: [{kid: kiosk-1, public_key: issuer.pub}]
notice: {controller: C, contact: c@example.com, withdraw: Ask., alternative: Sign in at the desk.}
purposes: [{id: entry-security, description: Keep the entrance safe, retention: 24h}]
`

func TestParseConfig_Defaults(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	if c.Capture.DetectFPS != 5 || c.Capture.Window != 20*time.Second || c.Capture.MinFace != 64 ||
		c.Capture.MinScore != 0.8 || c.Capture.Detector != "auto" || c.Capture.Cascade != want.Capture.Cascade {
		t.Errorf("capture defaults = %+v", c.Capture)
	}
	if !c.Source.Realtime || c.Source.Loop || c.Source.URL != "/dev/video0" {
		t.Errorf("source defaults = %+v", c.Source)
	}
	if c.Consent.ClockSkew != 30*time.Second || c.Consent.EvidenceRetention != 26280*time.Hour || c.Retention.SweepInterval != time.Minute ||
		c.Audit.CheckpointInterval != time.Minute || c.Store.CompactInterval != 10*time.Minute {
		t.Errorf("interval defaults wrong: %+v %+v %+v %+v", c.Consent, c.Retention, c.Audit, c.Store)
	}
	if got, want := c.MQTT.ClientID, "consentcam-office-07-entrance-1"; got != want {
		t.Errorf("client_id = %q, want %q", got, want)
	}
	if got, want := c.MQTT.TopicPrefix, "consentcam/v1/office-07/entrance-1"; got != want {
		t.Errorf("topic_prefix = %q, want %q", got, want)
	}
	if got, want := c.HTTP.Listen, "127.0.0.1:8765"; got != want {
		t.Errorf("http.listen = %q, want %q", got, want)
	}
	if got, want := c.MQTT.ReconnectMax, 5*time.Second; got != want {
		t.Errorf("mqtt.reconnect_max = %v, want %v", got, want)
	}
}

// testWitnessKey is a witness's verifier key (vkey).
const testWitnessKey = "witness.example/w1+39975b31+BJkJ87YnMyEKzn5P/0Zd671wDX84aT0VxYz4r4Dia5q8"

func TestParseConfig_Witnesses(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte(minimal))
	if err != nil || len(c.Audit.Witnesses) != 0 || c.Audit.WitnessQuorum != 0 {
		t.Errorf("default witnesses = %+v, %v; want none", c.Audit, err)
	}
	c, err = ParseConfig("c.yaml", []byte(minimal+`audit:
  witness_quorum: 1
  witnesses:
    - {name: regulator, url: 'https://witness.regulator.example/', key: `+testWitnessKey+`}
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Audit.Witnesses; len(w) != 1 || w[0].Name != "regulator" || w[0].Key != testWitnessKey || c.Audit.WitnessQuorum != 1 {
		t.Errorf("audit = %+v", c.Audit)
	}

	// The example's commented witness, turned on as docs/WITNESS.md says.
	on := strings.NewReplacer("\n# witnesses:", "\n  witnesses:", "\n#   - name:", "\n    - name:", "\n#     url:", "\n      url:",
		"\n#     key:", "\n      key:", "\n# witness_quorum:", "\n  witness_quorum:").Replace(string(readExample(t)))
	c, err = ParseConfig("example.yaml", []byte(on))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Audit.Witnesses; len(w) != 1 || w[0].URL != "https://witness.regulator.example" || c.Audit.WitnessQuorum != 0 {
		t.Errorf("example's witnesses = %+v", c.Audit)
	}
}

const kioskToken = "http: {tokens: [{role: kiosk, token_file: kiosk.token}]}\n"

// The kiosk is off by default, and on with an issuer's kid and key.
func TestParseConfig_Kiosk(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte(minimal))
	if err != nil || c.Kiosk != (KioskConfig{}) {
		t.Errorf("default kiosk = %+v, %v; want off", c.Kiosk, err)
	}
	c, err = ParseConfig("c.yaml", []byte(minimal+kioskToken+"kiosk: {issuer: kiosk-1, key: issuer.key}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (KioskConfig{Issuer: "kiosk-1", Key: "issuer.key"}); c.Kiosk != want {
		t.Errorf("kiosk = %+v, want %+v", c.Kiosk, want)
	}

	// The example's commented kiosk section, turned on as docs/KIOSK.md says.
	example := string(readExample(t))
	on := strings.NewReplacer("\n# kiosk:", "\nkiosk:", "\n#   issuer:", "\n  issuer:", "\n#   key:", "\n  key:",
		"auditor.token}", "auditor.token}\n    - {role: kiosk, token_file: /etc/consentcam/kiosk.token}",
	).Replace(example)
	c, err = ParseConfig("example.yaml", []byte(on))
	if err != nil {
		t.Fatal(err)
	}
	if want := (KioskConfig{Issuer: "kiosk-1", Key: "/etc/consentcam/issuer.key"}); c.Kiosk != want {
		t.Errorf("example's kiosk = %+v, want %+v", c.Kiosk, want)
	}
}

func TestParseConfig_Errors(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		field      string // the key the error must name
		line       int
		msg        string // a fragment of the message
	}{
		{"unknown top-level key", minimal + "colour: red\n", "colour", 6, "unknown key"},
		{"unknown nested key", minimal + "capture:\n  windw: 5s\n", "capture.windw", 7, "known here: cascade, detect_fps"},
		{"unknown key in a list item", strings.Replace(minimal, "retention: 24h", "retention: 24h, keep: forever", 1), "purposes[0].keep", 5, "unknown key"},
		{"bad duration", minimal + "capture: {window: soon}\n", "", 6, "soon"},
		{"negative window", minimal + "capture: {window: -1s}\n", "capture.window", 6, "positive"},
		{"zone outside frame", minimal + "capture: {zone: [0.5, 0, 0.6, 1]}\n", "capture.zone", 6, "inside the frame"},
		{"zone of three", minimal + "capture: {zone: [0, 0, 1]}\n", "capture.zone", 6, "[x, y, w, h]"},
		{"bad detector", minimal + "capture: {detector: magic}\n", "capture.detector", 6, "auto, yunet or cascade"},
		{"yunet without model", minimal + "capture: {detector: yunet}\n", "capture.model", 0, "must be set"},
		{"bad site", strings.Replace(minimal, "office-07", "Office 7", 1), "site", 1, "a-z"},
		{"no purposes", strings.Replace(minimal, "purposes: [{id: entry-security, description: Keep the entrance safe, retention: 24h}]\n", "", 1), "purposes", 0, "at least one"},
		{"duplicate purpose", strings.Replace(minimal, "retention: 24h}]", "retention: 24h}, {id: entry-security, description: again, retention: 1h}]", 1), "purposes[1].id", 5, "given twice"},
		{"zero retention", strings.Replace(minimal, "24h", "0s", 1), "purposes[0].retention", 5, "positive"},
		{"no issuer", strings.Replace(minimal, "issuers: [{kid: kiosk-1, public_key: issuer.pub}]\n", "", 1), "issuers", 0, "at least one"},
		{"issuer kid reused by operator", minimal + "operators: [{kid: kiosk-1, public_key: op.pub}]\n", "operators[0].kid", 6, "also an issuer"},
		{"missing controller", strings.Replace(minimal, "controller: C, ", "", 1), "notice.controller", 0, "must be set"},
		{"bad mqtt scheme", minimal + "mqtt: {url: 'http://broker'}\n", "mqtt.url", 6, "unsupported scheme"},
		{"no reconnect backoff", minimal + "mqtt: {reconnect_max: 0s}\n", "mqtt.reconnect_max", 6, "positive"},
		{"bad token role", minimal + "http: {tokens: [{role: admin, token_file: t}]}\n", "http.tokens[0].role", 6, "auditor, operator, kiosk or metrics"},
		{"host with a port", minimal + "http: {hosts: ['kiosk.example:8443']}\n", "http.hosts[0]", 6, "without port"},
		{"no rate", minimal + "http: {rate_limit: {per_minute: 0, burst: 5}}\n", "http.rate_limit", 6, "at least 1"},
		{"kiosk key without issuer", minimal + "kiosk: {key: issuer.key}\n", "kiosk.issuer", 6, "must be set"},
		{"kiosk issuer without key", minimal + "kiosk: {issuer: kiosk-1}\n", "kiosk.key", 6, "must be set"},
		{"kiosk issuer not trusted", minimal + kioskToken + "kiosk: {issuer: kiosk-9, key: issuer.key}\n", "kiosk.issuer", 7, "one of issuers"},
		{"kiosk without a kiosk token", minimal + "kiosk: {issuer: kiosk-1, key: issuer.key}\n", "http.tokens", 0, "role kiosk"},
		{"unknown kiosk key", minimal + "kiosk: {issuer: kiosk-1, url: x}\n", "kiosk.url", 6, "known here: issuer, key"},
		{"unknown witness key", minimal + "audit:\n  witnesses:\n    - {name: regulator, url: 'https://w.example', vkey: x}\n", "audit.witnesses[0].vkey", 8, "known here: key, name, url"},
		{"witness key not a vkey", minimal + "audit:\n  witnesses:\n    - {name: regulator, url: 'https://w.example', key: regulator}\n", "audit.witnesses[0].key", 8, "verifier key"},
		{"witness url not http", minimal + "audit:\n  witnesses:\n    - {url: 'ftp://w.example', key: " + testWitnessKey + "}\n", "audit.witnesses[0].url", 8, "http:// or https://"},
		{"quorum above the witnesses", minimal + "audit:\n  witness_quorum: 2\n  witnesses:\n    - {url: 'https://w.example', key: " + testWitnessKey + "}\n", "audit.witness_quorum", 7, "between 1 and"},
		{"quorum without witnesses", minimal + "audit: {witness_quorum: 1}\n", "audit.witness_quorum", 6, "needs audit.witnesses"},
		{"key given twice", minimal + "site: other\n", "site", 6, "twice"},
		{"not a mapping", "- a\n- b\n", "", 1, "mapping"},
		{"empty", "", "", 0, "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.yaml))
			var cerr *ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if cerr.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", cerr.Field, tt.field, err)
			}
			if tt.line != 0 && cerr.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", cerr.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "c.yaml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// OpenDaemon refuses a kiosk key that is not the private key of the issuer
// it signs as (before it opens anything), and gives the right one to the
// agent.
func TestOpenDaemon_KioskKey(t *testing.T) {
	dir := t.TempDir()
	if out, err := runMain(t, "keys", "gen", "--dir", dir); err != nil {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "kiosk.token"), []byte("kiosk-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(key string) Config {
		t.Helper()
		c, err := ParseConfig("c.yaml", []byte(fmt.Sprintf(`site: office-07
camera: entrance-1
state_dir: %[1]s/state
capture: {detector: cascade}
keys: {master: %[1]s/master.key, device: %[1]s/device.key}
issuers: [{kid: kiosk-1, public_key: %[1]s/issuer.pub}]
operators: [{kid: ops-1, public_key: %[1]s/operator.pub}]
notice: {controller: C, contact: c@example.com, withdraw: Ask., alternative: Sign in at the desk.}
purposes: [{id: entry-security, description: Keep the entrance safe, retention: 24h}]
http: {tokens: [{role: kiosk, token_file: %[1]s/kiosk.token}]}
kiosk: {issuer: kiosk-1, key: %[1]s/%[2]s}
`, dir, key)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	logger := slog.New(slog.DiscardHandler)

	_, err := OpenDaemon(config("operator.key"), logger)
	if err == nil || !strings.HasPrefix(err.Error(), "kiosk.key: ") || !strings.Contains(err.Error(), `not the private key of issuer "kiosk-1"`) {
		t.Errorf("operator key as the kiosk's: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused kiosk key left the state directory: %v", err)
	}

	d, err := OpenDaemon(config("issuer.key"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	want, err := consent.ReadPrivateKey(filepath.Join(dir, "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	if k := d.HTTP.Kiosk; k == nil || k.Issuer != "kiosk-1" || !k.Key.Equal(want) {
		t.Errorf("agent kiosk = %+v", k)
	}
}

// Visitor-facing texts: a plain string is the same in every language, a
// map gives one per language; the binding language must be among them.
func TestParseConfig_Languages(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Notice.Language != "zh-CN" {
		t.Errorf("notice.language = %q, want zh-CN by default", c.Notice.Language)
	}
	if got, want := c.Notice.Controller.Text(), (consent.Text{"zh-CN": "C", "en": "C"}); !got.Equal(want) {
		t.Errorf("a plain string gives %v, want %v", got, want)
	}

	c, err = ParseConfig("c.yaml", []byte(`site: office-07
camera: entrance-1
issuers: [{kid: kiosk-1, public_key: issuer.pub}]
notice:
  language: EN
  controller: {zh-CN: 示例地产, en: Example Realty}
  contact: c@example.com
  withdraw: {en: Ask the desk.}
  alternative: {zh-cn: 请到前台登记。, en: Sign in at the desk.}
purposes:
  - id: entry-security
    description: {en: Keep the entrance safe, zh-CN: 保障入口安全}
    retention: 24h
compliance: {pia_reference: PIA-7, pia_date: 2025-05-20, dpo_contact: {en: The DPO, zh-CN: 负责人}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Notice.Language != "en" {
		t.Errorf("notice.language = %q, want en (tags are read case-insensitively)", c.Notice.Language)
	}
	for name, tt := range map[string]struct{ got, want consent.Text }{
		"controller":  {c.Notice.Controller.Text(), consent.Text{"zh-CN": "示例地产", "en": "Example Realty"}},
		"withdraw":    {c.Notice.Withdraw.Text(), consent.Text{"en": "Ask the desk."}},
		"alternative": {c.Notice.Alternative.Text(), consent.Text{"zh-CN": "请到前台登记。", "en": "Sign in at the desk."}},
		"description": {c.Purposes[0].Description.Text(), consent.Text{"zh-CN": "保障入口安全", "en": "Keep the entrance safe"}},
		"dpo_contact": {c.Compliance.DPOContact.Text(), consent.Text{"zh-CN": "负责人", "en": "The DPO"}},
	} {
		if !tt.got.Equal(tt.want) {
			t.Errorf("%s = %v, want %v", name, tt.got, tt.want)
		}
	}
	n := noticeFromConfig(c)
	if n.Language != "en" || n.Languages[0] != "en" || n.Compliance == nil || n.Compliance.PIAReference != "PIA-7" {
		t.Errorf("notice: language %q, languages %v, compliance %+v", n.Language, n.Languages, n.Compliance)
	}

	for _, tt := range []struct {
		name, yaml, field, msg string
	}{
		{"controller without the binding language", strings.Replace(minimal, "controller: C", "controller: {en: C}", 1),
			"notice.controller", "no text in zh-CN, the binding language"},
		{"withdraw without the binding language", strings.Replace(minimal, "withdraw: Ask.", "withdraw: {en: Ask.}", 1),
			"notice.withdraw", "no text in zh-CN"},
		{"purpose without the binding language", strings.Replace(minimal, "description: Keep the entrance safe", "description: {en: Keep the entrance safe}", 1),
			"purposes[0].description", "no text in zh-CN, the binding language"},
		{"binding language English, given only in Chinese",
			strings.Replace(strings.Replace(minimal, "notice: {", "notice: {language: en, ", 1), "contact: c@example.com", "contact: {zh-CN: 前台}", 1),
			"notice.contact", "no text in en, the binding language"},
		{"dpo contact without the binding language", minimal + "compliance: {pia_reference: P, pia_date: 2025-05-20, dpo_contact: {en: DPO}}\n",
			"compliance.dpo_contact", "no text in zh-CN"},
		{"no alternative", strings.Replace(minimal, ", alternative: Sign in at the desk.", "", 1), "notice.alternative", "must be set"},
		{"a language the notice is not written in", strings.Replace(minimal, "controller: C", "controller: {zh-CN: C, fr: C}", 1),
			"notice.controller", `language "fr" is not one the notice is written in (zh-CN, en)`},
		{"an empty text", strings.Replace(minimal, "controller: C", "controller: {zh-CN: C, en: ''}", 1), "notice.controller", "the en text is empty"},
		{"a list for a text", strings.Replace(minimal, "controller: C", "controller: [C]", 1), "notice.controller", "a map of language tags"},
		{"a language given twice", strings.Replace(minimal, "controller: C", "controller: {zh-CN: C, zh-cn: D}", 1), "notice.controller", "given twice"},
		{"an unknown binding language", strings.Replace(minimal, "notice: {", "notice: {language: fr, ", 1), "notice.language", "zh-CN, en"},
		{"compliance without a date", minimal + "compliance: {pia_reference: P, dpo_contact: D}\n", "compliance.pia_date", "2025-05-20"},
		{"compliance with a bad date", minimal + "compliance: {pia_reference: P, pia_date: 20 May, dpo_contact: D}\n", "compliance.pia_date", "2025-05-20"},
		{"compliance without a reference", minimal + "compliance: {pia_date: 2025-05-20, dpo_contact: D}\n", "compliance.pia_reference", "must be set"},
		{"unknown compliance key", minimal + "compliance: {pia: P}\n", "compliance.pia", "known here: dpo_contact, pia_date, pia_reference"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.yaml))
			var cerr *ConfigError
			if !errors.As(err, &cerr) || cerr.Field != tt.field || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v; want one naming %s and saying %q", err, tt.field, tt.msg)
			}
		})
	}
}

// The notice hash changes when any language's text of any visitor-facing
// key changes, and when the binding language does.
func TestNoticeHash_EveryLanguage(t *testing.T) {
	read := func(yaml string) string {
		t.Helper()
		c, err := ParseConfig("c.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return noticeFromConfig(c).Hash()
	}
	base := `site: office-07
camera: entrance-1
issuers: [{kid: kiosk-1, public_key: issuer.pub}]
notice:
  language: LANG
  controller: {zh-CN: 示例地产, en: Example Realty}
  contact: {zh-CN: 前台 c@example.com, en: Front desk c@example.com}
  withdraw: {zh-CN: 问前台。, en: Ask the desk.}
  alternative: {zh-CN: 请到前台登记。, en: Sign in at the desk.}
purposes:
  - {id: entry-security, description: {zh-CN: 保障入口安全, en: Keep the entrance safe}, retention: 24h}
compliance: {pia_reference: PIA-7, pia_date: 2025-05-20, dpo_contact: {zh-CN: 负责人, en: The DPO}}
`
	zh := strings.Replace(base, "LANG", "zh-CN", 1)
	want := read(zh)
	if read(strings.Replace(base, "LANG", "en", 1)) == want {
		t.Error("changing the binding language leaves the hash unchanged")
	}
	for _, text := range []string{"示例地产", "Example Realty", "前台 c@example.com", "Front desk c@example.com", "问前台。", "Ask the desk.",
		"请到前台登记。", "Sign in at the desk.", "保障入口安全", "Keep the entrance safe", "负责人", "The DPO", "PIA-7"} {
		t.Run(text, func(t *testing.T) {
			if read(strings.Replace(zh, text, text+"!", 1)) == want {
				t.Errorf("changing %q leaves the hash unchanged", text)
			}
		})
	}
}
