package fleet_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
	"github.com/consentcam/consentcam/fleet/fleettest"
	"github.com/consentcam/consentcam/store"
	"gopkg.in/yaml.v3"
)

// TestAlarms raises each alarm the way a box would, and clears it the way
// its cause goes away.
func TestAlarms(t *testing.T) {
	e := newEnv(t)

	t.Run("gap", func(t *testing.T) {
		b := e.box("office-07", "gap")
		e.run(b, 3)
		e.waitSize(b, b.Size()-1)
		held := b.Append(fleettest.Declined(b.Size()))
		e.visits(b, 3) // later events and a checkpoint over the missing one
		a := e.waitAlarm(b.Site, b.Camera, fleet.AlarmGap)
		if !strings.Contains(a.Message, "seq 5 missing") {
			t.Errorf("alarm %+v", a)
		}
		e.publish(b, "audit", held)
		e.waitSize(b, b.Size()-1)
		e.waitCleared(b.Site, b.Camera, fleet.AlarmGap)
	})

	t.Run("fork", func(t *testing.T) {
		b := e.box("office-07", "fork")
		e.run(b, 3)
		backup := b.Fork()
		e.visits(b, 5)
		e.waitSize(b, b.Size()-1)
		// The state file restored from the backup: the box starts again
		// from there and logs other events under the same seqs.
		e.publish(backup, "audit", backup.Started(fleettest.Settings(time.Second)))
		a := e.waitAlarm(b.Site, b.Camera, fleet.AlarmFork)
		if a.PayloadSHA256 == "" {
			t.Errorf("alarm %+v", a)
		}
		e.checkpoint(backup) // a signed checkpoint of the other history
		e.waitFor("the forked checkpoint counted", func() bool {
			a := e.alarm(b.Site, b.Camera, fleet.AlarmFork)
			return a != nil && a.Count >= 2 && strings.Contains(a.Message, "signed checkpoint")
		})
		// The right state file back: its next checkpoint verifies.
		time.Sleep(50 * time.Millisecond)
		e.visits(b, 2)
		e.waitSize(b, b.Size()-1)
		e.waitCleared(b.Site, b.Camera, fleet.AlarmFork)
	})

	t.Run("offline and silence", func(t *testing.T) {
		b := e.box("office-07", "silent")
		e.run(b, 1)
		e.waitSize(b, b.Size()-1)
		e.waitAlarm(b.Site, b.Camera, fleet.AlarmSilence) // no checkpoint for 3 intervals of 1s
		e.checkpoint(b)
		e.waitCleared(b.Site, b.Camera, fleet.AlarmSilence)
		e.publish(b, "available", []byte("offline"))
		e.waitAlarm(b.Site, b.Camera, fleet.AlarmOffline)
		e.waitFor("the box shown offline", func() bool { return e.boxView(b.Site, b.Camera).Available == "offline" })
		e.publish(b, "available", []byte("online"))
		e.waitCleared(b.Site, b.Camera, fleet.AlarmOffline)
	})

	t.Run("witness", func(t *testing.T) {
		b := e.box("office-07", "witnessed")
		e.run(b, 1)
		e.publish(b, "audit", b.Append(&store.Event{Type: store.EventWitnessFailed, Reason: "fork", Actor: "agent",
			Detail: map[string]any{"witness": "regulator", "size": 3, "error": "409", "status": 422}}))
		e.checkpoint(b)
		a := e.waitAlarm(b.Site, b.Camera, fleet.AlarmWitness)
		if a.Key != "regulator" {
			t.Errorf("alarm %+v", a)
		}
		e.publish(b, "audit", b.Append(&store.Event{Type: store.EventWitnessRecovered, Actor: "agent",
			Detail: map[string]any{"witness": "regulator", "size": 5, "failures": 1}}))
		e.checkpoint(b)
		e.waitCleared(b.Site, b.Camera, fleet.AlarmWitness)
	})

	t.Run("site offline", func(t *testing.T) {
		e.publishTo("consentcam/v1/office-08/bridge", []byte("0"))
		e.waitAlarm("office-08", "", fleet.AlarmSiteOffline)
		e.publishTo("consentcam/v1/office-08/bridge", []byte("1"))
		e.waitCleared("office-08", "", fleet.AlarmSiteOffline)
	})

	t.Run("rule", func(t *testing.T) {
		// A box that keeps a face with a retention of 2s and sweeps every
		// hour (rule 4).
		clock := &fakeClock{t: time.Now().UTC()}
		b := e.box("office-07", "rule")
		b.Now = clock.Now
		s := fleettest.Settings(time.Second)
		s.Purposes["channel-attribution"] = 2000000000 // 2s
		s.SweepInterval = 3600000000000                // 1h
		e.publish(b, "available", []byte("online"))
		e.publish(b, "audit", b.Started(s))
		capture(e, b, clock.Now())
		e.checkpoint(b)
		clock.Add(10 * time.Second)
		e.visits(b, 1) // the next event, past the deadline
		a := e.waitAlarm(b.Site, b.Camera, fleet.AlarmRule)
		if a.Key != "rule 4" || !strings.Contains(a.Message, "still tagged for channel-attribution") {
			t.Errorf("alarm %+v", a)
		}
		if v := e.metric(`consentcam_fleet_rule_violations_total{camera="rule",rule="4",site="office-07"}`); v != "1" {
			t.Errorf("violations %q", v)
		}
		e.waitCleared(b.Site, b.Camera, fleet.AlarmRule) // alarms.hold after
	})
}

