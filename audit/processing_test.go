package audit_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/store"
)

// The record of processing of a period counts what the log shows in it,
// and nothing before or after; what is kept is taken at its end.
func TestProcessing_KnownCounts(t *testing.T) {
	box, from, to := audittest.PeriodBox(t)
	b, err := audit.Open(box.WriteBundle())
	if err != nil {
		t.Fatal(err)
	}
	made := time.Date(2026, 3, 6, 9, 0, 0, 0, time.UTC)
	p, err := audit.NewProcessing(b, audit.Options{From: from, To: to}, made)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Counts
	for name, tt := range map[string]struct{ got, want int }{
		"asked":                 {c.Asked, 6},
		"agreed":                {c.Agreed, 4},
		"minors with guardian":  {c.MinorsWithGuardian, 1},
		"declined":              {c.Declined, 2},
		"declined, no guardian": {c.DeclinedNoGuardian, 1},
		"captures":              {c.Captures, 3},
		"accesses refused":      {c.AccessesRefused, 1},
		"revokes":               {c.Revokes, 1},
		"records at the end":    {p.AtEnd.Records, 3},
		"subjects at the end":   {p.AtEnd.SubjectsStored, 3},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", name, tt.got, tt.want)
		}
	}
	for name, tt := range map[string]struct{ got, want map[string]int }{
		"skipped":  {c.Skipped, map[string]int{"multiple-faces": 1}},
		"erasures": {c.Erasures, map[string]int{"revoked: visitor withdrew": 1, "retention ended": 1}},
		"accesses": {c.Accesses, map[string]int{audittest.PurposeChannel: 1}},
		"refused":  {c.TokensRefused, map[string]int{}},
	} {
		if !maps.Equal(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", name, tt.got, tt.want)
		}
	}
	agreed := map[string]int{}
	for _, pp := range p.Purposes {
		agreed[pp.ID] = pp.Agreed
		if pp.LegalBasis == "" || pp.Description["zh-CN"] == "" {
			t.Errorf("purpose %+v: no legal basis or description", pp)
		}
	}
	if want := map[string]int{audittest.PurposeChannel: 3, audittest.PurposeSecurity: 2}; !maps.Equal(agreed, want) {
		t.Errorf("agreed by purpose %v, want %v", agreed, want)
	}
	if p.Compliance == nil || p.Compliance.PIAReference != "PIA-2025-014" || p.Controller["zh-CN"] != "示例地产有限公司" || p.Language != "zh-CN" {
		t.Errorf("processor: controller %v, compliance %+v, language %q", p.Controller, p.Compliance, p.Language)
	}
	if len(p.Log.RulesBroken) != 0 {
		t.Errorf("rules broken: %v", p.Log.RulesBroken)
	}
	if f := p.Filing; f.Status != "below" || len(f.Crossed) != 0 || !strings.Contains(f.Note, "3 people") {
		t.Errorf("filing = %+v, want below", f)
	}

	var js bytes.Buffer
	if err := p.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back["format"] != audit.ProcessingFormat || back["at_end"].(map[string]any)["subjects_stored"] != 3.0 {
		t.Errorf("JSON: %s", js.String())
	}
	var md bytes.Buffer
	if err := p.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Record of processing: office-07/entrance-1, 2026-03-03 to 2026-03-04",
		"| **People whose face data is stored** (distinct subjects) | **3** |", "| Visitors asked (answers given) | 6 |",
		"PIA-2025-014", "示例地产有限公司 / Example Realty Ltd. (en)", "below the filing threshold of 100,000"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown without %q:\n%s", want, md.String())
		}
	}

	// The whole log, by the same counter: the period's counts are a part.
	all, err := audit.NewProcessing(b, audit.Options{From: from.Add(-48 * time.Hour), To: to.Add(48 * time.Hour)}, made)
	if err != nil {
		t.Fatal(err)
	}
	if all.Counts.Asked != 11 || all.Counts.Captures != 6 || all.AtEnd.SubjectsStored != 4 {
		t.Errorf("whole log: asked %d, captures %d, subjects %d; want 11, 6, 4", all.Counts.Asked, all.Counts.Captures, all.AtEnd.SubjectsStored)
	}
	if _, err := audit.NewProcessing(b, audit.Options{From: to, To: from}, made); err == nil {
		t.Error("a period that ends before it starts is taken")
	}
}

func TestProcessing_FilingStatus(t *testing.T) {
	box := audittest.NewBox(t)
	box.Start()
	box.Visit()
	box.Append(&store.Event{Type: store.EventFilingThreshold, Actor: "agent", Detail: map[string]any{"threshold": 80000, "subjects": 80000}})
	box.Advance(time.Minute)
	box.Append(&store.Event{Type: store.EventFilingThreshold, Actor: "agent", Detail: map[string]any{"threshold": 100000, "subjects": 100000}})
	box.Stop()
	b, err := audit.Open(box.WriteBundle())
	if err != nil {
		t.Fatal(err)
	}
	from := audittest.Epoch.Truncate(24 * time.Hour)
	p, err := audit.NewProcessing(b, audit.Options{From: from, To: from.Add(24 * time.Hour)}, audittest.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if p.Filing.Status != "file" || len(p.Filing.Crossed) != 2 || !strings.Contains(p.Filing.Note, "within 30 working days") ||
		!strings.Contains(p.Filing.Note, "first reached 100,000") {
		t.Errorf("filing = %+v", p.Filing)
	}
	// Between the two crossings: prepare.
	mid, err := audit.NewProcessing(b, audit.Options{From: from, To: p.Filing.Crossed[1].Time}, audittest.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if mid.Filing.Status != "prepare" || len(mid.Filing.Crossed) != 1 || !strings.Contains(mid.Filing.Note, "first reached 80,000") {
		t.Errorf("filing between the crossings = %+v", mid.Filing)
	}
	// Before the threshold was reached, the period says below.
	early, err := audit.NewProcessing(b, audit.Options{From: from, To: audittest.Epoch.Add(time.Second)}, audittest.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if early.Filing.Status != "below" || len(early.Filing.Crossed) != 0 {
		t.Errorf("filing before the crossings = %+v", early.Filing)
	}
}
