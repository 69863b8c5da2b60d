package main

// Browser tests of the kiosk: Debian's chromium, headless, driven with
// chromedp against the real `consentcam run` of an end-to-end box (real
// Mosquitto, YuNet on the "visitor" clip). With -screenshots DIR they also
// write the pictures of docs/KIOSK.md:
//
//	go test -run KioskBrowser ./cmd/consentcam -args -screenshots "$PWD/docs/screenshots"

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

var screenshots = flag.String("screenshots", "", "write PNGs of the kiosk's pages into this `directory`")

// Viewports: the front-desk tablet (portrait) and a phone.
const (
	tabletWidth, tabletHeight = 820, 1180
	phoneWidth, phoneHeight   = 375, 740
)

// tab is a browser tab on a box.
type tab struct {
	t   *testing.T
	ctx context.Context
	url string // the box's base URL
}

// newTab starts Debian's chromium, headless with a fresh profile, and opens
// a tab on a box.
func newTab(t *testing.T, b *box) *tab {
	t.Helper()
	return newBrowserTab(t, "http://"+b.httpAddr)
}

// newBrowserTab starts Debian's chromium, headless with a fresh profile, and
// opens a tab whose pages are under url.
func newBrowserTab(t *testing.T, url string) *tab {
	t.Helper()
	exe := testenv.Program(t, "chromium")
	profile, err := os.MkdirTemp("", "consentcam-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(profile),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		// The browser's helpers may still write there for a moment.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// The first action starts the browser, which lives as long as the
	// context it is given: not one with a deadline.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(tabletWidth, tabletHeight)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, url: url}
}

// do runs actions, failing the test after a generous minute.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is true.
func (tb *tab) waitFor(expr string) {
	tb.t.Helper()
	tb.do(chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(45*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// open loads a page of the box.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.url + path))
}

// text is the visible text of the element with this id.
func (tb *tab) text(id string) string {
	tb.t.Helper()
	return eval[string](tb, `document.getElementById(`+jsString(id)+`).innerText`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// shot writes a PNG of the whole page into the -screenshots directory.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// decisions is the log without the agent's bookkeeping (checkpoints,
// compactions).
func (b *box) decisions() []store.Event {
	return slices.DeleteFunc(b.events(), func(ev store.Event) bool {
		return ev.Type == store.EventCheckpoint || ev.Type == store.EventStoreCompacted
	})
}

// TestKioskBrowser is a visitor's way through the kiosk in a real browser:
// the tablet is set up, a visitor agrees to one purpose of two and is saved
// under it only, a forged code erases nothing, the receipt's code withdraws,
// another visitor says no, and an auditor watches it all. It also checks
// the pages at a phone's width.
func TestKioskBrowser(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor", kiosk: true})
	tb := newTab(t, b)
	if *screenshots != "" {
		if err := os.MkdirAll(*screenshots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) { tb.t = t; f(t) }) {
			t.FailNow() // the next steps build on this one
		}
	}

	step("the installer sets the tablet up through its form: the token is in no address", func(t *testing.T) {
		var mu sync.Mutex
		var addresses []string // every address a frame went to, fragment included
		ctx, stop := context.WithCancel(tb.ctx)
		defer stop()
		chromedp.Listen(ctx, func(ev any) {
			mu.Lock()
			defer mu.Unlock()
			switch e := ev.(type) {
			case *page.EventFrameNavigated:
				addresses = append(addresses, e.Frame.URL+e.Frame.URLFragment)
			case *page.EventNavigatedWithinDocument:
				addresses = append(addresses, e.URL)
			}
		})
		tb.open("/kiosk/")
		tb.waitFor(`!document.getElementById('setup').hidden`)
		tb.do(chromedp.Click(chromedp.CSS("#setup summary")),
			chromedp.SendKeys(chromedp.ID("setup-token"), b.tokens[httpapi.RoleKiosk]),
			chromedp.Click(chromedp.CSS("#setup-form button")))
		tb.waitFor(`!document.getElementById('choice').hidden && document.getElementById('setup').hidden`)
		if got := eval[string](tb, `localStorage.getItem('consentcam.kiosk-token')`); got != b.tokens[httpapi.RoleKiosk] {
			t.Errorf("stored token %q", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(addresses) == 0 {
			t.Fatal("test set-up: no navigation seen")
		}
		for _, a := range addresses {
			if strings.Contains(a, b.tokens[httpapi.RoleKiosk]) {
				t.Errorf("the token was in an address the browser went to: %s", a)
			}
		}
	})

	step("a #token= link works too, and leaves the address bar", func(t *testing.T) {
		tb.open("/kiosk/withdraw") // from another page: a change of fragment alone loads nothing
		tb.open("/kiosk/#token=" + b.tokens[httpapi.RoleKiosk])
		tb.waitFor(`document.querySelectorAll('input[name=purpose]').length === 2`)
		if href := eval[string](tb, `location.href`); strings.Contains(href, "token") {
			t.Errorf("the address still holds the token: %s", href)
		}
		if got := eval[string](tb, `localStorage.getItem('consentcam.kiosk-token')`); got != b.tokens[httpapi.RoleKiosk] {
			t.Errorf("stored token %q", got)
		}
		if eval[bool](tb, `document.getElementById('choice').hidden || !document.getElementById('setup').hidden`) {
			t.Error("the tablet shows the set-up message, not the choice")
		}
		if strings.Contains(eval[string](tb, `document.body.innerText`), b.tokens[httpapi.RoleKiosk]) {
			t.Error("the page shows the token")
		}
	})

	step("phone width: no horizontal scrolling, both answers as large", func(t *testing.T) {
		tb.do(chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateMobile, chromedp.EmulateTouch))
		defer tb.do(chromedp.EmulateViewport(tabletWidth, tabletHeight))
		for _, path := range []string{"/kiosk/", "/kiosk/withdraw", "/kiosk/audit"} {
			tb.open(path)
			tb.waitFor(`document.readyState === 'complete'`)
			if path == "/kiosk/" {
				tb.waitFor(`document.querySelectorAll('input[name=purpose]').length === 2`)
			}
			if w, inner := eval[int](tb, `document.documentElement.scrollWidth`), eval[int](tb, `innerWidth`); w > inner {
				t.Errorf("%s is %d px wide in a %d px viewport", path, w, inner)
			}
		}
		tb.open("/kiosk/")
		tb.waitFor(`document.querySelectorAll('input[name=purpose]').length === 2`)
		var boxes map[string]struct{ Left, Right, Width, Height float64 }
		raw := eval[[]byte](tb, `Object.fromEntries(['agree', 'decline'].map((id) => {
			const r = document.getElementById(id).getBoundingClientRect();
			return [id, {Left: r.left, Right: r.right, Width: r.width, Height: r.height}];
		}))`)
		if err := json.Unmarshal(raw, &boxes); err != nil {
			t.Fatal(err)
		}
		agree, decline := boxes["agree"], boxes["decline"]
		for name, r := range boxes {
			if r.Width < 200 || r.Height < 48 || r.Left < 0 || r.Right > phoneWidth {
				t.Errorf("%s button at %+v: want at least 200x48 inside the %d px width", name, r, phoneWidth)
			}
		}
		if agree.Width != decline.Width || agree.Height != decline.Height {
			t.Errorf("I agree is %vx%v, No thanks %vx%v: they must be as large", agree.Width, agree.Height, decline.Width, decline.Height)
		}
		tb.shot("kiosk-phone.png")
	})

	var code, subject string
	step("agree to one purpose of two: saved under that purpose only", func(t *testing.T) {
		tb.open("/kiosk/")
		tb.waitFor(`document.querySelectorAll('input[name=purpose]').length === 2`)
		if eval[int](tb, `document.querySelectorAll('input[name=purpose]:checked').length`) != 0 {
			t.Error("a purpose is ticked in advance")
		}
		if !eval[bool](tb, `document.getElementById('agree').disabled`) {
			t.Error(`"I agree" can be pressed with no purpose ticked`)
		}
		// Tick by pressing the purpose's words: the whole row is its label.
		tb.do(chromedp.Click(chromedp.CSS(`label.purpose:has(input[value="channel-attribution"]) .purpose-name`)))
		if !eval[bool](tb, `document.querySelector('input[value="channel-attribution"]').checked && !document.getElementById('agree').disabled`) {
			t.Fatal(`pressing the purpose did not tick it and allow "I agree"`)
		}
		tb.shot("kiosk-notice.png")

		tb.do(chromedp.Click(chromedp.ID("agree")))
		tb.waitFor(`!document.getElementById('visit').hidden`)
		code, subject = tb.text("code"), tb.text("subject")
		if len(strings.ReplaceAll(code, "-", "")) != 32 || !strings.HasPrefix(subject, "kiosk-") {
			t.Fatalf("receipt shows code %q, subject %q", code, subject)
		}
		if !eval[bool](tb, `document.querySelector('#qr svg path') !== null`) {
			t.Error("no QR code on the receipt")
		}
		tb.waitFor(`document.getElementById('status').dataset.state === 'saved'`)
		if got := tb.text("status"); !strings.Contains(got, "Saved") || !strings.Contains(got, "Tell which sales channel brought you") {
			t.Errorf("status says %q", got)
		}
		tb.shot("kiosk-saved.png")

		recs := b.records("subject=" + subject)
		if len(recs) != 1 || len(recs[0].Purposes) != 1 || recs[0].Purposes[0].Purpose != "channel-attribution" {
			t.Fatalf("records of %s = %+v, want one tagged channel-attribution only", subject, recs)
		}
		var accepted []store.Event
		for _, ev := range b.events() {
			if ev.Type == store.EventConsentAccepted && ev.Subject == subject {
				accepted = append(accepted, ev)
			}
		}
		if len(accepted) != 1 || accepted[0].Actor != "kiosk-1" || !slices.Equal(accepted[0].Purposes, []string{"channel-attribution"}) {
			t.Errorf("consent.accepted = %+v", accepted)
		}
	})

	step("a forged or mangled code erases nothing", func(t *testing.T) {
		before := len(b.decisions())
		plain := []byte(strings.ReplaceAll(code, "-", ""))
		plain[len(plain)-1] = map[bool]byte{true: '1', false: '0'}[plain[len(plain)-1] == '0']
		for _, bad := range []string{string(plain), strings.Repeat("0", 32), subject} {
			body, _ := json.Marshal(map[string]string{"code": bad})
			resp, err := http.Post(tb.url+"/kiosk/api/withdraw", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error, Reason string }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || e.Reason != "bad-code" {
				t.Errorf("code %q: %s %+v, want 400 bad-code", bad, resp.Status, e)
			}
		}
		if len(b.records("subject="+subject)) != 1 {
			t.Error("a bad code erased the record")
		}
		if evs := b.decisions(); len(evs) != before {
			t.Errorf("bad codes were acted on: %+v", evs[before:])
		}
	})

	step("withdraw with the receipt's code: records erased, receipt shown", func(t *testing.T) {
		// As the receipt's QR code does: the code in the address.
		tb.open("/kiosk/withdraw#code=" + code)
		if got := eval[string](tb, `document.getElementById('code').value`); got != code {
			t.Fatalf("code field holds %q, want %q", got, code)
		}
		if href := eval[string](tb, `location.href`); strings.Contains(href, "code=") {
			t.Errorf("the address still holds the code: %s", href)
		}
		tb.do(chromedp.Click(chromedp.ID("submit")))
		tb.waitFor(`!document.getElementById('done').hidden`)
		if got := tb.text("erased"); !strings.Contains(got, "erased 1 picture") {
			t.Errorf("the page says %q, want that 1 picture was erased", got)
		}
		rc, err := consent.VerifyReceipt(b.device, []byte(eval[string](tb, `document.getElementById('receipt').textContent`)))
		if err != nil {
			t.Fatalf("the receipt on the page does not verify with device.pub: %v", err)
		}
		if rc.Subject != subject || rc.Erased != 1 || tb.text("subject") != subject {
			t.Errorf("receipt %+v for %s", rc, subject)
		}
		if recs := b.records("subject=" + subject); len(recs) != 0 {
			t.Errorf("%d records left after withdrawing", len(recs))
		}
		tb.do(chromedp.Click(chromedp.CSS("#done summary")))
		tb.shot("kiosk-withdrawn.png")
	})

	step("decline: thanked, the refusal audited, nothing else kept", func(t *testing.T) {
		before := len(b.decisions())
		tb.open("/kiosk/")
		tb.waitFor(`document.querySelectorAll('input[name=purpose]').length === 2`)
		tb.do(chromedp.Click(chromedp.ID("decline")))
		tb.waitFor(`!document.getElementById('declined').hidden`)
		if got := tb.text("declined"); !strings.Contains(got, "Thank you. No picture will be taken.") {
			t.Errorf("the page says %q", got)
		}
		tb.shot("kiosk-declined.png")
		evs := b.decisions()[before:]
		if len(evs) != 1 || evs[0].Type != store.EventConsentDeclined || evs[0].Actor != "kiosk-1" ||
			evs[0].Subject != "" || evs[0].Visit != "" || evs[0].Purposes != nil {
			t.Errorf("declining logged %+v, want one consent.declined naming no one", evs)
		}
		if n := b.metric("consentcam_records"); n != 0 {
			t.Errorf("records = %v", n)
		}
		tb.do(chromedp.Click(chromedp.ID("back")))
		tb.waitFor(`!document.getElementById('start').hidden && document.getElementById('declined').hidden`)
	})

	step("中文: one press switches the page to Chinese", func(t *testing.T) {
		tb.do(chromedp.Click(chromedp.ID("lang")))
		if got := tb.text("agree") + "|" + tb.text("decline"); got != "我同意|不用了，谢谢" {
			t.Errorf("buttons say %q", got)
		}
		tb.shot("kiosk-zh.png")
		tb.do(chromedp.Click(chromedp.ID("lang")))
		if got := tb.text("agree"); got != "I agree" {
			t.Errorf("back in English, the button says %q", got)
		}
	})

	step("the auditor's page shows the live log and the checkpoint", func(t *testing.T) {
		tb.do(chromedp.EmulateViewport(1280, 900))
		tb.open("/kiosk/audit#token=" + b.tokens[httpapi.RoleAuditor])
		tb.waitFor(`document.querySelector('tr[data-type="consent.declined"]') !== null`)
		tb.waitFor(`document.getElementById('checkpoint').textContent.startsWith('consentcam/office-07/entrance-1\n')`)
		if href := eval[string](tb, `location.href`); strings.Contains(href, "token") {
			t.Errorf("the address still holds the token: %s", href)
		}
		for _, typ := range []string{store.EventConsentAccepted, store.EventCaptureSaved, store.EventConsentRevoked, store.EventRecordErased} {
			if !eval[bool](tb, `document.querySelector('tr[data-type="`+typ+`"]') !== null`) {
				t.Errorf("no %s row", typ)
			}
		}
		tb.shot("kiosk-audit.png")
	})

	step("the auditor's page asks again for a refused token, then shows each event once", func(t *testing.T) {
		size := len(b.events())
		eval[bool](tb, `token = 'not-an-auditor-token', true`) // as if the box's tokens had changed
		tb.waitFor(`!document.getElementById('login').hidden && !document.getElementById('error').hidden`)
		tb.do(chromedp.SendKeys(chromedp.ID("token"), b.tokens[httpapi.RoleAuditor]), chromedp.Click(chromedp.CSS("#login button")))
		// An event made since (a refused token), and the checkpoint after
		// it (every 2 s), are shown: so are the events before them.
		b.sub.Publish("consent", []byte("not a token"))
		seqs := `[...document.querySelectorAll('#events tbody td:first-child')].map((td) => Number(td.textContent))`
		tb.waitFor(fmt.Sprintf(`%s.some((seq) => seq >= %d)`, seqs, size))
		if dup := eval[int](tb, fmt.Sprintf(`((s) => s.length - new Set(s).size)(%s)`, seqs)); dup != 0 {
			t.Errorf("%d events shown twice after signing in again", dup)
		}
	})
}
