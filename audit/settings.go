package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/consentcam/consentcam/store"
)

// Duration is a time.Duration written in JSON as Go writes durations
// ("1m0s", "720h0m0s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"1m0s\": %v", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Settings are the settings of a box that the rules need. The agent writes
// them into the detail of every agent.started event (docs/SPEC.md, "Audit
// log"), so that they are signed with the log.
type Settings struct {
	// Purposes maps each configured purpose id to its retention.
	Purposes           map[string]Duration `json:"purposes"`
	CheckpointInterval Duration            `json:"checkpoint_interval"`
	SweepInterval      Duration            `json:"sweep_interval"`
	ClockSkew          Duration            `json:"clock_skew"`
	EvidenceRetention  Duration            `json:"evidence_retention"`
	// Issuers and Operators name the keys the box trusts: kid → the
	// lowercase hex SHA-256 of the key's PKIX DER form (KeyFingerprint).
	// Empty in a manifest: every key of trust.json is then trusted.
	Issuers   map[string]string `json:"issuers,omitempty"`
	Operators map[string]string `json:"operators,omitempty"`
}

// SettingsDetail returns the members of an agent.started detail that carry
// s: the agent adds version and detector beside them.
func SettingsDetail(s *Settings) map[string]any {
	b, err := json.Marshal(s)
	if err != nil {
		panic("audit: marshal settings: " + err.Error())
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic("audit: unmarshal settings: " + err.Error())
	}
	return m
}

// settingsKeys are the members of an agent.started detail that are settings.
var settingsKeys = []string{"purposes", "checkpoint_interval", "sweep_interval", "clock_skew",
	"evidence_retention", "issuers", "operators"}

// StartedSettings reads the settings in an agent.started detail: nil when
// it carries none (an agent older than the contract that added them).
func StartedSettings(ev *store.Event) (*Settings, error) {
	m := map[string]any{}
	for _, k := range settingsKeys {
		if v, ok := ev.Detail[k]; ok {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := new(Settings)
	if err := decodeStrict(b, s); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Settings) validate() error {
	var missing []string
	for _, f := range []struct {
		name string
		d    Duration
	}{
		{"checkpoint_interval", s.CheckpointInterval},
		{"sweep_interval", s.SweepInterval},
		{"evidence_retention", s.EvidenceRetention},
	} {
		if f.d <= 0 {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s missing or not positive", strings.Join(missing, ", "))
	}
	if s.ClockSkew < 0 {
		return errors.New("clock_skew negative")
	}
	if len(s.Purposes) == 0 {
		return errors.New("no purposes")
	}
	for id, r := range s.Purposes {
		if id == "" || r <= 0 {
			return fmt.Errorf("purpose %q: retention %v, want a purpose id and a positive retention", id, r)
		}
	}
	return nil
}

// differences lists where t differs from s in the settings both state.
func (s *Settings) differences(t *Settings) []string {
	var d []string
	add := func(name string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			d = append(d, fmt.Sprintf("%s %v, not %v", name, a, b))
		}
	}
	add("purposes", sortedDurations(s.Purposes), sortedDurations(t.Purposes))
	add("checkpoint_interval", s.CheckpointInterval, t.CheckpointInterval)
	add("sweep_interval", s.SweepInterval, t.SweepInterval)
	add("clock_skew", s.ClockSkew, t.ClockSkew)
	add("evidence_retention", s.EvidenceRetention, t.EvidenceRetention)
	return d
}

func sortedDurations(m map[string]Duration) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k].String()
	}
	return "{" + strings.Join(parts, " ") + "}"
}
