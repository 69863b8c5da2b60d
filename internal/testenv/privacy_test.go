package testenv_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

func smallJPEG(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 32, 32)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Each kind of leak is found in an event as the agent would write it.
func TestPrivateFinds(t *testing.T) {
	img := smallJPEG(t)
	tok := "eyJhbGciOiJFZERTQSIsImtpZCI6Imtpb3NrLTEiLCJ0eXAiOiJjb25zZW50K2p3dCJ9." +
		"eyJzdWIiOiJzdWJqLTEiLCJ2aXNpdCI6InZpc2l0LTEifQ." +
		"c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmUtc2lnbmF0dXJlLWJ5dGVz"
	segs := strings.Split(tok, ".")
	var p testenv.Private
	p.AddToken("secret-bearer-token-0123456789")
	p.AddCode("ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789")
	p.AddString("the client's User-Agent", "Mozilla/5.0 (tablet)")
	other := make([]byte, 96)
	rand.Read(other)
	p.AddImage(other)

	escaped, _ := json.Marshal(map[string]string{"x": base64.StdEncoding.EncodeToString(img)})
	escaped = bytes.ReplaceAll(escaped, []byte("/"), []byte(`\/`))
	for name, payload := range map[string]string{
		"raw JPEG":                  `{"detail":{"x":"` + string(img[:20]) + `"}}`,
		"base64 JPEG":               `{"detail":{"image":"` + base64.StdEncoding.EncodeToString(img) + `"}}`,
		"base64url JPEG":            `{"detail":{"image":"` + base64.RawURLEncoding.EncodeToString(img) + `"}}`,
		"data URL":                  `{"detail":{"image":"data:image/jpeg;base64,` + base64.StdEncoding.EncodeToString(img) + `"}}`,
		"JSON-escaped base64 JPEG":  string(escaped),
		"JWT":                       `{"detail":{"token":"` + tok + `"}}`,
		"JWT claims segment":        `{"detail":{"claims":"` + segs[1] + `"}}`,
		"JWT header segment":        `{"reason":"` + segs[0] + `"}`,
		"IPv4 with port":            `{"actor":"kiosk 127.0.0.1:54321"}`,
		"IPv4 alone":                `{"detail":{"ip":"10.0.0.7"}}`,
		"IPv6 loopback in brackets": `{"detail":{"remote":"[::1]:8765"}}`,
		"IPv6 link-local":           `{"detail":{"ip":"fe80::1c2f:9ff:fe00:1"}}`,
		"IPv4-mapped IPv6":          `{"detail":{"ip":"::ffff:192.168.1.20"}}`,
		"bearer token":              `{"detail":{"auth":"Bearer secret-bearer-token-0123456789"}}`,
		"code as typed":             `{"detail":{"code":"abcd-efgh-jkmn-pqrs-tvwx-yz01-2345-6789"}}`,
		"code without dashes":       `{"detail":{"code":"ABCDEFGHJKMNPQRSTVWXYZ0123456789"}}`,
		"tag half of a code":        `{"detail":{"tag":"TVWXYZ0123456789"}}`,
		"User-Agent":                `{"detail":{"ua":"Mozilla/5.0 (tablet)"}}`,
		"image bytes in hex":        fmt.Sprintf(`{"detail":{"x":"%x"}}`, other),
		"image bytes in base64":     `{"detail":{"x":"` + base64.StdEncoding.EncodeToString(other) + `"}}`,
	} {
		if got := p.Leaks([]byte(payload)); len(got) == 0 {
			t.Errorf("%s: nothing found in %s", name, payload)
		}
	}
}

