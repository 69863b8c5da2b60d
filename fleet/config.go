package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults of the configuration (docs/SPEC.md, "Fleet monitor").
const (
	DefaultListen             = "127.0.0.1:8766"
	DefaultTopicPrefix        = "consentcam/v1"
	DefaultClientID           = "consentcam-fleet"
	DefaultCheckpointInterval = time.Minute
	DefaultGapAfter           = 5 * time.Minute
	DefaultSilenceIntervals   = 3
	DefaultHold               = time.Hour
	DefaultReconnectMax       = 5 * time.Second
	DefaultKeysDir            = "/etc/consentcam/cameras"
)

// Bearer token roles of the monitor's HTTP API: the auditor's, as on a box.
const RoleAuditor = "auditor"

// Config is the monitor's configuration file (YAML; unknown keys are an
// error).
type Config struct {
	MQTT     MQTTConfig     `yaml:"mqtt"`
	Postgres PostgresConfig `yaml:"postgres"`
	HTTP     HTTPConfig     `yaml:"http"`
	Boxes    BoxesConfig    `yaml:"boxes"`
	Alarms   AlarmsConfig   `yaml:"alarms"`
}

// MQTTConfig says how to reach the central broker.
type MQTTConfig struct {
	// URL is tcp://host:1883 or ssl://host:8883 (with CAFile, and CertFile
	// and KeyFile for a client certificate).
	URL          string `yaml:"url"`
	ClientID     string `yaml:"client_id"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	CAFile       string `yaml:"ca_file"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	// TopicPrefix is what comes before SITE/CAMERA/… in every topic.
	TopicPrefix string `yaml:"topic_prefix"`
	// Sites, when set, are the only sites this monitor follows (one
	// subscription each): several monitors can split a fleet by site.
	Sites        []string      `yaml:"sites"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// PostgresConfig says where the mirror lives.
type PostgresConfig struct {
	// URL is a libpq connection string or URL (postgres://user@host/db);
	// URLFile, a file holding one (when it carries a password).
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
}

// HTTPConfig is the monitor's HTTP API.
type HTTPConfig struct {
	Listen string     `yaml:"listen"`
	Tokens []TokenRef `yaml:"tokens"`
}

// TokenRef names a file holding a bearer token of a role.
type TokenRef struct {
	Role      string `yaml:"role"`
	TokenFile string `yaml:"token_file"`
}

// BoxesConfig says which boxes the monitor knows and what it trusts of
// them.
type BoxesConfig struct {
	// KeysDir holds each box's device public key as SITE/CAMERA.pub (PKIX
	// PEM), the layout `consentcam revoke --keys-dir` reads. A box without
	// a key there is unknown: what it publishes is refused.
	KeysDir string `yaml:"keys_dir"`
	// Issuers and Operators are the public keys the boxes trust (as in
	// the box's configuration), served to auditors for bundles.
	Issuers   []KeyRef `yaml:"issuers"`
	Operators []KeyRef `yaml:"operators"`
	// CheckpointInterval is a box's checkpoint interval until its
	// agent.started states its own.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Tolerance is the slack on every deadline the rules check.
	Tolerance time.Duration `yaml:"tolerance"`
}

// KeyRef is a public key file by kid.
type KeyRef struct {
	KID       string `yaml:"kid"`
	PublicKey string `yaml:"public_key"`
}

// AlarmsConfig tunes the alarms.
type AlarmsConfig struct {
	// GapAfter is how long a seq may be missing, with later ones or a
	// checkpoint beyond it arrived, before it is a gap.
	GapAfter time.Duration `yaml:"gap_after"`
	// SilenceIntervals is how many checkpoint intervals a box that says it
	// is online may go without a checkpoint.
	SilenceIntervals int `yaml:"silence_intervals"`
	// Hold is how long an alarm of something that happened once (a broken
	// rule, bad input) stays raised after the last occurrence.
	Hold time.Duration `yaml:"hold"`
}

// ConfigError is a mistake in the configuration, naming the key.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// DefaultConfig is the configuration with every default.
func DefaultConfig() Config {
	return Config{
		MQTT:   MQTTConfig{ClientID: DefaultClientID, TopicPrefix: DefaultTopicPrefix, ReconnectMax: DefaultReconnectMax},
		HTTP:   HTTPConfig{Listen: DefaultListen},
		Boxes:  BoxesConfig{KeysDir: DefaultKeysDir, CheckpointInterval: DefaultCheckpointInterval, Tolerance: 5 * time.Second},
		Alarms: AlarmsConfig{GapAfter: DefaultGapAfter, SilenceIntervals: DefaultSilenceIntervals, Hold: DefaultHold},
	}
}

// ReadConfigFile reads and validates a configuration file.
func ReadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(path, data)
}

// ParseConfig parses a configuration over the defaults and validates it.
func ParseConfig(name string, data []byte) (Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Validate checks the configuration.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	u, err := url.Parse(c.MQTT.URL)
	switch {
	case c.MQTT.URL == "":
		return bad("mqtt.url", "required (tcp://host:1883 or ssl://host:8883)")
	case err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts") || u.Host == "":
		return bad("mqtt.url", "want tcp://host:port or ssl://host:port, got %q", c.MQTT.URL)
	case c.MQTT.ClientID == "":
		return bad("mqtt.client_id", "required")
	case c.MQTT.TopicPrefix == "" || strings.ContainsAny(c.MQTT.TopicPrefix, "+#") || strings.HasSuffix(c.MQTT.TopicPrefix, "/"):
		return bad("mqtt.topic_prefix", "want a prefix without wildcards or trailing slash, got %q", c.MQTT.TopicPrefix)
	case c.MQTT.ReconnectMax <= 0:
		return bad("mqtt.reconnect_max", "must be positive")
	case (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == ""):
		return bad("mqtt.cert_file", "cert_file and key_file go together")
	case c.Postgres.URL == "" && c.Postgres.URLFile == "":
		return bad("postgres.url", "required (or postgres.url_file)")
	case c.Postgres.URL != "" && c.Postgres.URLFile != "":
		return bad("postgres.url", "give url or url_file, not both")
	case c.Boxes.KeysDir == "":
		return bad("boxes.keys_dir", "required")
	case c.Boxes.CheckpointInterval <= 0:
		return bad("boxes.checkpoint_interval", "must be positive")
	case c.Boxes.Tolerance < 0:
		return bad("boxes.tolerance", "must not be negative")
	case c.Alarms.GapAfter <= 0:
		return bad("alarms.gap_after", "must be positive")
	case c.Alarms.SilenceIntervals < 1:
		return bad("alarms.silence_intervals", "must be at least 1")
	case c.Alarms.Hold <= 0:
		return bad("alarms.hold", "must be positive")
	}
	for i, s := range c.MQTT.Sites {
		if !namePattern.MatchString(s) {
			return bad(fmt.Sprintf("mqtt.sites[%d]", i), "%q is not a site name ([a-z0-9-]{1,64})", s)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return bad("http.listen", "want host:port, got %q", c.HTTP.Listen)
	}
	for i, t := range c.HTTP.Tokens {
		if t.Role != RoleAuditor {
			return bad(fmt.Sprintf("http.tokens[%d].role", i), "unknown role %q (the monitor has %q)", t.Role, RoleAuditor)
		}
		if t.TokenFile == "" {
			return bad(fmt.Sprintf("http.tokens[%d].token_file", i), "required")
		}
	}
	for _, list := range []struct {
		field string
		refs  []KeyRef
	}{{"boxes.issuers", c.Boxes.Issuers}, {"boxes.operators", c.Boxes.Operators}} {
		var kids []string
		for i, r := range list.refs {
			switch {
			case r.KID == "":
				return bad(fmt.Sprintf("%s[%d].kid", list.field, i), "required")
			case r.PublicKey == "":
				return bad(fmt.Sprintf("%s[%d].public_key", list.field, i), "required")
			case slices.Contains(kids, r.KID):
				return bad(fmt.Sprintf("%s[%d].kid", list.field, i), "%q given twice", r.KID)
			}
			kids = append(kids, r.KID)
		}
	}
	return nil
}
