package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/mqttbus"
	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/witness"
	"gopkg.in/yaml.v3"
)

// Config is the agent's configuration file (docs/SPEC.md, "Configuration").
// Unknown keys are an error; every error names the key.
type Config struct {
	Site      string          `yaml:"site"`
	Camera    string          `yaml:"camera"`
	StateDir  string          `yaml:"state_dir"`
	Source    SourceConfig    `yaml:"source"`
	Capture   CaptureConfig   `yaml:"capture"`
	Keys      KeysConfig      `yaml:"keys"`
	Issuers   []KeyRef        `yaml:"issuers"`
	Operators []KeyRef        `yaml:"operators"`
	Notice    NoticeConfig    `yaml:"notice"`
	Purposes  []PurposeConfig `yaml:"purposes"`
	// Compliance, when given, is stated in the notice and in the record
	// of processing.
	Compliance *ComplianceConfig `yaml:"compliance"`
	MQTT       MQTTConfig        `yaml:"mqtt"`
	HTTP       HTTPConfig        `yaml:"http"`
	Kiosk      KioskConfig       `yaml:"kiosk"`
	Consent    struct {
		ClockSkew time.Duration `yaml:"clock_skew"`
		// EvidenceRetention is how long consent tokens and revoke
		// commands are kept as evidence (SPEC, "Evidence").
		EvidenceRetention time.Duration `yaml:"evidence_retention"`
	} `yaml:"consent"`
	Retention struct {
		SweepInterval time.Duration `yaml:"sweep_interval"`
	} `yaml:"retention"`
	Audit struct {
		CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
		// Witnesses cosign every checkpoint (docs/WITNESS.md);
		// WitnessQuorum is how many must (0: all).
		Witnesses     []witness.Config `yaml:"witnesses"`
		WitnessQuorum int              `yaml:"witness_quorum"`
	} `yaml:"audit"`
	Store struct {
		CompactInterval time.Duration `yaml:"compact_interval"`
	} `yaml:"store"`
}

// SourceConfig says where frames come from.
type SourceConfig struct {
	URL      string `yaml:"url"`
	Realtime bool   `yaml:"realtime"`
	Loop     bool   `yaml:"loop"`
}

// CaptureConfig holds the detector and the rules a face must meet.
type CaptureConfig struct {
	Detector  string        `yaml:"detector"`
	Model     string        `yaml:"model"`
	Cascade   string        `yaml:"cascade"`
	DetectFPS float64       `yaml:"detect_fps"`
	Window    time.Duration `yaml:"window"`
	Zone      []float64     `yaml:"zone"`
	MinFace   int           `yaml:"min_face"`
	MinScore  float64       `yaml:"min_score"`
}

// KeysConfig names the box's own key files.
type KeysConfig struct {
	Master string `yaml:"master"`
	Device string `yaml:"device"`
}

// KeyRef is a trusted public key and its key id.
type KeyRef struct {
	KID       string `yaml:"kid"`
	PublicKey string `yaml:"public_key"`
}

// NoticeConfig is what the notice says of the controller, and its binding
// language.
type NoticeConfig struct {
	// Language is the binding language (consent.Languages; default zh-CN):
	// every text below must be given in it.
	Language   string   `yaml:"language"`
	Controller LangText `yaml:"controller"`
	Contact    LangText `yaml:"contact"`
	Withdraw   LangText `yaml:"withdraw"`
	// Alternative is how the visit goes on without a picture.
	Alternative LangText `yaml:"alternative"`
}

// ComplianceConfig is what the processor states of its records, carried in
// the notice: its personal information protection impact assessment and
// whom to reach about personal information.
type ComplianceConfig struct {
	PIAReference string   `yaml:"pia_reference"`
	PIADate      string   `yaml:"pia_date"` // YYYY-MM-DD
	DPOContact   LangText `yaml:"dpo_contact"`
}

