package audit_test

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/store"
)

// TestHTMLReport: the page stands alone (no script, nothing fetched), and
// shows the verdicts, the counts and every violation.
func TestHTMLReport(t *testing.T) {
	b := audittest.NewBox(t)
	lawfulWeek(b)
	var pass bytes.Buffer
	if err := mustCheck(t, b.WriteBundle()).WriteHTML(&pass); err != nil {
		t.Fatal(err)
	}
	b.Start()
	v := b.Visit(audittest.Minor(false))
	b.Append(&store.Event{Type: store.EventRecordAccessed, Record: v.Record, Visit: v.Visit, Subject: v.Subject,
		Purposes: []string{security}, Actor: "operator"})
	b.Advance(time.Hour)
	b.Stop()
	var fail bytes.Buffer
	if err := mustCheck(t, b.WriteBundle()).WriteHTML(&fail); err != nil {
		t.Fatal(err)
	}
	external := regexp.MustCompile(`(?i)<script|<link|<img|<iframe|\b(src|href)=|url\(|@import`)
	for name, page := range map[string]string{"passing": pass.String(), "failing": fail.String()} {
		if m := external.FindString(page); m != "" {
			t.Errorf("%s page: %q: the page must stand alone", name, m)
		}
	}
	for _, want := range []string{
		`<span id="verdict" class="verdict PASS">PASS</span>`,
		`id="count-asked">6<`, `id="count-accepted">5<`, `id="count-declined">1<`,
		`id="count-agreed-channel-attribution">5<`, `id="count-saved">4<`,
		`id="count-reads-entry-security">1<`, `id="no-violations"`,
	} {
		if !strings.Contains(pass.String(), want) {
			t.Errorf("passing page lacks %s", want)
		}
	}
	for _, want := range []string{
		`class="verdict FAIL">FAIL</span> rules 3, 6 are broken`,
		`<tr id="rule-3"><td class="n">3</td><td>No consent of a minor without a guardian</td><td class="v FAIL">FAIL</td>`,
		`consent of a minor (visit ` + v.Visit + `) accepted without a guardian`,
		`read of record ` + v.Record + `: the record is not tagged for &#34;entry-security&#34;`,
	} {
		if !strings.Contains(fail.String(), want) {
			t.Errorf("failing page lacks %s", want)
		}
	}
}
