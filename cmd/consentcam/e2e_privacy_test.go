package main

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// sweepUserAgent is the User-Agent of the privacy sweep's requests: the
// box must keep it nowhere.
const sweepUserAgent = "Mozilla/5.0 (Linux; Android 14; front-desk tablet) consentcam-privacy-sweep/1"

// TestE2EPrivacySweep makes every kind of decision the box records, on one
// box (real daemon, Mosquitto, YuNet, the kiosk): every refusal reason of a
// consent (too-large included) and a refused revoke, captures over MQTT,
// HTTP and the kiosk, image reads (one refused), an expiry, a kiosk
// decline and withdrawal, revokes by subject and by visit. Then it scans
// every event of the pulled log and every message that arrived on
// PREFIX/# for what SPEC keeps out of them (testenv.Private: JPEG data,
// tokens and their segments, withdrawal codes, IP addresses, the
// client's User-Agent), checks each event's detail keys against
// store.DetailKeys, and that the topics seen are exactly those of SPEC's
// table, the agent publishing nothing on the two it reads.
func TestE2EPrivacySweep(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor", kiosk: true})
	var priv testenv.Private
	for role, tok := range b.tokens {
		priv.AddString("the "+role+" bearer token", tok)
	}
	priv.AddString("the client's User-Agent", sweepUserAgent)
	priv.AddString("the client's User-Agent", "Go-http-client/") // that of box.get
	sent := map[string]bool{}                                    // topic + payload
	publish := func(topic string, payload []byte) {
		t.Helper()
		b.sub.Publish(topic, payload)
		sent[topic+"\x00"+string(payload)] = true
		priv.AddToken(string(payload))
	}

	// Every refusal reason; refusals publishes the replayed token's first
	// use itself.
	rs := refusals(t, b)
	for _, c := range rs {
		publish("consent", c.token)
		b.waitEvent("consent.rejected "+string(c.reason), func(ev store.Event) bool {
			return ev.Type == store.EventConsentRejected && ev.Reason == string(c.reason)
		})
	}
	publish("revoke", b.consentToken("visit-wrong", "subj-wrong", "channel-attribution"))
	b.waitEvent("revoke.rejected", eventOf(store.EventRevokeRejected, ""))

	// Captures over MQTT and HTTP, image reads.
	publish("consent", b.consentToken("visit-1", "subj-1", "channel-attribution"))
	rec1 := b.waitEvent("capture.saved over MQTT", eventOf(store.EventCaptureSaved, "visit-1")).Record
	tok3 := b.consentToken("visit-3", "subj-3", "channel-attribution")
	priv.AddToken(string(tok3))
	b.postVisit(tok3)
	b.waitEvent("capture.saved over HTTP", eventOf(store.EventCaptureSaved, "visit-3"))
	code, img := sweepDo(t, b, "GET", "/v1/records/"+rec1+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil)
	if code != http.StatusOK || !bytes.HasPrefix(img, []byte{0xFF, 0xD8, 0xFF}) {
		t.Fatalf("image: %d, %d bytes", code, len(img))
	}
	priv.AddImage(img)
	if code, _ := sweepDo(t, b, "GET", "/v1/records/"+rec1+"/image?purpose=entry-security", httpapi.RoleOperator, nil); code != http.StatusForbidden {
		t.Errorf("image for a purpose not consented: %d", code)
	}

	// An expiry (entry-security is kept 2 s).
	publish("consent", b.consentToken("visit-2", "subj-2", "entry-security"))
	b.waitEvent("record.expired", eventOf(store.EventRecordExpired, "visit-2"))

	// The kiosk: agree (a capture, its image read), decline, withdraw.
	body, _ := json.Marshal(map[string]any{"purposes": []string{"channel-attribution"}, "notice": b.notice})
	code, data := sweepDo(t, b, "POST", "/kiosk/api/agree", httpapi.RoleKiosk, body)
	var ag httpapi.KioskAgreement
	if code != http.StatusAccepted || json.Unmarshal(data, &ag) != nil {
		t.Fatalf("kiosk agree: %d %s", code, data)
	}
	priv.AddCode(ag.Code)
	kioskRec := b.waitEvent("capture.saved at the kiosk", eventOf(store.EventCaptureSaved, ag.Visit)).Record
	if code, img := sweepDo(t, b, "GET", "/v1/records/"+kioskRec+"/image?purpose=channel-attribution", httpapi.RoleOperator, nil); code != http.StatusOK {
		t.Fatalf("kiosk visit's image: %d", code)
	} else {
		priv.AddImage(img)
	}
	if code, data := sweepDo(t, b, "POST", "/kiosk/api/decline", httpapi.RoleKiosk, nil); code != http.StatusOK {
		t.Fatalf("kiosk decline: %d %s", code, data)
	}
	body, _ = json.Marshal(map[string]string{"code": ag.Code})
	if code, data := sweepDo(t, b, "POST", "/kiosk/api/withdraw", "", body); code != http.StatusOK {
		t.Fatalf("kiosk withdraw: %d %s", code, data)
	}

	// Revokes by subject and by visit.
	publish("revoke", b.revokeToken("subject", "subj-1"))
	if rc := b.receipt(1); rc.Subject != "subj-1" || rc.Erased != 1 {
		t.Errorf("receipt %+v", rc)
	}
	publish("revoke", b.revokeToken("visit", "visit-3"))
	if rc := b.receipt(2); rc.Visit != "visit-3" || rc.Erased != 1 {
		t.Errorf("receipt %+v", rc)
	}

	// Everything is covered by a checkpoint and has arrived on the bus.
	last := b.events()
	lastSeq := last[len(last)-1].Seq
	b.waitEvent("a checkpoint after the sweep", func(ev store.Event) bool { return ev.Type == store.EventCheckpoint && ev.Seq > lastSeq })
	log, _ := b.pull(t)
	lines := bytes.Split(bytes.TrimSpace([]byte(log)), []byte("\n"))
	b.sub.WaitAudit(uint64(len(lines)), 30*time.Second)

	types := map[string]bool{}
	for _, line := range lines {
		var ev store.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("pulled line %q: %v", line, err)
		}
		types[ev.Type] = true
		if err := testenv.CheckDetail(store.DetailKeys, line); err != nil {
			t.Error(err)
		}
		for _, leak := range priv.Leaks(line) {
			t.Errorf("the log holds %s\nin %s", leak, line)
		}
	}
	for _, typ := range []string{store.EventConsentAccepted, store.EventConsentRejected, store.EventRevokeRejected, store.EventConsentDeclined,
		store.EventCaptureSaved, store.EventRecordAccessed, store.EventRecordExpired, store.EventRecordErased, store.EventConsentRevoked} {
		if !types[typ] {
			t.Errorf("test set-up: no %s in the log, so it was not checked", typ)
		}
	}

	msgs := b.sub.Messages()
	if got, want := slices.Sorted(maps.Keys(msgs)), slices.Sorted(slices.Values(testenv.SpecTopics)); !slices.Equal(got, want) {
		t.Errorf("topics seen below %s: %v; want exactly those of SPEC %v", b.prefix(), got, want)
	}
	for topic, payloads := range msgs {
		for _, m := range payloads {
			if slices.Contains(testenv.InTopics, topic) {
				if !sent[topic+"\x00"+string(m)] {
					t.Errorf("…/%s carried a message the test did not send: %.200q", topic, m)
				}
				continue
			}
			for _, leak := range priv.Leaks(m) {
				t.Errorf("…/%s carried %s", topic, leak)
			}
		}
	}
}

// sweepDo sends an HTTP request as the sweep's client (its own
// User-Agent), with the bearer token of role ("" for none).
func sweepDo(t *testing.T, b *box, method, path, role string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+b.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", sweepUserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+b.tokens[role])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}
