package fleet

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseEvent: whatever arrives on …/audit, the parser never panics,
// and what it accepts is exactly the bytes of the event it returns.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"seq":0,"time":"2026-03-02T08:00:00Z","type":"agent.started","site":"office-07","camera":"entrance-1","actor":"agent","detail":{"version":"dev"}}`))
	f.Add([]byte(`{"seq":3,"time":"2026-03-02T08:00:00.123Z","type":"consent.declined","site":"a","camera":"b","visit":"v"}`))
	f.Add([]byte(`{"seq":1,"time":"2026-03-02T08:00:00+01:00","type":"checkpoint","site":"a","camera":"b","detail":{"size":1}}`))
	f.Add([]byte(`{not json`))
	f.Fuzz(func(t *testing.T, p []byte) {
		ev, err := parseEvent(p)
		if err != nil {
			return
		}
		again, err := json.Marshal(ev)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("accepted %q, which is not the event's form %q", p, again)
		}
	})
}
