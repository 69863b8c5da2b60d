package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// signConsent signs a consent token for the box in-process (the CLI does
// the same; a load generator needs many).
func (b *box) signConsent(visit, subject string) []byte {
	b.t.Helper()
	now := time.Now()
	tok, err := consent.SignConsent(b.issuer, "kiosk-1", consent.Consent{
		Issuer: "kiosk", Subject: subject, Visit: visit, Purposes: []string{"channel-attribution"}, Notice: b.notice,
		Audience: consent.Audience(e2eSite, e2eCamera), IssuedAt: now, NotBefore: now, Expires: now.Add(10 * time.Minute),
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return []byte(tok)
}

// signRevoke signs a revoke command for a subject and returns it with its
// request id.
func (b *box) signRevoke(subject string) (token []byte, jti string) {
	b.t.Helper()
	now := time.Now()
	jti = store.NewID()
	tok, err := consent.SignRevoke(b.operator, "ops-1", consent.Revoke{
		Issuer: "front-desk", JTI: jti, Subject: subject, Reason: "visitor withdrew",
		Audience: consent.Audience(e2eSite, e2eCamera), IssuedAt: now, Expires: now.Add(10 * time.Minute),
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return []byte(tok), jti
}

// allEvents pulls the whole log over HTTP, page by page.
func (b *box) allEvents() []store.Event {
	b.t.Helper()
	var evs []store.Event
	for {
		path := "/v1/audit?limit=10000"
		if len(evs) > 0 {
			path += fmt.Sprintf("&after=%d", evs[len(evs)-1].Seq)
		}
		code, body := b.get(path, "auditor")
		if code != 200 {
			b.t.Fatalf("GET %s: %d %s", path, code, body)
		}
		page := 0
		for _, line := range splitLines(body) {
			var ev store.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				b.t.Fatalf("audit line %q: %v", line, err)
			}
			evs = append(evs, ev)
			page++
		}
		if page < 10000 {
			return evs
		}
	}
}

// outcomesByVisit maps every visit with a consent.accepted to the types and
// reasons of its outcomes (capture.saved, capture.skipped), in log order.
func outcomesByVisit(evs []store.Event) map[string][]string {
	out := map[string][]string{}
	for _, ev := range evs {
		switch ev.Type {
		case store.EventConsentAccepted:
			if _, ok := out[ev.Visit]; !ok {
				out[ev.Visit] = []string{}
			}
		case store.EventCaptureSaved:
			out[ev.Visit] = append(out[ev.Visit], "saved")
		case store.EventCaptureSkipped:
			out[ev.Visit] = append(out[ev.Visit], "skipped:"+ev.Reason)
		}
	}
	return out
}

// A crash while a window is open and consents wait: at the next start each
// of them gets its outcome, capture.skipped with reason interrupted (and
// the open window its window.closed), and nothing else.
func TestE2EInterruptedBySIGKILL(t *testing.T) {
	b := newBox(t, boxConfig{scene: "nobody", window: time.Hour})
	visits := []string{"v-open", "v-wait-1", "v-wait-2"}
	for _, v := range visits {
		b.postVisit(b.consentToken(v, "s-"+v, "channel-attribution"))
	}
	b.waitLogged(eventOf(store.EventWindowOpened, "v-open"))
	b.stop(syscall.SIGKILL)
	b.start()

	evs := b.allEvents()
	got := outcomesByVisit(evs)
	for _, v := range visits {
		if !slices.Equal(got[v], []string{"skipped:" + agent.ReasonInterrupted}) {
			t.Errorf("%s: outcomes %v, want one capture.skipped interrupted", v, got[v])
		}
	}
	closed := slices.IndexFunc(evs, eventOf(store.EventWindowClosed, "v-open"))
	if closed < 0 || evs[closed].Reason != agent.ReasonInterrupted {
		t.Error("the open window has no window.closed interrupted")
	}
	b.verifyPulledLog(t)
}

// Crash loop: the daemon is killed with SIGKILL again and again (50 times)
// while consents and revokes keep arriving over MQTT. Afterwards a
// persistent subscriber has every seq, in order; every accepted consent has
// exactly one outcome; every revoke has its receipt, verified with the
// device key; and the log verifies. Its figures are in docs/RELIABILITY.md.
func TestE2ECrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash loop takes minutes: run without -short (make test does)")
	}
	const cycles = 50
	b := newBox(t, boxConfig{scene: "visitor", window: time.Second})

	// The load: consents and revokes published without pause, whether the
	// agent runs or not; the broker keeps them for its session.
	var (
		mu       sync.Mutex
		consents []string            // visits published
		revokes  = map[string]bool{} // request ids published
		stop     = make(chan struct{})
		loadDone = make(chan struct{})
	)
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			subject := fmt.Sprintf("s-%d", i%12)
			if i%4 == 3 {
				tok, jti := b.signRevoke(fmt.Sprintf("s-%d", rand.IntN(12)))
				b.sub.Publish("revoke", tok)
				mu.Lock()
				revokes[jti] = true
				mu.Unlock()
				continue
			}
			visit := fmt.Sprintf("v-%d", i)
			b.sub.Publish("consent", b.signConsent(visit, subject))
			mu.Lock()
			consents = append(consents, visit)
			mu.Unlock()
		}
	}()

	start := time.Now()
	for range cycles {
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		b.stop(syscall.SIGKILL)
		b.start()
	}
	close(stop)
	<-loadDone
	crashTime := time.Since(start)

	// Let the last run handle everything published.
	receipts := func() map[string]*consent.Receipt {
		out := map[string]*consent.Receipt{}
		for _, msg := range b.sub.WaitTopic("revoke/receipt", 0) {
			rc, err := consent.VerifyReceipt(b.device, msg)
			if err != nil {
				t.Fatalf("a receipt that does not verify with device.pub: %v", err)
			}
			out[rc.Request] = rc
		}
		return out
	}
	handled := func() bool {
		decided := map[string]bool{}
		for _, ev := range b.allEvents() {
			if ev.Type == store.EventConsentAccepted || ev.Type == store.EventConsentRejected {
				decided[ev.Visit] = true
			}
		}
		rcs := receipts()
		for _, v := range consents {
			if !decided[v] {
				return false
			}
		}
		for jti := range revokes {
			if rcs[jti] == nil {
				return false
			}
		}
		return true
	}
	if !testenv.WaitUntil(2*time.Minute, handled) {
		t.Fatal("the consents and revokes published were not all handled 2 minutes after the last crash")
	}
	// Every window that could open has closed.
	evs := b.allEvents()
	if !testenv.WaitUntil(time.Minute, func() bool {
		evs = b.allEvents()
		for _, o := range outcomesByVisit(evs) {
			if len(o) == 0 {
				return false
			}
		}
		return true
	}) {
		t.Error("accepted consents still without outcome a minute after the load stopped")
	}

	reasons := map[string]int{}
	accepted := 0
	for v, o := range outcomesByVisit(evs) {
		accepted++
		if len(o) != 1 {
			t.Errorf("visit %s: outcomes %v, want exactly one", v, o)
		}
		for _, r := range o {
			reasons[r]++
		}
	}
	rcs := receipts()
	for jti := range revokes {
		if rcs[jti] == nil {
			t.Errorf("revoke %s has no receipt", jti)
		}
	}
	b.sub.WaitAudit(uint64(len(evs)), time.Minute)
	b.sub.CheckArrivalOrder()
	b.verifyPulledLog(t)
	t.Logf("%d SIGKILL cycles in %v: %d consents published, %d accepted (outcomes %v), %d revokes, all with a receipt; %d events, every seq delivered in order; the log verifies",
		cycles, crashTime.Round(time.Second), len(consents), accepted, reasons, len(revokes), len(evs))
}

// splitLines splits JSON Lines.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}