// PurposeConfig is one purpose a visitor can consent to.
type PurposeConfig struct {
	ID          string        `yaml:"id"`
	Description LangText      `yaml:"description"`
	Retention   time.Duration `yaml:"retention"`
}

// LangText is a text visitors read: a plain string, the same in every
// language (a name, an address), or a map of language tags to the text in
// each, such as {zh-CN: 示例地产有限公司, en: Example Realty Ltd.}.
type LangText struct {
	text consent.Text // nil when not given
	// bad is why the YAML given is not a text, reported by Validate with
	// the key's name.
	bad string
}

// UnmarshalYAML reads a plain string or a map of language tags to strings.
func (t *LangText) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*t = LangText{}
			return nil
		}
		*t = LangText{text: consent.Same(n.Value)}
	case yaml.MappingNode:
		*t = LangText{text: consent.Text{}}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			lang, ok := consent.CanonicalLanguage(k.Value)
			switch {
			case !ok:
				t.bad = fmt.Sprintf("language %q is not one the notice is written in (%s)", k.Value, strings.Join(consent.Languages, ", "))
			case v.Kind != yaml.ScalarNode || v.Tag == "!!null":
				t.bad = fmt.Sprintf("the %s text must be a string", lang)
			case t.text[lang] != "":
				t.bad = fmt.Sprintf("language %s is given twice", lang)
			}
			if t.bad != "" {
				return nil
			}
			t.text[lang] = v.Value
		}
	default:
		t.bad = "must be a string, or a map of language tags (zh-CN, en) to strings"
	}
	return nil
}

// Text is the text in every language given; nil when none was.
func (t LangText) Text() consent.Text { return t.text }

// Plain returns a LangText that is s in every language.
func Plain(s string) LangText { return LangText{text: consent.Same(s)} }

// Langs returns a LangText of a text by language tag.
func Langs(text consent.Text) LangText { return LangText{text: text} }

// check reports, as an error naming field, a text missing, not a text, or
// without the binding language.
func (t LangText) check(field, binding, missing string) error {
	switch {
	case t.bad != "":
		return &ConfigError{Field: field, Msg: t.bad}
	case t.text == nil:
		return &ConfigError{Field: field, Msg: missing}
	}
	if err := t.text.Check(binding); err != nil {
		return &ConfigError{Field: field, Msg: err.Error()}
	}
	return nil
}

