package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// TestE2EVisitor runs one box whose camera shows a lone visitor through the
// product's life: no consent, refusals, captures, retention, revokes, a
// broker outage, a crash, a clean stop, and the auditor's checks.
func TestE2EVisitor(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor"})

	t.Run("no token: frames dropped, detector idle, nothing written", func(t *testing.T) {
		if !testenv.WaitUntil(20*time.Second, func() bool { return b.metric("consentcam_frames_total") >= 12 }) {
			t.Fatal("fewer than 12 frames read in 20s")
		}
		if n := b.metric("consentcam_frames_analyzed_total"); n != 0 {
			t.Errorf("frames_analyzed_total = %v without a token", n)
		}
		if n := b.metric("consentcam_records"); n != 0 {
			t.Errorf("records = %v", n)
		}
		for _, ev := range b.events() {
			if !slices.Contains([]string{store.EventAgentStarted, store.EventNoticePublished, store.EventCheckpoint}, ev.Type) {
				t.Errorf("event %s before any token", ev.Type)
			}
		}
		entries, _ := os.ReadDir(b.state)
		want := []string{StoreFile, filepath.Base(store.NewDB(StoreFile).KeysPath())}
		if names := dirNames(entries); !slices.Equal(names, want) {
			t.Errorf("state dir holds %v, want only %v (the store and its key file)", names, want)
		}
		testenv.NoPlaintext(t, b.state)
	})

	t.Run("every refusal reason over MQTT", func(t *testing.T) {
		for _, c := range refusals(t, b) {
			b.sub.Publish("consent", c.token)
			ev := b.waitEvent("consent.rejected "+string(c.reason), func(ev store.Event) bool {
				return ev.Type == store.EventConsentRejected && ev.Reason == string(c.reason)
			})
			if c.visit != "" && ev.Visit != c.visit {
				t.Errorf("%s: visit %q, want %q (the signature verified)", c.reason, ev.Visit, c.visit)
			}
		}
		if code, _ := b.get("/healthz", ""); code != 200 {
			t.Errorf("healthz %d after the refusals", code)
		}
		if n := b.metric(`consentcam_consents_total{result="rejected"}`); n != 14 {
			t.Errorf("rejected consents = %v, want 14", n)
		}
	})

	var saved store.Event
	t.Run("consent: capture saved, readable for its purpose only", func(t *testing.T) {
		b.sub.Publish("consent", b.consentToken("visit-1", "subj-1", "channel-attribution"))
		saved = b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "visit-1"))
		recs := b.records("visit=visit-1")
		if len(recs) != 1 || recs[0].ID != saved.Record {
			t.Fatalf("records of visit-1: %+v, want %s", recs, saved.Record)
		}
		if recs[0].Detector != "yunet" || recs[0].Score < 0.8 || recs[0].Notice != b.notice {
			t.Errorf("record = %+v", recs[0])
		}
		code, img := b.get("/v1/records/"+saved.Record+"/image?purpose=channel-attribution", httpapi.RoleOperator)
		if code != 200 {
			t.Fatalf("image: %d %s", code, img)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
		if err != nil || cfg.Width >= 640 || cfg.Height >= 480 {
			t.Errorf("image %dx%d, %v: want a JPEG face crop", cfg.Width, cfg.Height, err)
		}
		if code, body := b.get("/v1/records/"+saved.Record+"/image?purpose=entry-security", httpapi.RoleOperator); code != http.StatusForbidden {
			t.Errorf("image for a purpose not consented: %d %s", code, body)
		}
		b.waitEvent("record.accessed", eventOf(store.EventRecordAccessed, "visit-1"))
		testenv.NoPlaintext(t, b.state, img)
	})

	t.Run("retention: a 2 s purpose expires by itself", func(t *testing.T) {
		b.sub.Publish("consent", b.consentToken("visit-2", "subj-2", "entry-security"))
		rec := b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "visit-2")).Record
		ev := b.waitEvent("record.expired", eventOf(store.EventRecordExpired, "visit-2"))
		if ev.Record != rec || ev.Detail["deleted"] != true {
			t.Errorf("record.expired = %+v", ev)
		}
		if code, _ := b.get("/v1/records/"+rec+"/image?purpose=entry-security", httpapi.RoleOperator); code != http.StatusNotFound {
			t.Errorf("expired record's image: %d, want 404", code)
		}
	})

	t.Run("revoke by subject and by visit", func(t *testing.T) {
		b.sub.Publish("consent", b.consentToken("visit-3", "subj-1", "channel-attribution", "entry-security"))
		b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "visit-3"))
		b.sub.Publish("consent", b.consentToken("visit-4", "subj-4", "channel-attribution"))
		rec4 := b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "visit-4")).Record

		b.sub.Publish("revoke", b.revokeToken("subject", "subj-1"))
		rc := b.receipt(1)
		if rc.Subject != "subj-1" || rc.Erased != 2 {
			t.Errorf("receipt = %+v, want subj-1 with 2 erased", rc)
		}
		var records []string
		for _, ev := range b.events() {
			if ev.Type == store.EventRecordErased && ev.Subject == "subj-1" {
				records = append(records, ev.Record)
			}
		}
		if len(records) != 2 || !slices.Contains(records, saved.Record) {
			t.Errorf("record.erased for %v", records)
		}
		if recs := b.records("subject=subj-1"); len(recs) != 0 {
			t.Errorf("subject's records after revoke: %+v", recs)
		}

		b.sub.Publish("revoke", b.revokeToken("visit", "visit-4"))
		rc = b.receipt(2)
		if rc.Visit != "visit-4" || rc.Erased != 1 {
			t.Errorf("receipt = %+v, want visit-4 with 1 erased", rc)
		}
		if code, _ := b.get("/v1/records/"+rec4+"/image?purpose=channel-attribution", httpapi.RoleOperator); code != http.StatusNotFound {
			t.Errorf("erased record's image: %d", code)
		}
		// The store is compacted after erasures.
		b.waitEvent("store.compacted", eventOf(store.EventStoreCompacted, ""))
	})

	t.Run("broker outage: every event arrives, in order", func(t *testing.T) {
		b.broker.Stop()
		for i := range 3 {
			visit := fmt.Sprintf("outage-%d", i)
			b.postVisit(b.consentToken(visit, "subj-o", "channel-attribution"))
			b.waitLogged(eventOf(store.EventCaptureSaved, visit))
		}
		b.broker.Start()
		n := uint64(len(b.events()))
		b.sub.WaitAudit(n, 60*time.Second)
		b.sub.CheckArrivalOrder()
	})

	t.Run("SIGKILL and restart: seq continues, the log verifies", func(t *testing.T) {
		b.postVisit(b.consentToken("killed", "subj-k", "channel-attribution"))
		before := len(b.events())
		b.stop(syscall.SIGKILL)
		b.waitAvailable("offline") // the broker's last will for the agent
		b.start()
		evs := b.events()
		for i, ev := range evs {
			if ev.Seq != uint64(i) {
				t.Fatalf("event %d has seq %d", i, ev.Seq)
			}
		}
		if len(evs) <= before {
			t.Fatalf("no events after restart")
		}
		// What the killed agent had not published yet goes out now.
		b.sub.WaitAudit(uint64(len(evs)), 30*time.Second)
		b.verifyPulledLog(t)
	})

	t.Run("a tampered log does not verify", func(t *testing.T) {
		log, cp := b.pull(t)
		lines := strings.SplitAfter(strings.TrimSuffix(log, "\n"), "\n")
		// The auditor's worry: a saved capture rewritten as a skipped one.
		altered := slices.Clone(lines)
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, `"type":"capture.saved"`) })
		if i < 0 {
			t.Fatal("test set-up: no capture.saved in the log")
		}
		altered[i] = strings.Replace(altered[i], `"type":"capture.saved"`, `"type":"capture.skipped"`, 1)
		for name, bad := range map[string]string{
			"altered event":  strings.Join(altered, ""),
			"removed event":  strings.Join(slices.Delete(slices.Clone(lines), 4, 5), ""),
			"truncated tail": strings.Join(lines[:len(lines)-3], ""),
		} {
			path := filepath.Join(t.TempDir(), "log.jsonl")
			os.WriteFile(path, []byte(bad), 0o644)
			out, err := runMain(t, "audit", "verify", "--pubkey", filepath.Join(b.keys, "device.pub"), "--checkpoint", cp, path)
			if err == nil {
				t.Errorf("%s: audit verify passed:\n%s", name, out)
			} else if (&Main{Stderr: &bytes.Buffer{}}).ExitCode(err) != 1 {
				t.Errorf("%s: exit code %d, want 1", name, (&Main{Stderr: &bytes.Buffer{}}).ExitCode(err))
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
	})

	t.Run("SIGTERM: clean stop", func(t *testing.T) {
		if code := b.stop(syscall.SIGTERM); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		b.waitAvailable("stopped")
		b.start()
		evs := b.events()
		var stoppedAt int = -1
		for i, ev := range evs {
			if ev.Type == store.EventAgentStopped {
				stoppedAt = i
			}
		}
		if stoppedAt < 0 || evs[stoppedAt+1].Type != store.EventCheckpoint {
			t.Errorf("no agent.stopped followed by a final checkpoint in the log")
		}
	})
}

