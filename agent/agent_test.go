package agent_test

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// Without a consent token frames are read and dropped: the detector never
// runs, nothing is kept, and the log holds only the agent's own events.
func TestNoConsentNoDetection(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	r.Cam.Show(agenttest.Face(200, 100, 160, 0.95))
	testenv.WaitUntil(10*time.Second, func() bool { return r.Cam.Reads.Load() >= 30 })
	if n := r.Cam.Reads.Load(); n < 30 {
		t.Fatalf("only %d frames read", n)
	}
	if n := r.Cam.Detects.Load(); n != 0 {
		t.Errorf("detector ran %d times without a window", n)
	}
	_, body := r.Do("GET", "/metrics", httpapi.RoleMetrics, nil)
	for _, want := range []string{"consentcam_frames_analyzed_total 0", "consentcam_records 0", "consentcam_windows_open 0"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !bytes.Contains(body, []byte("consentcam_frames_total ")) || bytes.Contains(body, []byte("consentcam_frames_total 0\n")) {
		t.Errorf("consentcam_frames_total not counting frames")
	}
	n, err := r.DB.RecordCount()
	if err != nil || n != 0 {
		t.Errorf("records = %d, %v; want 0", n, err)
	}
	for _, ev := range r.Events() {
		switch ev.Type {
		case store.EventAgentStarted, store.EventNoticePublished, store.EventCheckpoint:
		default:
			t.Errorf("unexpected event %s", ev.Type)
		}
	}
}

// A valid token opens a window; the visitor's face is saved under the
// purposes consented to, readable only for those, and every read audited.
func TestConsentCapture(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	r.Cam.Show(agenttest.Face(240, 120, 160, 0.95))
	v := r.Visit(r.ConsentToken("visit-1", "subj-1", "channel-attribution"))
	if v.Visit != "visit-1" || v.Subject != "subj-1" || v.Waiting != 0 {
		t.Errorf("visit response = %+v", v)
	}
	saved := r.WaitEvent("capture.saved", agenttest.OfVisit(store.EventCaptureSaved, "visit-1"))
	if saved.Record == "" || !slices.Equal(saved.Purposes, []string{"channel-attribution"}) {
		t.Errorf("capture.saved = %+v", saved)
	}
	closed := r.WaitEvent("window.closed", agenttest.OfVisit(store.EventWindowClosed, "visit-1"))
	if closed.Reason != "saved" || closed.Seq != saved.Seq+1 {
		t.Errorf("window.closed = %+v, want reason saved right after capture.saved", closed)
	}

	resp, body := r.Do("GET", "/v1/records?visit=visit-1", httpapi.RoleOperator, nil)
	var recs []store.Record
	if resp.StatusCode != 200 || json.Unmarshal(body, &recs) != nil || len(recs) != 1 {
		t.Fatalf("GET /v1/records: %s %s", resp.Status, body)
	}
	rec := recs[0]
	if rec.ID != saved.Record || rec.Subject != "subj-1" || rec.Notice != r.Notice.Hash() || rec.Detector != "scripted" ||
		len(rec.Purposes) != 1 || rec.Purposes[0].Purpose != "channel-attribution" {
		t.Errorf("record = %+v", rec)
	}
	if got, want := rec.Purposes[0].Expires.Sub(rec.CapturedAt), 720*time.Hour; got != want {
		t.Errorf("tag expires %v after capture, want %v", got, want)
	}

	t.Run("image for a consented purpose", func(t *testing.T) {
		resp, body := r.Do("GET", "/v1/records/"+rec.ID+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("%s %s", resp.Status, body)
		}
		img, err := jpeg.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		// The crop is the face box with its margin, never the whole frame.
		if b := img.Bounds(); b.Dx() >= 640 || b.Dx() < 160 || b.Dy() < 160 {
			t.Errorf("image is %v; want the face crop", b)
		}
		ev := r.WaitEvent("record.accessed", agenttest.IsType(store.EventRecordAccessed))
		if ev.Record != rec.ID || ev.Subject != "subj-1" || ev.Actor != httpapi.RoleOperator || !slices.Equal(ev.Purposes, []string{"channel-attribution"}) {
			t.Errorf("record.accessed = %+v", ev)
		}
	})
	t.Run("image for another purpose", func(t *testing.T) {
		resp, body := r.Do("GET", "/v1/records/"+rec.ID+"/image?purpose=entry-security", httpapi.RoleOperator, nil)
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte(`"reason":"purpose-not-allowed"`)) {
			t.Errorf("%s %s", resp.Status, body)
		}
	})
	t.Run("roles", func(t *testing.T) {
		for _, tt := range []struct {
			path, role string
			want       int
		}{
			{"/v1/records/" + rec.ID + "/image?purpose=channel-attribution", "", http.StatusUnauthorized},
			{"/v1/records/" + rec.ID + "/image?purpose=channel-attribution", httpapi.RoleAuditor, http.StatusForbidden},
			{"/v1/records?visit=visit-1", httpapi.RoleKiosk, http.StatusForbidden},
			{"/v1/audit", httpapi.RoleOperator, http.StatusForbidden},
			{"/v1/audit", httpapi.RoleAuditor, http.StatusOK},
			{"/v1/notice", "", http.StatusOK},
			{"/healthz", "", http.StatusOK},
		} {
			if resp, body := r.Do("GET", tt.path, tt.role, nil); resp.StatusCode != tt.want {
				t.Errorf("GET %s as %q: %s %s, want %d", tt.path, tt.role, resp.Status, body, tt.want)
			}
		}
		req, _ := http.NewRequest("GET", "http://"+r.HTTP.ListenAddr()+"/v1/audit", nil)
		req.Header.Set("Authorization", "Bearer not-a-token-at-all-0000")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("unknown token: %s", resp.Status)
		}
	})

	// The state directory never holds the picture in plain text.
	_, img := r.Do("GET", "/v1/records/"+rec.ID+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
	r.Close()
	testenv.NoPlaintext(t, filepath.Dir(r.DB.Path()), img)
}