// MQTTConfig is the broker connection.
type MQTTConfig struct {
	URL          string `yaml:"url"`
	ClientID     string `yaml:"client_id"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	TopicPrefix  string `yaml:"topic_prefix"`
	CAFile       string `yaml:"ca_file"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	// ReconnectMax bounds the wait between attempts to reach the broker.
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// HTTPConfig is the HTTP listener and its bearer tokens.
type HTTPConfig struct {
	Listen string     `yaml:"listen"`
	Tokens []TokenRef `yaml:"tokens"`
	// Hosts are the names the box is reached by (IP addresses and localhost
	// need none): a request naming another is refused.
	Hosts     []string        `yaml:"hosts"`
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// RateLimitConfig bounds the writing requests of one client address.
type RateLimitConfig struct {
	PerMinute int `yaml:"per_minute"`
	Burst     int `yaml:"burst"`
}

// KioskConfig turns on the consent kiosk the agent serves (a tablet at the
// front desk opens the box's page): the box then signs consent tokens
// itself, as the issuer Issuer, with Key. Without Key the kiosk is off.
type KioskConfig struct {
	Issuer string `yaml:"issuer"` // the kid of one of issuers
	Key    string `yaml:"key"`    // that issuer's private key, PKCS#8 PEM
}

// TokenRef is a bearer token file granting one role.
type TokenRef struct {
	Role      string `yaml:"role"`
	TokenFile string `yaml:"token_file"`
}

// Roles a bearer token can grant.
const (
	RoleAuditor  = httpapi.RoleAuditor
	RoleOperator = httpapi.RoleOperator
	RoleKiosk    = httpapi.RoleKiosk
	RoleMetrics  = httpapi.RoleMetrics
)

// Rules are the capture rules the configuration sets (once validated).
func (c *Config) Rules() capture.Rules {
	zone, _ := capture.ZoneOf(c.Capture.Zone)
	return capture.Rules{Zone: zone, MinFace: c.Capture.MinFace, MinScore: c.Capture.MinScore}
}

// SourceOptions say where the configuration takes frames from.
func (c *Config) SourceOptions() opencv.SourceOptions {
	return opencv.SourceOptions{URL: c.Source.URL, Realtime: c.Source.Realtime, Loop: c.Source.Loop}
}

// ConfigError is a configuration mistake, naming the key (such as
// "capture.window") and, when known, the line of the file.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// DefaultConfig returns a configuration holding the defaults of docs/SPEC.md.
// Site-dependent defaults (client id, topic prefix) are filled by Validate.

func DefaultConfig() Config {
	var c Config
	c.StateDir = "/var/lib/consentcam"
	c.Source = SourceConfig{URL: "/dev/video0", Realtime: true}
	rules := capture.DefaultRules()
	c.Capture = CaptureConfig{
		Detector:  "auto",
		Cascade:   opencv.DefaultCascade,
		DetectFPS: agent.DefaultDetectFPS,
		Window:    agent.DefaultWindow,
		Zone:      []float64{rules.Zone.X, rules.Zone.Y, rules.Zone.W, rules.Zone.H},
		MinFace:   rules.MinFace,
		MinScore:  rules.MinScore,
	}
	c.Keys = KeysConfig{Master: "/etc/consentcam/master.key", Device: "/etc/consentcam/device.key"}
	c.MQTT.URL = "tcp://127.0.0.1:1883"
	c.MQTT.ReconnectMax = mqttbus.DefaultReconnectMax
	c.HTTP.Listen = httpapi.DefaultAddr
	c.HTTP.RateLimit = RateLimitConfig(httpapi.DefaultRateLimit)
	c.Consent.ClockSkew = consent.DefaultClockSkew
	c.Consent.EvidenceRetention = agent.DefaultEvidenceRetention
	c.Retention.SweepInterval = agent.DefaultSweepInterval
	c.Audit.CheckpointInterval = agent.DefaultCheckpointInterval
	c.Store.CompactInterval = agent.DefaultCompactInterval
	return c
}

// ReadConfigFile reads, decodes and validates the configuration file at path.
func ReadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates a configuration. name is used in errors.
func ParseConfig(name string, data []byte) (Config, error) {
	c := DefaultConfig()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, &ConfigError{File: name, Msg: "the file is empty"}
		}
		return Config{}, yamlError(name, err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return Config{}, &ConfigError{File: name, Line: root.Line, Msg: "the file must be a YAML mapping of keys"}
	}
	if err := checkKeys(name, root.Content[0], reflect.TypeOf(c), ""); err != nil {
		return Config{}, err
	}
	if err := root.Decode(&c); err != nil {
		return Config{}, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, &ConfigError{File: name, Msg: "the file must hold one YAML document"}
	}
	if err := c.Validate(); err != nil {
		var cerr *ConfigError
		if errors.As(err, &cerr) {
			cerr.File = name
			cerr.Line = lineOf(root.Content[0], cerr.Field)
		}
		return Config{}, err
	}
	return c, nil
}

// checkKeys reports the first key in n that the struct type t does not have,
// with its full dotted name and the keys that are allowed there.
func checkKeys(file string, n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[LangText]() {
		return nil // its keys are language tags, which it checks itself
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				known := strings.Join(slices.Sorted(maps.Keys(fields)), ", ")
				return &ConfigError{File: file, Line: k.Line, Field: prefix + k.Value,
					Msg: fmt.Sprintf("unknown key (known here: %s)", known)}
			}
			if seen[k.Value] {
				return &ConfigError{File: file, Line: k.Line, Field: prefix + k.Value, Msg: "key given twice"}
			}
			seen[k.Value] = true
			if err := checkKeys(file, v, ft, prefix+k.Value+"."); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			if err := checkKeys(file, item, t.Elem(), fmt.Sprintf("%s[%d].", strings.TrimSuffix(prefix, "."), i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// lineOf finds the line of a dotted key ("capture.window", "purposes[1].id")
// in a mapping node, or 0.
func lineOf(n *yaml.Node, field string) int {
	line := 0
	for _, part := range strings.Split(field, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		if idx >= 0 && next != nil && next.Kind == yaml.SequenceNode && idx < len(next.Content) {
			next = next.Content[idx]
			line = next.Line
		}
		n = next
	}
	return line
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// yamlError turns a yaml.v3 error into a ConfigError with the file and line.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	if m := yamlLine.FindStringSubmatch(strings.TrimSpace(msg)); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		return &ConfigError{File: file, Line: line, Msg: m[2]}
	}
	return &ConfigError{File: file, Msg: msg}
}

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Validate checks every value and fills the defaults that depend on others.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(c.Site) {
		return bad("site", "must be 1 to 64 of a-z, 0-9 and '-' (got %q)", c.Site)
	}
	if !nameRE.MatchString(c.Camera) {
		return bad("camera", "must be 1 to 64 of a-z, 0-9 and '-' (got %q)", c.Camera)
	}
	if c.StateDir == "" {
		return bad("state_dir", "must be set")
	}
	if c.Source.URL == "" {
		return bad("source.url", "must be set")
	}

	cp := &c.Capture
	switch cp.Detector {
	case "auto", "yunet", "cascade":
	default:
		return bad("capture.detector", "must be auto, yunet or cascade (got %q)", cp.Detector)
	}
	if cp.Detector == "yunet" && cp.Model == "" {
		return bad("capture.model", "must be set when capture.detector is yunet")
	}
	if cp.Detector == "cascade" && cp.Cascade == "" {
		return bad("capture.cascade", "must be set when capture.detector is cascade")
	}
	if !(cp.DetectFPS > 0 && cp.DetectFPS <= 60) {
		return bad("capture.detect_fps", "must be more than 0 and at most 60 (got %v)", cp.DetectFPS)
	}
	if cp.Window <= 0 {
		return bad("capture.window", "must be a positive duration such as 20s (got %v)", cp.Window)
	}
	if _, err := capture.ZoneOf(cp.Zone); err != nil {
		return bad("capture.zone", "%s (as fractions of the frame)", strings.TrimPrefix(err.Error(), "zone: "))
	}
	if cp.MinFace < 1 {
		return bad("capture.min_face", "must be at least 1 pixel (got %d)", cp.MinFace)
	}
	if cp.MinScore < 0 || cp.MinScore > 1 {
		return bad("capture.min_score", "must be between 0 and 1 (got %v)", cp.MinScore)
	}

	if c.Keys.Master == "" {
		return bad("keys.master", "must be set")
	}
	if c.Keys.Device == "" {
		return bad("keys.device", "must be set")
	}
	if err := checkKeyRefs("issuers", c.Issuers, true); err != nil {
		return err
	}
	if err := checkKeyRefs("operators", c.Operators, false); err != nil {
		return err
	}
	for i, op := range c.Operators {
		for _, is := range c.Issuers {
			if op.KID == is.KID {
				return bad(fmt.Sprintf("operators[%d].kid", i), "key id %q is also an issuer's: consent and revoke keys must differ", op.KID)
			}
		}
	}

	if c.Notice.Language == "" {
		c.Notice.Language = consent.LangChinese
	}
	lang, ok := consent.CanonicalLanguage(c.Notice.Language)
	if !ok {
		return bad("notice.language", "must be one of %s (got %q)", strings.Join(consent.Languages, ", "), c.Notice.Language)
	}
	c.Notice.Language = lang
	for _, f := range []struct {
		name string
		text LangText
	}{
		{"notice.controller", c.Notice.Controller},
		{"notice.contact", c.Notice.Contact},
		{"notice.withdraw", c.Notice.Withdraw},
		{"notice.alternative", c.Notice.Alternative},
	} {
		if err := f.text.check(f.name, lang, "must be set: the notice tells every visitor this"); err != nil {
			return err
		}
	}
	if cc := c.Compliance; cc != nil {
		if strings.TrimSpace(cc.PIAReference) == "" {
			return bad("compliance.pia_reference", "must be set: the reference of the personal information protection impact assessment")
		}
		if _, err := time.Parse(time.DateOnly, cc.PIADate); err != nil {
			return bad("compliance.pia_date", "must be the assessment's date, such as 2025-05-20 (got %q)", cc.PIADate)
		}
		if err := cc.DPOContact.check("compliance.dpo_contact", lang, "must be set: whom visitors reach about their personal information"); err != nil {
			return err
		}
	}
	if len(c.Purposes) == 0 {
		return bad("purposes", "at least one purpose is needed")
	}
	ids := map[string]bool{}
	for i, p := range c.Purposes {
		f := fmt.Sprintf("purposes[%d]", i)
		if !nameRE.MatchString(p.ID) {
			return bad(f+".id", "must be 1 to 64 of a-z, 0-9 and '-' (got %q)", p.ID)
		}
		if ids[p.ID] {
			return bad(f+".id", "purpose %q is given twice", p.ID)
		}
		ids[p.ID] = true
		if err := p.Description.check(f+".description", lang, "must say what the purpose is, in plain words"); err != nil {
			return err
		}
		if p.Retention <= 0 {
			return bad(f+".retention", "must be a positive duration such as 720h (got %v)", p.Retention)
		}
	}

	if c.MQTT.URL == "" {
		return bad("mqtt.url", "must be set")
	}
	scheme, _, ok := strings.Cut(c.MQTT.URL, "://")
	switch {
	case !ok:
		return bad("mqtt.url", "must look like tcp://host:port or ssl://host:port (got %q)", c.MQTT.URL)
	case scheme == "tcp" || scheme == "mqtt" || scheme == "ssl" || scheme == "tls" || scheme == "mqtts" || scheme == "ws" || scheme == "wss":
	default:
		return bad("mqtt.url", "unsupported scheme %q (tcp, ssl, ws or wss)", scheme)
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		return bad("mqtt.cert_file", "cert_file and key_file go together")
	}
	if c.MQTT.ReconnectMax <= 0 || c.MQTT.ReconnectMax > 10*time.Minute {
		return bad("mqtt.reconnect_max", "must be a positive duration of at most 10m, such as 5s (got %v)", c.MQTT.ReconnectMax)
	}
	if c.MQTT.ClientID == "" {
		c.MQTT.ClientID = "consentcam-" + c.Site + "-" + c.Camera
	}
	if c.MQTT.TopicPrefix == "" {
		c.MQTT.TopicPrefix = "consentcam/v1/" + c.Site + "/" + c.Camera
	}
	if strings.ContainsAny(c.MQTT.TopicPrefix, "+#") || strings.HasSuffix(c.MQTT.TopicPrefix, "/") {
		return bad("mqtt.topic_prefix", "must not contain + or # or end with / (got %q)", c.MQTT.TopicPrefix)
	}

	if c.HTTP.Listen == "" {
		return bad("http.listen", "must be set, such as 127.0.0.1:8765")
	}
	for i, t := range c.HTTP.Tokens {
		f := fmt.Sprintf("http.tokens[%d]", i)
		switch t.Role {
		case RoleAuditor, RoleOperator, RoleKiosk, RoleMetrics:
		default:
			return bad(f+".role", "must be auditor, operator, kiosk or metrics (got %q)", t.Role)
		}
		if t.TokenFile == "" {
			return bad(f+".token_file", "must be set")
		}
	}

	for i, h := range c.HTTP.Hosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			return bad(fmt.Sprintf("http.hosts[%d]", i), "must be a host name such as kiosk.example, without port or scheme (got %q)", h)
		}
	}
	if rl := c.HTTP.RateLimit; rl.PerMinute < 1 || rl.Burst < 1 {
		return bad("http.rate_limit", "per_minute and burst must be at least 1 (got %d and %d)", rl.PerMinute, rl.Burst)
	}

	if err := c.Kiosk.validate(c); err != nil {
		return err
	}

	if c.Consent.ClockSkew < 0 || c.Consent.ClockSkew > 5*time.Minute {
		return bad("consent.clock_skew", "must be between 0s and 5m (got %v)", c.Consent.ClockSkew)
	}
	if err := checkWitnesses(c.Audit.Witnesses, c.Audit.WitnessQuorum); err != nil {
		return err
	}
	if c.Consent.EvidenceRetention <= 0 {
		return bad("consent.evidence_retention", "must be positive (got %v; the law asks for at least 26280h, 3 years)", c.Consent.EvidenceRetention)
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{
		{"retention.sweep_interval", c.Retention.SweepInterval},
		{"audit.checkpoint_interval", c.Audit.CheckpointInterval},
		{"store.compact_interval", c.Store.CompactInterval},
	} {
		if f.value <= 0 {
			return bad(f.name, "must be a positive duration (got %v)", f.value)
		}
	}
	return nil
}

// validate checks that the kiosk, when on, signs as a trusted issuer and
// that a tablet can reach it with a kiosk token.
func (k KioskConfig) validate(c *Config) error {
	switch {
	case k.Issuer == "" && k.Key == "":
		return nil // off
	case k.Key == "":
		return &ConfigError{Field: "kiosk.key", Msg: "must be set when kiosk.issuer is: the private key file of that issuer (PKCS#8 PEM)"}
	case k.Issuer == "":
		return &ConfigError{Field: "kiosk.issuer", Msg: "must be set when kiosk.key is: the kid of the issuer whose private key it is"}
	case !slices.ContainsFunc(c.Issuers, func(r KeyRef) bool { return r.KID == k.Issuer }):
		return &ConfigError{Field: "kiosk.issuer", Msg: fmt.Sprintf("must be the kid of one of issuers (got %q)", k.Issuer)}
	case !slices.ContainsFunc(c.HTTP.Tokens, func(t TokenRef) bool { return t.Role == RoleKiosk }):
		return &ConfigError{Field: "http.tokens", Msg: "the kiosk is on (kiosk.key) but no token has role kiosk: the front-desk tablet could not use it"}
	}
	return nil
}

// checkWitnesses validates audit.witnesses and audit.witness_quorum.
func checkWitnesses(ws []witness.Config, quorum int) error {
	if len(ws) == 0 {
		if quorum != 0 {
			return &ConfigError{Field: "audit.witness_quorum", Msg: "needs audit.witnesses"}
		}
		return nil
	}
	_, _, err := witness.Check(ws, quorum)
	var werr *witness.ConfigError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &werr) && werr.Index < 0:
		return &ConfigError{Field: "audit.witness_quorum", Msg: werr.Msg}
	case errors.As(err, &werr):
		return &ConfigError{Field: fmt.Sprintf("audit.witnesses[%d].%s", werr.Index, werr.Field), Msg: werr.Msg}
	default:
		return &ConfigError{Field: "audit.witnesses", Msg: err.Error()}
	}
}

func checkKeyRefs(field string, refs []KeyRef, required bool) error {
	if required && len(refs) == 0 {
		return &ConfigError{Field: field, Msg: "at least one trusted key is needed"}
	}
	kids := map[string]bool{}
	for i, r := range refs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if r.KID == "" {
			return &ConfigError{Field: f + ".kid", Msg: "must be set"}
		}
		if kids[r.KID] {
			return &ConfigError{Field: f + ".kid", Msg: fmt.Sprintf("key id %q is given twice", r.KID)}
		}
		kids[r.KID] = true
		if r.PublicKey == "" {
			return &ConfigError{Field: f + ".public_key", Msg: "must be set"}
		}
	}
	return nil
}