// waitAvailable waits until the last message on …/available is state.
func (b *box) waitAvailable(state string) {
	b.t.Helper()
	last := func() string {
		avail := b.sub.WaitTopic("available", 1)
		return string(avail[len(avail)-1])
	}
	if !testenv.WaitUntil(15*time.Second, func() bool { return last() == state }) {
		b.t.Fatalf("…/available = %q, want %q", last(), state)
	}
}

func dirNames(entries []os.DirEntry) []string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// postVisit sends a consent token to POST /v1/visits as the kiosk.
func (b *box) postVisit(token []byte) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+b.httpAddr+"/v1/visits", bytes.NewReader(token))
	req.Header.Set("Authorization", "Bearer "+b.tokens[httpapi.RoleKiosk])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.t.Fatalf("POST /v1/visits: %s", resp.Status)
	}
}

// waitLogged waits for an event in the log served over HTTP (the bus may be
// down).
func (b *box) waitLogged(want func(store.Event) bool) {
	b.t.Helper()
	if !testenv.WaitUntil(30*time.Second, func() bool { return slices.ContainsFunc(b.events(), want) }) {
		b.t.Fatal("event not logged within 30s")
	}
}

// receipt waits for the n-th revoke receipt and verifies it with the device
// public key.
func (b *box) receipt(n int) *consent.Receipt {
	b.t.Helper()
	msgs := b.sub.WaitTopic("revoke/receipt", n)
	rc, err := consent.VerifyReceipt(b.device, msgs[n-1])
	if err != nil {
		b.t.Fatalf("receipt does not verify with device.pub: %v\n%s", err, msgs[n-1])
	}
	return rc
}