// Frames with two faces in the zone never qualify: the window ends with
// capture.skipped multiple-faces and nothing is kept.
func TestTwoPeopleSkipped(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil)
	r.Cam.Show(agenttest.Face(40, 120, 160, 0.95), agenttest.Face(400, 120, 160, 0.93))
	r.Visit(r.ConsentToken("visit-2", "subj-2", "channel-attribution"))
	ev := r.WaitEvent("capture.skipped", agenttest.OfVisit(store.EventCaptureSkipped, "visit-2"))
	if ev.Reason != "multiple-faces" {
		t.Errorf("capture.skipped reason = %q, want multiple-faces", ev.Reason)
	}
	if n, _ := r.DB.RecordCount(); n != 0 {
		t.Errorf("%d records kept", n)
	}
	if n := r.Cam.Detects.Load(); n == 0 {
		t.Error("the detector never ran during the window")
	}
}

// One window at a time: tokens wait in arrival order, and the detector
// stops when the last window closes.
func TestWindowsQueueInOrder(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = 300 * time.Millisecond })
	for i, v := range []string{"q-1", "q-2", "q-3"} {
		resp := r.Visit(r.ConsentToken(v, "s-"+v, "channel-attribution"))
		if resp.Waiting != i {
			t.Errorf("%s waiting = %d, want %d", v, resp.Waiting, i)
		}
	}
	r.WaitEvent("last window.closed", agenttest.OfVisit(store.EventWindowClosed, "q-3"))
	var order []string
	open := ""
	for _, ev := range r.Events() {
		switch ev.Type {
		case store.EventWindowOpened:
			if open != "" {
				t.Errorf("window of %s opened while %s was open", ev.Visit, open)
			}
			open = ev.Visit
			order = append(order, ev.Visit)
		case store.EventWindowClosed:
			if ev.Reason != "no-face" {
				t.Errorf("window of %s closed with %q, want no-face", ev.Visit, ev.Reason)
			}
			open = ""
		}
	}
	if !slices.Equal(order, []string{"q-1", "q-2", "q-3"}) {
		t.Errorf("windows opened in order %v", order)
	}
	before := r.Cam.Detects.Load()
	time.Sleep(200 * time.Millisecond)
	if after := r.Cam.Detects.Load(); after != before {
		t.Errorf("detector ran %d times after the last window closed", after-before)
	}
}

// A queued token whose window cannot open before it expires is skipped with
// queue-timeout; a token arriving when 16 wait is skipped with queue-full.
func TestQueueLimits(t *testing.T) {
	r := agenttest.New(t, time.Hour, func(r *agenttest.Rig) { r.Agent.Window = time.Hour })
	r.Visit(r.ConsentToken("holder", "s-0", "channel-attribution"))
	r.WaitEvent("window.opened", agenttest.OfVisit(store.EventWindowOpened, "holder"))

	// A token that expires in 1 s, waiting behind a window of an hour.
	issued := r.Now()
	short, err := consent.SignConsent(r.Issuer.Priv, r.Issuer.KID, consent.Consent{
		Issuer: "kiosk", Subject: "s-short", Visit: "short", Purposes: []string{"channel-attribution"},
		Notice: r.Notice.Hash(), Audience: consent.Audience(agenttest.Site, agenttest.Camera),
		IssuedAt: issued, NotBefore: issued, Expires: issued.Add(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Visit(short)
	ev := r.WaitEvent("capture.skipped of the short token", agenttest.OfVisit(store.EventCaptureSkipped, "short"))
	if ev.Reason != "queue-timeout" {
		t.Errorf("reason = %q, want queue-timeout", ev.Reason)
	}

	for i := range agent.MaxQueue {
		r.Visit(r.ConsentToken("wait-"+string(rune('a'+i)), "s", "channel-attribution"))
	}
	resp, body := r.Do("POST", "/v1/visits", httpapi.RoleKiosk, strings.NewReader(r.ConsentToken("one-too-many", "s", "channel-attribution")))
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"reason":"queue-full"`)) {
		t.Errorf("17th waiting token: %s %s", resp.Status, body)
	}
	ev = r.WaitEvent("capture.skipped queue-full", agenttest.OfVisit(store.EventCaptureSkipped, "one-too-many"))
	if ev.Reason != "queue-full" {
		t.Errorf("reason = %q", ev.Reason)
	}
}
