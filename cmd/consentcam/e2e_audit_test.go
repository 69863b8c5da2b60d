package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/store"
)

// pullBundle runs audit pull --bundle as an auditor and returns the bundle's
// directory.
func (b *box) pullBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	out, err := runMain(t, "audit", "pull", "--url", "http://"+b.httpAddr,
		"--token-file", filepath.Join(b.keys, httpapi.RoleAuditor+".token"), "--bundle", dir)
	if err != nil {
		t.Fatalf("audit pull --bundle: %v\n%s", err, out)
	}
	return dir
}

// The auditor's whole path against a running box: consents, captures, image
// reads (one refused), a revoke, an expiry; audit pull --bundle, then audit
// check passes every rule, and its report, opened in Chromium, shows the
// counts.
func TestE2EAuditBundle(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor"})
	b.postVisit(b.consentToken("v-1", "s-1", "channel-attribution", "entry-security"))
	rec1 := b.waitEvent("capture.saved of v-1", eventOf(store.EventCaptureSaved, "v-1")).Record
	b.postVisit(b.consentToken("v-2", "s-2", "channel-attribution"))
	b.waitEvent("capture.saved of v-2", eventOf(store.EventCaptureSaved, "v-2"))
	if code, body := b.get("/v1/records/"+rec1+"/image?purpose=channel-attribution", httpapi.RoleOperator); code != 200 {
		t.Fatalf("read: %d %s", code, body)
	}
	if code, _ := b.get("/v1/records/"+rec1+"/image?purpose=marketing", httpapi.RoleOperator); code != 403 {
		t.Fatalf("a read for a purpose not agreed: %d, want 403", code)
	}
	b.sub.Publish("revoke", b.revokeToken("subject", "s-2"))
	b.receipt(1)
	// entry-security (2 s) expires; the sweep drops the tag.
	b.waitEvent("record.expired", eventOf(store.EventRecordExpired, "v-1"))
	time.Sleep(2500 * time.Millisecond) // a checkpoint covers it all (checkpoint_interval 2s)

	bundle := b.pullBundle(t)
	report := filepath.Join(t.TempDir(), "report.html")
	stdout, stderr, code := runArgs(t, "audit", "check", bundle, "--report", report,
		"--pubkey", filepath.Join(b.keys, "device.pub"))
	if code != 0 {
		t.Fatalf("audit check: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "PASS") {
		t.Errorf("audit check said:\n%s", stdout)
	}

	// The record of processing of the hour, pulled from the box itself.
	now := time.Now().UTC()
	stdout, stderr, code = runArgs(t, "report", "processing", "--url", "http://"+b.httpAddr,
		"--token-file", filepath.Join(b.keys, httpapi.RoleAuditor+".token"),
		"--from", now.Add(-time.Hour).Format(time.RFC3339), "--to", now.Add(time.Hour).Format(time.RFC3339), "--format", "json")
	if code != 0 {
		t.Fatalf("report processing: exit %d\n%s", code, stderr)
	}
	var rec audit.Processing
	if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
		t.Fatalf("report processing: %v\n%s", err, stdout)
	}
	c := rec.Counts
	if c.Asked != 2 || c.Agreed != 2 || c.Captures != 2 || c.Revokes != 1 || c.AccessesRefused != 1 ||
		!maps.Equal(c.Accesses, map[string]int{"channel-attribution": 1}) ||
		!maps.Equal(c.Erasures, map[string]int{"revoked: visitor withdrew": 1}) ||
		rec.AtEnd.Records != 1 || rec.AtEnd.SubjectsStored != 1 || rec.Source != "http://"+b.httpAddr {
		t.Errorf("record of processing: %s", stdout)
	}
	if got := b.metric("consentcam_subjects_stored"); got != 1 {
		t.Errorf("consentcam_subjects_stored = %v, the record says 1", got)
	}

	tb := newBrowserTab(t, "file://"+filepath.Dir(report))
	tb.open("/" + filepath.Base(report))
	tb.waitFor(`document.readyState === "complete"`)
	for id, want := range map[string]string{
		"verdict":                         "PASS",
		"count-accepted":                  "2",
		"count-saved":                     "2",
		"count-erased":                    "1",
		"count-reads-channel-attribution": "1",
		"count-revokes":                   "1",
	} {
		if got := tb.text(id); got != want {
			t.Errorf("report #%s shows %q, want %q", id, got, want)
		}
	}
}

// A box made to break a rule for real: entry-security is kept 2 s but the
// sweep runs once an hour, so the record outlives its retention, and audit
// check says rule 4 is broken, naming the record's event.
func TestE2EAuditRuleBroken(t *testing.T) {
	b := newBox(t, boxConfig{scene: "visitor", sweep: time.Hour})
	b.postVisit(b.consentToken("v-1", "s-1", "entry-security"))
	saved := b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, "v-1"))
	// The deadline is twice the retention plus the tolerance (5 s) after the
	// capture; a running box is judged when the bundle is made, less the
	// tolerance again.
	time.Sleep(2*2*time.Second + 2*5*time.Second + 2500*time.Millisecond)

	bundle := b.pullBundle(t)
	stdout, stderr, code := runArgs(t, "audit", "check", bundle)
	if code != 1 {
		t.Fatalf("audit check: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if rule, ok := strings.CutPrefix(line, "rule "); ok {
			if want := strings.HasPrefix(rule, "4 "); want != strings.Contains(line, "FAIL") {
				t.Errorf("%q: want rule 4, and only rule 4, to fail\n%s", line, stdout)
			}
		}
	}
	if !strings.Contains(stdout, "FAIL: rules 4 broken") || !strings.Contains(stdout, fmt.Sprint(saved.Seq)) {
		t.Errorf("audit check does not name rule 4 and capture.saved's seq %d:\n%s", saved.Seq, stdout)
	}
}
