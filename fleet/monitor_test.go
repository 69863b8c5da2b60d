package fleet_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/fleet"
	"github.com/consentcam/consentcam/fleet/fleettest"
	"github.com/consentcam/consentcam/store"
)

func sha(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

// TestMirror: the events of two boxes are mirrored, verified against their
// checkpoints and served to the auditor as the boxes published them, in a
// log that verifies with the box's key; duplicates are stored once.
func TestMirror(t *testing.T) {
	e := newEnv(t)
	a, b := e.box("office-07", "entrance-1"), e.box("office-08", "lobby")
	e.run(a, 20)
	e.run(b, 5)
	// The bus delivers at least once: the same events again change nothing.
	var again [][]byte
	for i := 0; i < 3; i++ {
		ev := a.Append(fleettest.Declined(a.Size()))
		again = append(again, ev)
		e.publish(a, "audit", ev)
	}
	for _, ev := range again {
		e.publish(a, "audit", ev)
	}
	e.checkpoint(a)
	e.waitSize(a, a.Size()-1) // the last event, the checkpoint, awaits the next one
	e.waitSize(b, b.Size()-1)

	code, log := e.get("/v1/audit?site=office-07&camera=entrance-1&limit=10000", true)
	if code != 200 {
		t.Fatalf("GET /v1/audit: %d %s", code, log)
	}
	code, cp := e.get("/v1/audit/checkpoint?site=office-07&camera=entrance-1", true)
	if code != 200 {
		t.Fatalf("GET /v1/audit/checkpoint: %d %s", code, cp)
	}
	rep, err := store.VerifyLog(bytes.NewReader(log), cp, a.Public())
	if err != nil {
		t.Fatalf("the mirrored log does not verify: %v", err)
	}
	if rep.Events != a.Size()-1 {
		t.Errorf("the mirror serves %d events, want %d", rep.Events, a.Size()-1)
	}
	if got := len(e.mon.Alarms()); got != 0 {
		t.Errorf("alarms: %+v", e.mon.Alarms())
	}
	var boxes []fleet.BoxView
	_, body := e.get("/v1/boxes", false)
	if err := json.Unmarshal(body, &boxes); err != nil || len(boxes) != 2 || boxes[0].Available != "online" || boxes[0].Size != a.Size()-1 {
		t.Errorf("GET /v1/boxes: %s", body)
	}
	if v, want := e.metric(`consentcam_fleet_events_verified_total`), fmt.Sprint(a.Size()-1+b.Size()-1); v != want {
		t.Errorf("events verified: %s, want %s", v, want)
	}
	for _, tc := range []struct {
		path string
		auth bool
		code int
	}{
		{"/v1/audit?site=office-07&camera=entrance-1", false, 401},
		{"/v1/audit?site=office-07", true, 400},
		{"/v1/audit?site=office-09&camera=entrance-1", true, 404},
		{"/v1/audit/keys?site=office-07&camera=entrance-1", true, 200},
		{"/v1/audit/notices?site=office-07&camera=entrance-1", true, 200},
		{"/v1/audit/evidence?site=office-07&camera=entrance-1", true, 200},
	} {
		if code, body := e.get(tc.path, tc.auth); code != tc.code {
			t.Errorf("GET %s: %d %s, want %d", tc.path, code, body, tc.code)
		}
	}

	t.Run("restart", func(t *testing.T) {
		// A new monitor takes up where the last one stopped: the events
		// held, the duplicates of those verified, the next checkpoint.
		held := a.Append(fleettest.Declined(a.Size()))
		e.publish(a, "audit", held)
		time.Sleep(300 * time.Millisecond)
		e.stop()
		e.start()
		e.publish(a, "audit", again[0])
		e.publish(a, "audit", held)
		e.checkpoint(a)
		e.waitSize(a, a.Size()-1)
		if as := e.mon.Alarms(); len(as) != 0 {
			t.Errorf("alarms after a restart: %+v", as)
		}
	})
}

// TestBadInput: what does not parse, is not signed, comes from an unknown
// box or contradicts what arrived is refused with an alarm naming the
// payload's hash, never stored, never served, and the monitor goes on.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	a := e.box("office-07", "entrance-1")
	e.run(a, 3)
	e.waitSize(a, a.Size()-1)

	t.Run("an event that does not parse", func(t *testing.T) {
		for _, p := range [][]byte{[]byte("{not json"), []byte(`{"seq":99,"time":"2026-01-01T00:00:00Z","type":"consent.declined","site":"office-07","camera":"entrance-1","extra":1}`),
			bytes.Replace(a.Append(fleettest.Declined(1)), []byte(`"seq"`), []byte(`"seq" `), 1)} {
			e.publish(a, "audit", p)
			al := e.waitAlarm("office-07", "entrance-1", fleet.AlarmBadInput)
			e.waitFor("the payload's hash in the alarm", func() bool {
				al = e.alarm("office-07", "entrance-1", fleet.AlarmBadInput)
				return al != nil && al.PayloadSHA256 == sha(p)
			})
		}
		// the Append above took a seq the box never published: a gap the
		// next test's events do not care about, as they are refused.
	})
	t.Run("a box with no key", func(t *testing.T) {
		x := fleettest.NewBox("office-99", "ghost")
		p := x.Started(fleettest.Settings(time.Second))
		e.publish(x, "audit", p)
		al := e.waitAlarm("office-99", "ghost", fleet.AlarmUnknownBox)
		if al.PayloadSHA256 != sha(p) {
			t.Errorf("alarm %+v", al)
		}
		if e.boxView("office-99", "ghost") != nil {
			t.Error("an unknown box is in the mirror")
		}
	})
	t.Run("a checkpoint signed by another key", func(t *testing.T) {
		impostor := fleettest.NewBoxWithKey("office-07", "entrance-1", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)))
		forged := impostor.Note()
		e.publish(a, "checkpoint", forged)
		al := e.waitAlarm("office-07", "entrance-1", fleet.AlarmBadSignature)
		if al.PayloadSHA256 != sha(forged) {
			t.Errorf("alarm %+v", al)
		}
	})
	t.Run("a seq again with other bytes", func(t *testing.T) {
		ev := &store.Event{Seq: 1, Time: time.Now().UTC().Truncate(time.Millisecond), Type: store.EventConsentDeclined,
			Site: "office-07", Camera: "entrance-1", Visit: "forged"}
		p := fleettest.EventJSON(ev)
		e.publish(a, "audit", p)
		al := e.waitAlarm("office-07", "entrance-1", fleet.AlarmFork)
		if al.PayloadSHA256 != sha(p) || !strings.Contains(al.Message, "seq 1 ") {
			t.Errorf("alarm %+v", al)
		}
		_, log := e.get("/v1/audit?site=office-07&camera=entrance-1", true)
		if bytes.Contains(log, []byte("forged")) {
			t.Error("the conflicting event is served")
		}
	})
	if code, _ := e.get("/healthz", false); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if v := e.metric(`consentcam_fleet_alarm{camera="entrance-1",kind="fork",site="office-07"}`); v != "1" {
		t.Errorf("fork gauge %q", v)
	}
	t.Run("held alarms clear", func(t *testing.T) {
		// bad input and bad signatures stay raised for alarms.hold (2s)
		// after the last one.
		e.waitCleared("office-07", "entrance-1", fleet.AlarmBadSignature)
		e.waitCleared("office-99", "ghost", fleet.AlarmUnknownBox)
	})
}
