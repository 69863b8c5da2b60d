package fleet_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
)

func TestParseConfig(t *testing.T) {
	const base = "mqtt: {url: tcp://127.0.0.1:1883}\npostgres: {url: postgres://x@/y}\n"
	c, err := fleet.ParseConfig("fleet.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != fleet.DefaultListen || c.Alarms.GapAfter != 5*time.Minute || c.Alarms.SilenceIntervals != 3 ||
		c.Boxes.KeysDir != "/etc/consentcam/cameras" || c.MQTT.TopicPrefix != "consentcam/v1" {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct{ text, field string }{
		{"mqtt: {url: http://x}\npostgres: {url: p}\n", "mqtt.url"},
		{"postgres: {url: p}\n", "mqtt.url"},
		{"mqtt: {url: tcp://x:1}\n", "postgres.url"},
		{"mqtt: {url: tcp://x:1, sites: [Office]}\npostgres: {url: p}\n", "mqtt.sites[0]"},
		{base + "alarms: {silence_intervals: 0}\n", "alarms.silence_intervals"},
		{base + "http: {tokens: [{role: operator, token_file: f}]}\n", "http.tokens[0].role"},
		{base + "boxes: {issuers: [{kid: a, public_key: x}, {kid: a, public_key: y}]}\n", "boxes.issuers[1].kid"},
		{base + "nonsense: 1\n", ""},
	} {
		_, err := fleet.ParseConfig("fleet.yaml", []byte(tc.text))
		var ce *fleet.ConfigError
		switch {
		case err == nil:
			t.Errorf("%q: accepted", tc.text)
		case !strings.HasPrefix(err.Error(), "fleet.yaml"):
			t.Errorf("%q: error %v does not name the file", tc.text, err)
		case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
			t.Errorf("%q: error %v, want one naming %s", tc.text, err, tc.field)
		}
	}
}