// capture logs a consent, its window and a saved face, as a box does.
func capture(e *env, b *fleettest.Box, now time.Time) {
	e.t.Helper()
	p := []string{"channel-attribution"}
	for _, ev := range []*store.Event{
		{Type: store.EventConsentAccepted, Visit: "v1", Subject: "s1", Purposes: p, Actor: "kiosk-1", Detail: map[string]any{
			"notice": "n", "expires": now.Add(10 * time.Minute).Format(time.RFC3339), "jti": "j1", "token_sha256": "00",
			"minor": false, "guardian": false}},
		{Type: store.EventWindowOpened, Visit: "v1", Subject: "s1", Purposes: p},
		{Type: store.EventCaptureSaved, Visit: "v1", Subject: "s1", Record: "r1", Purposes: p, Detail: map[string]any{
			"detector": "yunet", "score": 0.9, "box": []int{1, 2, 3, 4},
			"expires": map[string]any{"channel-attribution": now.Add(2 * time.Second).Format(time.RFC3339)}}},
		{Type: store.EventWindowClosed, Visit: "v1", Subject: "s1"},
	} {
		e.publish(b, "audit", b.Append(ev))
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestAlertingRules: the Prometheus rules shipped in deploy/ page on every
// kind of alarm, and name only metrics the monitor exports.
func TestAlertingRules(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "consentcam-fleet.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	b := e.box("office-07", "entrance-1")
	e.run(b, 1)
	e.publish(b, "available", []byte("offline")) // so that the alarm gauge exists
	e.waitAlarm(b.Site, b.Camera, fleet.AlarmOffline)
	_, metrics := e.get("/metrics", false)
	covered := map[string]bool{}
	names := regexp.MustCompile(`consentcam_fleet_[a-z_]+`)
	kinds := regexp.MustCompile(`kind=~?"([^"]+)"`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, n := range names.FindAllString(r.Expr, -1) {
				if !strings.Contains(string(metrics), "\n"+n) {
					t.Errorf("alert %s: the monitor exports no %s", r.Alert, n)
				}
			}
			for _, m := range kinds.FindAllStringSubmatch(r.Expr, -1) {
				for _, k := range strings.Split(m[1], "|") {
					covered[k] = true
				}
			}
		}
	}
	for _, k := range fleet.AlarmKinds {
		if !covered[k] {
			t.Errorf("no alert for alarms of kind %s", k)
		}
	}
}