// What events and the bus do carry is not taken for a leak: timestamps,
// scores, boxes, hashes, and checkpoints whose base64 root or signature
// happens to start like a JPEG or a JWT segment.
func TestPrivateIgnores(t *testing.T) {
	var p testenv.Private
	p.AddToken("secret-bearer-token-0123456789")
	root := func(prefix []byte) string {
		b := make([]byte, 32)
		rand.Read(b)
		copy(b, prefix)
		return base64.StdEncoding.EncodeToString(b)
	}
	sig := func(prefix []byte) string {
		b := make([]byte, 68)
		rand.Read(b)
		copy(b, prefix)
		return base64.StdEncoding.EncodeToString(b)
	}
	for i := range 200 {
		for _, prefix := range [][]byte{{0xFF, 0xD8, 0xFF}, {0xFB, 0xFF, 0xBF}, {'{', '"'}, nil} {
			r := root(prefix)
			note := fmt.Sprintf("consentcam/office-07/entrance-1\n%d\n%s\n\n— consentcam/office-07/entrance-1 %s\n", i, r, sig(prefix))
			ev, _ := json.Marshal(map[string]any{
				"seq": i, "time": "2026-05-04T10:11:12.345Z", "type": "checkpoint", "site": "office-07", "camera": "entrance-1",
				"actor": "agent", "detail": map[string]any{"size": i, "root": r, "note": note},
			})
			if got := p.Leaks(ev); len(got) != 0 {
				t.Fatalf("a checkpoint taken for a leak: %v\n%s", got, ev)
			}
		}
	}
	for _, payload := range []string{
		`{"seq":3,"time":"2026-05-04T23:59:59.999Z","type":"capture.saved","record":"0196a1b2c3d4e5f6","detail":{"box":[240,120,160,160],"detector":"yunet","expires":{"channel-attribution":"2026-06-03T10:11:12Z"},"score":0.9512345}}`,
		`{"type":"window.opened","detail":{"window":"1m0.5s"}}`,
		`{"type":"notice.published","detail":{"hash":"ffd8ffdb0084000102030405060708090a0b0c0d0e0f101112131415161718ab"}}`,
		`{"type":"agent.started","detail":{"version":"v1.2.3-4-gabcdef0","detector":"yunet"}}`,
		`online`,
	} {
		if got := p.Leaks([]byte(payload)); len(got) != 0 {
			t.Errorf("%s taken for a leak: %v", payload, got)
		}
	}
}

func TestCheckDetail(t *testing.T) {
	allow := map[string][]string{"capture.saved": {"box", "score"}, "agent.stopped": nil}
	for _, tc := range []struct {
		event string
		ok    bool
	}{
		{`{"seq":1,"type":"capture.saved","detail":{"box":[1,2,3,4],"score":0.9}}`, true},
		{`{"seq":1,"type":"agent.stopped"}`, true},
		{`{"seq":1,"type":"capture.saved","detail":{"box":[1,2,3,4],"image":"…"}}`, false},
		{`{"seq":1,"type":"agent.stopped","detail":{"why":"x"}}`, false},
		{`{"seq":1,"type":"capture.uploaded"}`, false},
	} {
		if err := testenv.CheckDetail(allow, []byte(tc.event)); (err == nil) != tc.ok {
			t.Errorf("CheckDetail(%s) = %v, want ok %v", tc.event, err, tc.ok)
		}
	}
}

// SpecTopics and InTopics are SPEC's MQTT table, no more, no less.
func TestSpecTopicsAreSpecs(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "..", "docs", "SPEC.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(spec), "\n## MQTT\n")
	if !ok {
		t.Fatal("SPEC.md has no MQTT section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var topics, in []string
	for _, m := range regexp.MustCompile("(?m)^\\| `…/([a-z/]+)` \\| (in|out) \\|").FindAllStringSubmatch(table, -1) {
		topics = append(topics, m[1])
		if m[2] == "in" {
			in = append(in, m[1])
		}
	}
	if len(topics) == 0 {
		t.Fatal("no topic found in SPEC.md's MQTT table")
	}
	if got, want := slices.Sorted(slices.Values(testenv.SpecTopics)), slices.Sorted(slices.Values(topics)); !slices.Equal(got, want) {
		t.Errorf("SpecTopics = %v, SPEC's table has %v", got, want)
	}
	if got, want := slices.Sorted(slices.Values(testenv.InTopics)), slices.Sorted(slices.Values(in)); !slices.Equal(got, want) {
		t.Errorf("InTopics = %v, SPEC's table has %v in", got, want)
	}
}
