package main

// Browser tests of the kiosk: Debian's chromium, headless, driven with
// chromedp against the real `consentcam run` of an end-to-end box (real
// Mosquitto, YuNet on the "visitor" clip), with axe-core (the npm package)
// injected to audit every page against WCAG 2.1 A and AA. With
// -screenshots DIR they also write the pictures of docs/KIOSK.md:
//
//	go test -run KioskBrowser ./cmd/consentcam -args -screenshots "$PWD/docs/screenshots"

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
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
	// audited counts the pages axe-core audited.
	audited int
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

// axeTags are the rules axe-core runs: WCAG 2.0 and 2.1, levels A and AA.
var axeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa"}

// axeViolation is one rule of axe-core the page breaks.
type axeViolation struct {
	ID, Impact, Help string
	Nodes            []string
}

// axeRun runs axe-core's WCAG 2.1 A and AA rules on the page as it is now
// (injecting axe-core first when the page has not got it), and returns how
// many rules passed and those that did not.
func (tb *tab) axeRun(source []byte) (int, []axeViolation) {
	tb.t.Helper()
	if !eval[bool](tb, `typeof axe === 'object'`) {
		eval[bool](tb, string(source)+"\n;true")
	}
	tags, _ := json.Marshal(axeTags)
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`axe.run(document, {runOnly: {type: 'tag', values: `+string(tags)+`}})
		.then((r) => ({passes: r.passes.length, violations: r.violations.map((v) => ({
			id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary)}))}))`, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("axe: %v", err)
	}
	var res struct {
		Passes     int
		Violations []axeViolation
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		tb.t.Fatal(err)
	}
	return res.Passes, res.Violations
}

// axe audits the page as it is now, in the language shown, and fails the
// test with each violation, or when no rule passed (axe did not look).
func (tb *tab) axe(what string, source []byte) {
	tb.t.Helper()
	passes, violations := tb.axeRun(source)
	lang := eval[string](tb, `document.documentElement.lang`)
	for _, v := range violations {
		tb.t.Errorf("axe: %s (%s): %s [%s] %s", what, lang, v.ID, v.Impact, v.Help)
		for _, n := range v.Nodes {
			tb.t.Logf("    %s", n)
		}
	}
	if passes == 0 {
		tb.t.Errorf("axe: %s (%s): no rule passed: axe did not look at the page", what, lang)
	}
	tb.audited++
}

// axeBoth audits the page in the language shown, switches to the other
// with the page's own button, audits it again and switches back.
func (tb *tab) axeBoth(what string, source []byte) {
	tb.t.Helper()
	first := eval[string](tb, `document.documentElement.lang`)
	tb.axe(what, source)
	tb.do(chromedp.Click(chromedp.ID("lang")))
	if got := eval[string](tb, `document.documentElement.lang`); got == first {
		tb.t.Fatalf("%s: the language switch left the page in %s", what, got)
	}
	tb.axe(what, source)
	tb.do(chromedp.Click(chromedp.ID("lang")))
}

// noOverflow fails the test when the page is wider than the viewport.
func (tb *tab) noOverflow(what string) {
	tb.t.Helper()
	if w, inner := eval[int](tb, `document.documentElement.scrollWidth`), eval[int](tb, `innerWidth`); w > inner {
		tb.t.Errorf("%s (%s) is %d px wide in a %d px viewport", what, eval[string](tb, `document.documentElement.lang`), w, inner)
	}
}

// visible reports whether the element with this id is shown.
func (tb *tab) visible(id string) bool {
	tb.t.Helper()
	return eval[bool](tb, `((e) => e !== null && e.offsetParent !== null)(document.getElementById(`+jsString(id)+`))`)
}