// pull runs audit pull and returns the log and the checkpoint file.
func (b *box) pull(t *testing.T) (log, checkpoint string) {
	t.Helper()
	tokenFile := filepath.Join(b.keys, httpapi.RoleAuditor+".token")
	checkpoint = filepath.Join(t.TempDir(), "checkpoint")
	out, err := runMain(t, "audit", "pull", "--url", "http://"+b.httpAddr, "--token-file", tokenFile, "--checkpoint", checkpoint)
	if err != nil {
		t.Fatalf("audit pull: %v\n%s", err, out)
	}
	return out, checkpoint
}

// verifyPulledLog pulls the log with the CLI and verifies it with the CLI.
func (b *box) verifyPulledLog(t *testing.T) {
	t.Helper()
	log, cp := b.pull(t)
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runMain(t, "audit", "verify", "--pubkey", filepath.Join(b.keys, "device.pub"), "--checkpoint", cp, path)
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if !strings.Contains(out, "OK") {
		t.Errorf("audit verify said:\n%s", out)
	}
}

type refusal struct {
	reason consent.Reason
	token  []byte
	visit  string // named in the event when the signature verified
}

// refusals builds one token per refusal reason of SPEC, each as a real
// mistake or attack.
func refusals(t *testing.T, b *box) []refusal {
	t.Helper()
	now := time.Now()
	base := consent.Consent{Issuer: "kiosk", Subject: "subj-r", Visit: "visit-r", Purposes: []string{"channel-attribution"},
		Notice: b.notice, Audience: consent.Audience(e2eSite, b.camera), IssuedAt: now, NotBefore: now, Expires: now.Add(5 * time.Minute)}
	sign := func(key ed25519.PrivateKey, kid string, f func(c *consent.Consent)) []byte {
		c := base
		if f != nil {
			f(&c)
		}
		tok, err := consent.SignConsent(key, kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(tok)
	}
	with := func(f func(c *consent.Consent)) []byte { return sign(b.issuer, "kiosk-1", f) }
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	forged := sign(stranger, "kiosk-1", nil)
	replayed := with(func(c *consent.Consent) { c.Visit = "visit-replayed" })

	rs := []refusal{
		{consent.ReasonMalformed, []byte("this is not a token"), ""},
		{consent.ReasonBadSignature, forged, ""},
		{consent.ReasonUnknownKey, sign(stranger, "kiosk-9", nil), ""},
		{consent.ReasonWrongType, b.revokeToken("subject", "subj-r"), ""},
		{consent.ReasonWrongAudience, with(func(c *consent.Consent) { c.Audience = consent.Audience("office-99", "") }), "visit-r"},
		{consent.ReasonExpired, with(func(c *consent.Consent) {
			c.IssuedAt, c.NotBefore, c.Expires = now.Add(-10*time.Minute), now.Add(-10*time.Minute), now.Add(-2*time.Minute)
		}), "visit-r"},
		{consent.ReasonNotYetValid, with(func(c *consent.Consent) { c.NotBefore = now.Add(5 * time.Minute) }), "visit-r"},
		{consent.ReasonLifetimeTooLong, with(func(c *consent.Consent) { c.Expires = now.Add(20 * time.Minute) }), "visit-r"},
		{consent.ReasonUnknownPurpose, with(func(c *consent.Consent) { c.Purposes = []string{"marketing"} }), "visit-r"},
		{consent.ReasonStaleNotice, with(func(c *consent.Consent) { c.Notice = strings.Repeat("ab", 32) }), "visit-r"},
		{consent.ReasonMissingClaim, with(func(c *consent.Consent) { c.Visit = "" }), ""},
		{consent.ReasonGuardianRequired, with(func(c *consent.Consent) { c.Minor = true }), "visit-r"},
		{consent.ReasonTooLarge, bytes.Repeat([]byte("e"), 9<<10), ""},
	}
	// The first use of this token is accepted (and runs a window); the
	// second is a replay.
	b.sub.Publish("consent", replayed)
	b.waitEvent("window.closed of the first use", eventOf(store.EventWindowClosed, "visit-replayed"))
	rs = append(rs, refusal{consent.ReasonReplayed, replayed, "visit-replayed"})
	return rs
}

// TestE2ETwoPeople runs a box whose camera shows two people in the zone: no
// window may save anything, and a revoke closes an open window at once.
func TestE2ETwoPeople(t *testing.T) {
	b := newBox(t, boxConfig{scene: "two-in-zone", window: 2 * time.Second})

	b.sub.Publish("consent", b.consentToken("visit-a", "subj-a", "channel-attribution"))
	ev := b.waitEvent("capture.skipped", eventOf(store.EventCaptureSkipped, "visit-a"))
	if ev.Reason != "multiple-faces" {
		t.Errorf("capture.skipped reason = %q, want multiple-faces", ev.Reason)
	}
	if n := b.metric("consentcam_frames_analyzed_total"); n == 0 {
		t.Error("the detector never ran during the window")
	}

	// A window of an hour would stay open: the revoke must close it.
	b.sub.Publish("consent", b.consentToken("visit-b", "subj-b", "channel-attribution"))
	b.waitEvent("window.opened", eventOf(store.EventWindowOpened, "visit-b"))
	b.sub.Publish("revoke", b.revokeToken("visit", "visit-b"))
	closed := b.waitEvent("window.closed", eventOf(store.EventWindowClosed, "visit-b"))
	if closed.Reason != "revoked" {
		t.Errorf("window.closed reason = %q, want revoked", closed.Reason)
	}
	if rc := b.receipt(1); rc.Visit != "visit-b" || rc.Erased != 0 {
		t.Errorf("receipt = %+v", rc)
	}
	for _, ev := range b.events() {
		if ev.Type == store.EventCaptureSaved {
			t.Errorf("capture saved with two people in view: %+v", ev)
		}
	}
	if n := b.metric("consentcam_records"); n != 0 {
		t.Errorf("records = %v", n)
	}
	testenv.NoPlaintext(t, b.state)
}
