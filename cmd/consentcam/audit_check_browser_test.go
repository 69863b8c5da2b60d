package main

// The HTML report of audit check in Debian's chromium, as a regulator opens
// it. With -screenshots DIR it writes the picture of docs/AUDIT.md:
//
//	go test -run AuditReportBrowser ./cmd/consentcam -args -screenshots "$PWD/docs/screenshots"

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/store"
)

// TestAuditReportBrowser checks a box that broke two rules among lawful
// visits, writes the report and reads it in a browser: the verdict, the
// counts and the violations are there, nothing is fetched.
func TestAuditReportBrowser(t *testing.T) {
	b := audittest.NewBox(t)
	b.Start()
	for range 3 {
		v := b.Visit(audittest.Purposes(audittest.PurposeChannel, audittest.PurposeSecurity))
		b.Advance(7 * time.Minute)
		b.Read(v, audittest.PurposeChannel)
	}
	b.Decline()
	nf := b.Accept()
	b.Open(nf)
	b.Skip(nf, "multiple-faces")
	w := b.Visit()
	b.Advance(10 * time.Minute)
	b.Revoke(w.Subject, "", "visitor withdrew")
	m := b.Visit(audittest.Minor(false))
	b.Append(&store.Event{Type: store.EventRecordAccessed, Record: m.Record, Visit: m.Visit, Subject: m.Subject,
		Purposes: []string{audittest.PurposeSecurity}, Actor: "operator"})
	b.Advance(26 * time.Hour)
	b.Stop()
	bundle := b.WriteBundle()

	report := filepath.Join(t.TempDir(), "report.html")
	_, stderr, code := runArgs(t, "audit", "check", bundle, "--report", report)
	if code != 1 || !strings.Contains(stderr, "rules 3, 6 broken") {
		t.Fatalf("exit %d, stderr %s; want 1 and rules 3, 6 broken", code, stderr)
	}

	tb := newBrowserTab(t, "file://"+filepath.Dir(report))
	tb.open("/" + filepath.Base(report))
	tb.waitFor(`document.readyState === "complete"`)
	for id, want := range map[string]string{
		"verdict":                          "FAIL",
		"count-asked":                      "7",
		"count-accepted":                   "6",
		"count-declined":                   "1",
		"count-agreed-channel-attribution": "6",
		"count-agreed-entry-security":      "3",
		"count-saved":                      "5",
		"count-skipped-multiple-faces":     "1",
		"count-erased":                     "1", // the revoke; the entry-security tags expired, the records stay
		"count-reads-channel-attribution":  "3",
		"count-reads-entry-security":       "1",
		"count-revokes":                    "1",
		"count-minors":                     "0", // the minor's consent had no guardian
		"count-subjects":                   "4", // the three visits and the minor's; the revoked visitor's is gone
	} {
		if got := tb.text(id); got != want {
			t.Errorf("#%s shows %q, want %q", id, got, want)
		}
	}
	for _, rule := range []string{"rule-3", "rule-6"} {
		if got := tb.text(rule); !strings.Contains(got, "FAIL") {
			t.Errorf("#%s: %q, want FAIL", rule, got)
		}
	}
	if got := tb.text("violations"); !strings.Contains(got, "accepted without a guardian") || !strings.Contains(got, m.Record) {
		t.Errorf("violations table: %q", got)
	}
	if n := eval[int](tb, `performance.getEntriesByType("resource").length`); n != 0 {
		t.Errorf("the page fetched %d resources", n)
	}
	if *screenshots != "" {
		if err := os.MkdirAll(*screenshots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tb.shot("audit-report.png")
}