// jwtClaims decodes the claims of a compact JWT, unverified (the box has
// verified it).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %.40q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestKioskBrowser is visitors' ways through the kiosk in a real browser,
// on one box and one browser: the tablet is set up; the page opens in
// Chinese, the binding language, and switches to English; an adult agrees
// to one purpose of two and is saved under it only; a visitor under 14 with
// a guardian agrees (the token says minor and guardian), one without is
// refused with the reason and the alternative; another says no and is shown
// how the visit goes on; a forged code erases nothing, the receipt's code
// withdraws; an auditor watches it all. Every page is audited with axe-core
// in both languages, and checked at a phone's width and in large text.
func TestKioskBrowser(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor", kiosk: true})
	axeSource := testenv.Axe(t)
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
	const (
		loaded    = `document.querySelectorAll('input[name=purpose]').length === 2`
		channelZH = "了解您是通过哪个销售渠道来的"
		channelEN = "Tell which sales channel brought you"
		altZH     = "不拍照也可以：请到前台用名片登记来访。"
		altEN     = "Register at the front desk with your name card instead."
	)
	// answer picks the age answer, ticks the channel-attribution purpose by
	// pressing its words (the whole row is its label).
	answer := func(age string) {
		tb.do(chromedp.Click(chromedp.ID("age-" + age)))
		tb.do(chromedp.Click(chromedp.CSS(`label.purpose:has(input[value="channel-attribution"]) .purpose-name`)))
	}
	// finished waits until the page's visit is saved or skipped.
	finished := func() {
		tb.waitFor(`['saved', 'skipped'].includes(document.getElementById('status').dataset.state)`)
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
		tb.waitFor(loaded)
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

	step("中文 by default: the binding language, whatever the browser's", func(t *testing.T) {
		if got := eval[string](tb, `navigator.language`); !strings.HasPrefix(got, "en") {
			t.Fatalf("test set-up: the browser's language is %q, want English", got)
		}
		if got := eval[string](tb, `document.documentElement.lang`); got != "zh-CN" {
			t.Errorf("the page opens in %q, want zh-CN", got)
		}
		if got := tb.text("agree") + "|" + tb.text("decline"); got != "我同意|不用了，谢谢" {
			t.Errorf("buttons say %q", got)
		}
		body := eval[string](tb, `document.body.innerText`)
		for _, want := range []string{"示例地产有限公司", channelZH, "30天", "入口摄像头只在您同意后的3秒内拍照", altZH, "首先：访客是否未满14周岁？",
			"PIA-2025-014", "以简体中文文本为准"} {
			if !strings.Contains(body, want) {
				t.Errorf("the page does not say %q", want)
			}
		}
		for _, english := range []string{"I agree", "Example Realty", channelEN, "30 days", "Kept for"} {
			if strings.Contains(body, english) {
				t.Errorf("the Chinese page shows English %q", english)
			}
		}
		if got := eval[string](tb, `document.title`); got != "入口拍照：由您决定" {
			t.Errorf("title %q", got)
		}
		if !eval[bool](tb, `document.getElementById('purpose-set').disabled && document.getElementById('agree').disabled`) {
			t.Error("the purposes can be ticked before the visitor said whether they are under 14")
		}
		tb.shot("kiosk-notice.png")
	})

	step("axe-core finds what breaks WCAG: a field without a label, text without contrast", func(t *testing.T) {
		eval[bool](tb, `document.querySelector('main').append(Object.assign(document.createElement('input'), {type: 'text'}),
			Object.assign(document.createElement('p'), {textContent: 'faint', style: 'color: #c8c8c8'})), true`)
		_, violations := tb.axeRun(axeSource)
		var ids []string
		for _, v := range violations {
			ids = append(ids, v.ID)
		}
		if !slices.Contains(ids, "label") || !slices.Contains(ids, "color-contrast") {
			t.Errorf("axe found %v on a page with a field without a label and faint text", ids)
		}
		tb.open("/kiosk/")
		tb.waitFor(loaded)
	})

	step("axe-core: the kiosk's first page and its guardian step, in both languages", func(t *testing.T) {
		tb.axeBoth("/kiosk/", axeSource)
		tb.do(chromedp.Click(chromedp.ID("age-minor")))
		tb.waitFor(`!document.getElementById('guardian').hidden`)
		tb.axeBoth("/kiosk/ guardian step", axeSource)
		tb.open("/kiosk/")
		tb.waitFor(loaded)
	})

	step("375 px: no page is wider than a phone, in either language or in large text", func(t *testing.T) {
		tb.do(chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateMobile, chromedp.EmulateTouch))
		defer tb.do(chromedp.EmulateViewport(tabletWidth, tabletHeight))
		for _, path := range []string{"/kiosk/", "/kiosk/withdraw", "/kiosk/audit"} {
			tb.open(path)
			tb.waitFor(`document.readyState === 'complete'`)
			if path == "/kiosk/" {
				tb.waitFor(loaded)
				tb.do(chromedp.Click(chromedp.ID("age-minor"))) // the guardian's step too
			}
			for range 2 {
				tb.noOverflow(path)
				tb.do(chromedp.Click(chromedp.ID("size")))
				tb.noOverflow(path + " in large text")
				tb.do(chromedp.Click(chromedp.ID("size")), chromedp.Click(chromedp.ID("lang")))
			}
		}
		tb.open("/kiosk/")
		tb.waitFor(loaded)
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

	step("large text: one press, announced as pressed", func(t *testing.T) {
		base := eval[float64](tb, `parseFloat(getComputedStyle(document.getElementById('agree')).fontSize)`)
		tb.do(chromedp.Click(chromedp.ID("size")))
		if big := eval[float64](tb, `parseFloat(getComputedStyle(document.getElementById('agree')).fontSize)`); big < base*1.3 {
			t.Errorf("the buttons' text is %v px in large text, %v px before", big, base)
		}
		if got := eval[string](tb, `document.getElementById('size').getAttribute('aria-pressed')`); got != "true" {
			t.Errorf("aria-pressed = %q in large text", got)
		}
		tb.axe("/kiosk/ in large text", axeSource)
		tb.shot("kiosk-large.png")
		tb.do(chromedp.Click(chromedp.ID("size")))
	})

	var code, subject string
	step("English: one press; an adult agrees to one purpose of two and is saved under that purpose only", func(t *testing.T) {
		tb.do(chromedp.Click(chromedp.ID("lang")))
		if got := eval[string](tb, `document.documentElement.lang`); got != "en" {
			t.Fatalf("after the switch the page is in %q", got)
		}
		body := eval[string](tb, `document.body.innerText`)
		for _, want := range []string{"Example Realty Ltd.", channelEN, "30 days", "during the 3 seconds after you agree", altEN,
			"First: is the visitor under 14?", "the 简体中文 text binds"} {
			if !strings.Contains(body, want) {
				t.Errorf("the English page does not say %q", want)
			}
		}
		if strings.Contains(body, channelZH) || strings.Contains(body, "我同意") {
			t.Error("the English page shows Chinese")
		}
		if eval[int](tb, `document.querySelectorAll('input[name=purpose]:checked').length`) != 0 {
			t.Error("a purpose is ticked in advance")
		}
		answer("adult")
		if !eval[bool](tb, `document.querySelector('input[value="channel-attribution"]').checked && !document.getElementById('agree').disabled`) {
			t.Fatal(`pressing the purpose did not tick it and allow "I agree"`)
		}
		tb.shot("kiosk-en.png")

		tb.do(chromedp.Click(chromedp.ID("agree")))
		tb.waitFor(`!document.getElementById('visit').hidden`)
		code, subject = tb.text("code"), tb.text("subject")
		if len(strings.ReplaceAll(code, "-", "")) != 32 || !strings.HasPrefix(subject, "kiosk-") {
			t.Fatalf("receipt shows code %q, subject %q", code, subject)
		}
		if !eval[bool](tb, `document.querySelector('#qr svg path') !== null`) {
			t.Error("no QR code on the receipt")
		}
		if tb.visible("by-guardian") {
			t.Error("an adult's receipt says a guardian agreed")
		}
		tb.waitFor(`document.getElementById('status').dataset.state === 'saved'`)
		if got := tb.text("status"); !strings.Contains(got, "Saved") || !strings.Contains(got, channelEN) {
			t.Errorf("status says %q", got)
		}
		tb.axeBoth("/kiosk/ receipt", axeSource)
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
		if len(accepted) != 1 || accepted[0].Actor != "kiosk-1" || !slices.Equal(accepted[0].Purposes, []string{"channel-attribution"}) ||
			accepted[0].Detail["minor"] != false || accepted[0].Detail["guardian"] != false {
			t.Errorf("consent.accepted = %+v", accepted)
		}
		tb.do(chromedp.Click(chromedp.ID("done")))
		tb.waitFor(`!document.getElementById('start').hidden`)
		if got := eval[string](tb, `document.documentElement.lang`); got != "zh-CN" {
			t.Errorf("the next visitor gets the page in %q, want the binding zh-CN", got)
		}
	})

	step("a visitor under 14 with a guardian: the guardian confirms, the token says minor and guardian", func(t *testing.T) {
		answer("minor")
		if !tb.visible("guardian") {
			t.Fatal("no guardian step for a visitor under 14")
		}
		if !eval[bool](tb, `document.getElementById('agree').disabled`) {
			t.Error(`"I agree" can be pressed for a visitor under 14 before a guardian confirmed`)
		}
		tb.do(chromedp.Click(chromedp.ID("guardian-ok")))
		if eval[bool](tb, `document.getElementById('agree').disabled`) {
			t.Fatal(`"I agree" stays disabled once the guardian confirmed`)
		}
		tb.shot("kiosk-guardian.png")
		tb.do(chromedp.Click(chromedp.ID("agree")))
		tb.waitFor(`!document.getElementById('visit').hidden`)
		minor := tb.text("subject")
		if !tb.visible("by-guardian") {
			t.Error("the receipt does not say a guardian agreed")
		}
		finished()
		var accepted *store.Event
		for _, ev := range b.events() {
			if ev.Type == store.EventConsentAccepted && ev.Subject == minor {
				accepted = &ev
			}
		}
		if accepted == nil || accepted.Detail["minor"] != true || accepted.Detail["guardian"] != true {
			t.Fatalf("consent.accepted of the minor = %+v, want minor and guardian true", accepted)
		}
		code, body := b.get("/v1/audit/evidence?jti="+url.QueryEscape(fmt.Sprint(accepted.Detail["jti"])), httpapi.RoleAuditor)
		var ev store.Evidence
		if code != 200 || json.Unmarshal(body, &ev) != nil {
			t.Fatalf("evidence: %d %s", code, body)
		}
		if c := jwtClaims(t, ev.Token); c["minor"] != true || c["guardian"] != true || c["sub"] != minor {
			t.Errorf("the consent token's claims: %v", c)
		}
		tb.do(chromedp.Click(chromedp.ID("done")))
		tb.waitFor(`!document.getElementById('start').hidden`)
	})

	step("a visitor under 14 without a guardian: no token, and the page says why and how the visit goes on", func(t *testing.T) {
		before := len(b.decisions())
		tb.do(chromedp.Click(chromedp.ID("age-minor")))
		tb.do(chromedp.Click(chromedp.ID("no-guardian")))
		tb.waitFor(`!document.getElementById('no-consent').hidden`)
		got := tb.text("no-consent")
		for _, want := range []string{"不会拍照", "未满14周岁的访客，只有在父母或其他监护人当面代其同意时才能拍照", altZH} {
			if !strings.Contains(got, want) {
				t.Errorf("the page says %q, without %q", got, want)
			}
		}
		tb.axeBoth("/kiosk/ no guardian", axeSource)
		tb.do(chromedp.Click(chromedp.ID("lang")))
		if got := tb.text("no-consent"); !strings.Contains(got, "no consent was made") || !strings.Contains(got, altEN) {
			t.Errorf("in English the page says %q", got)
		}
		tb.shot("kiosk-no-guardian.png")
		evs := b.decisions()[before:]
		if len(evs) != 1 || evs[0].Type != store.EventConsentDeclined || evs[0].Reason != "guardian-required" ||
			evs[0].Subject != "" || evs[0].Visit != "" || evs[0].Purposes != nil {
			t.Errorf("logged %+v, want one consent.declined with reason guardian-required naming no one", evs)
		}
		tb.do(chromedp.Click(chromedp.ID("back-minor")))
		tb.waitFor(`!document.getElementById('start').hidden && document.documentElement.lang === 'zh-CN'`)
	})

	step("No thanks: thanked, shown how the visit goes on; the refusal audited, nothing else kept", func(t *testing.T) {
		before := len(b.decisions())
		records := b.metric("consentcam_records")
		tb.do(chromedp.Click(chromedp.ID("decline")))
		tb.waitFor(`!document.getElementById('declined').hidden`)
		if got := tb.text("declined"); !strings.Contains(got, "谢谢。我们不会为您拍照。") || !strings.Contains(got, altZH) {
			t.Errorf("the page says %q", got)
		}
		if !eval[bool](tb, `document.activeElement === document.getElementById('declined-title')`) {
			t.Error("the focus is not on the page's heading after No thanks")
		}
		tb.axeBoth("/kiosk/ declined", axeSource)
		tb.do(chromedp.Click(chromedp.ID("lang")))
		if got := tb.text("declined"); !strings.Contains(got, "Thank you. No picture will be taken.") || !strings.Contains(got, altEN) {
			t.Errorf("in English the page says %q", got)
		}
		tb.shot("kiosk-declined.png")
		evs := b.decisions()[before:]
		if len(evs) != 1 || evs[0].Type != store.EventConsentDeclined || evs[0].Actor != "kiosk-1" || evs[0].Reason != "" ||
			evs[0].Subject != "" || evs[0].Visit != "" || evs[0].Purposes != nil {
			t.Errorf("declining logged %+v, want one consent.declined naming no one", evs)
		}
		if n := b.metric("consentcam_records"); n != records {
			t.Errorf("records = %v, %v before", n, records)
		}
		tb.do(chromedp.Click(chromedp.ID("back")))
		tb.waitFor(`!document.getElementById('start').hidden && document.getElementById('declined').hidden`)
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
		tb.waitFor(`document.documentElement.lang === 'zh-CN'`)
		tb.axeBoth("/kiosk/withdraw", axeSource)
		tb.do(chromedp.Click(chromedp.ID("lang")))
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
		tb.axeBoth("/kiosk/withdraw done", axeSource)
		tb.shot("kiosk-withdrawn.png")
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
		tb.axeBoth("/kiosk/audit", axeSource)
		tb.shot("kiosk-audit.png")
	})

	step("the auditor's page asks again for a refused token, then shows each event once", func(t *testing.T) {
		size := len(b.events())
		eval[bool](tb, `token = 'not-an-auditor-token', true`) // as if the box's tokens had changed
		tb.waitFor(`!document.getElementById('login').hidden && !document.getElementById('error').hidden`)
		tb.axeBoth("/kiosk/audit sign-in", axeSource)
		t.Logf("axe-core %s audited %d pages and states: no WCAG 2.1 A or AA violation", testenv.AxeVersion, tb.audited)
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

// decisions is the log without the agent's bookkeeping (checkpoints,
// compactions).
func (b *box) decisions() []store.Event {
	return slices.DeleteFunc(b.events(), func(ev store.Event) bool {
		return ev.Type == store.EventCheckpoint || ev.Type == store.EventStoreCompacted
	})
}
