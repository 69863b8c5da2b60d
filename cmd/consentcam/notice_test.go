package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/gowebpki/jcs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/consentcam -run Notice -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./cmd/consentcam -run Notice -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// The notice a kiosk receives, and its hash, are part of the contract with
// kiosks written by others: any change to them is visible here.
func TestNotice_Golden(t *testing.T) {
	config := filepath.Join("testdata", "notice.yaml")
	notice, stderr, code := runArgs(t, "notice", "--config", config)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden(t, "notice.golden.json", notice)
	hash, stderr, code := runArgs(t, "notice", "--config", config, "--hash")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden(t, "notice.golden.hash", hash)

	// The hash is what SPEC says, recomputed from the printed JSON with any
	// JSON library: without hash, canonical (RFC 8785), SHA-256, hex.
	var m map[string]any
	if err := json.Unmarshal([]byte(notice), &m); err != nil {
		t.Fatal(err)
	}
	if got, want := m["hash"], strings.TrimSpace(hash); got != want {
		t.Errorf("the notice carries hash %v, notice --hash prints %v", got, want)
	}
	delete(m, "hash")
	unsigned, _ := json.Marshal(m)
	canon, err := jcs.Transform(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canon)
	if got, want := strings.TrimSpace(hash), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("notice --hash = %s, recomputed %s", got, want)
	}
}

func TestNoticeFromConfig(t *testing.T) {
	n := testNotice(t)
	if !strings.Contains(n.Method["en"], "20 seconds") || !strings.Contains(n.Method["zh-CN"], "20秒") {
		t.Errorf("method %v does not give the capture window of the configuration", n.Method)
	}
	want := consent.Notice{Language: "zh-CN", Languages: []string{"zh-CN", "en"}, Site: "office-07", Camera: "entrance-1",
		Controller: consent.Text{"zh-CN": "示例地产有限公司", "en": "Example Realty Ltd."},
		Contact:    consent.Same("privacy@example.com, +86 10 5555 0100"),
		Withdraw:   consent.Text{"zh-CN": "请到前台办理，或扫描收据上的二维码。", "en": "Ask the front desk, or scan the code on your receipt."},
		Alternative: consent.Text{"zh-CN": "不拍照也可以：请到前台用名片登记来访。",
			"en": "Register at the front desk with your name card instead."},
	}
	if n.Language != want.Language || !slices.Equal(n.Languages, want.Languages) || n.Site != want.Site || n.Camera != want.Camera ||
		!n.Controller.Equal(want.Controller) || !n.Contact.Equal(want.Contact) || !n.Withdraw.Equal(want.Withdraw) ||
		!n.Alternative.Equal(want.Alternative) {
		t.Errorf("notice = %+v\nwant %+v", n, want)
	}
	if c := n.Compliance; c == nil || c.PIAReference != "PIA-2025-014" || c.PIADate != "2025-05-20" ||
		c.DPOContact["en"] != "Data protection officer Ms Wang, dpo@example.com" {
		t.Errorf("compliance = %+v", c)
	}
	if len(n.Purposes) != 2 {
		t.Fatalf("purposes = %+v", n.Purposes)
	}
	if p := n.Purposes[1]; p.ID != "entry-security" ||
		!p.Description.Equal(consent.Text{"zh-CN": "保障入口安全：谁在何时进入", "en": "Keep the entrance safe: who came in, and when"}) ||
		!p.Retention.Equal(consent.Text{"zh-CN": "1天12小时", "en": "1 day and 12 hours"}) || p.RetentionSeconds != 36*3600 {
		t.Errorf("purpose = %+v", p)
	}

	cfg, err := ReadConfigFile(filepath.Join("testdata", "notice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Capture.Window = 30 * time.Second
	if noticeFromConfig(cfg).Hash() == n.Hash() {
		t.Error("a longer capture window leaves the notice hash unchanged")
	}
}

func TestNotice_BadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("site: office-07\ncamera: entrance-1\nnotise: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runArgs(t, "notice", "--config", path)
	if code != 1 || !strings.Contains(stderr, "notise: unknown key") || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and an error naming the key", code, stdout, stderr)
	}
	_, stderr, code = runArgs(t, "notice", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}
