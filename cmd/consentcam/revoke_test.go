package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// TestRevokeSite runs a site of three cameras (three `consentcam run`
// processes sharing one real Mosquitto, the site's issuer and operator
// keys, each its own device key) and the operator's `consentcam revoke`.
func TestRevokeSite(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	first := newBox(t, boxConfig{scene: "visitor", camera: "entrance-1", broker: broker})
	second := newBox(t, boxConfig{scene: "visitor", camera: "entrance-2", broker: broker, siteKeys: first.keys})
	lobby := newBox(t, boxConfig{scene: "visitor", camera: "lobby", broker: broker, siteKeys: first.keys})

	// The operator's directory of the cameras' device keys.
	keysDir := t.TempDir()
	devicePub := func(b *box) string { return filepath.Join(b.keys, "device.pub") }
	install := func(camera, pubFile string) {
		t.Helper()
		data, err := os.ReadFile(pubFile)
		if err == nil {
			err = os.MkdirAll(filepath.Join(keysDir, e2eSite), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(keysDir, e2eSite, camera+".pub"), data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*box{first, second, lobby} {
		install(b.camera, devicePub(b))
	}

	capture := func(b *box, visit, subject string) {
		t.Helper()
		b.sub.Publish("consent", b.consentToken(visit, subject, "channel-attribution"))
		b.waitEvent("capture.saved", eventOf(store.EventCaptureSaved, visit))
	}
	// revoke runs the command and returns its table, by camera, and its
	// exit code.
	revoke := func(t *testing.T, args ...string) (map[string][]string, string, int) {
		t.Helper()
		args = append([]string{"revoke", "--broker", broker.URL(), "--site", e2eSite,
			"--key", filepath.Join(first.keys, "operator.key"), "--kid", "ops-1", "--keys-dir", keysDir, "--timeout", "5s"}, args...)
		stdout, stderr, code := runArgs(t, args...)
		t.Logf("consentcam %s\n%s%s", strings.Join(args, " "), stdout, stderr)
		rows := map[string][]string{}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "CAMERA") {
			t.Fatalf("no table:\n%s%s", stdout, stderr)
		}
		for _, l := range lines[1 : len(lines)-1] {
			f := strings.Fields(l)
			rows[f[0]] = f
		}
		return rows, stderr, code
	}
	// row checks a camera's line: availability, erased, verified.
	row := func(t *testing.T, rows map[string][]string, camera, available, erased, verified string) {
		t.Helper()
		f, ok := rows[camera]
		if !ok {
			t.Errorf("no line for %s", camera)
			return
		}
		if f[1] != available || f[2] != erased || f[4] != verified {
			t.Errorf("%s: %v, want available %s, erased %s, verified %s", camera, f, available, erased, verified)
		}
	}

	capture(first, "x-1", "subj-x")
	capture(first, "x-2", "subj-x")
	capture(second, "x-3", "subj-x")

	t.Run("one camera offline: named, exit 1, the others erase", func(t *testing.T) {
		lobby.stop(syscall.SIGKILL)
		lobby.waitAvailable("offline")
		rows, stderr, code := revoke(t, "--subject", "subj-x")
		if code != 1 || !strings.Contains(stderr, "lobby (no receipt within 5s)") {
			t.Errorf("exit %d, stderr %q; want 1, naming lobby", code, stderr)
		}
		row(t, rows, "entrance-1", "online", "2", "yes")
		row(t, rows, "entrance-2", "online", "1", "yes")
		row(t, rows, "lobby", "offline", "-", "no")
		if len(rows) != 3 {
			t.Errorf("%d cameras in the table, want 3", len(rows))
		}
		// The table's seq is the receipt's, which the box signed.
		if rc := first.receipt(1); rows["entrance-1"][3] != strconv.FormatUint(rc.Seq, 10) || rc.Subject != "subj-x" || rc.Erased != 2 {
			t.Errorf("entrance-1's receipt %+v, table %v", rc, rows["entrance-1"])
		}
		for _, b := range []*box{first, second} {
			if recs := b.records("subject=subj-x"); len(recs) != 0 {
				t.Errorf("%s still holds %d records of subj-x", b.camera, len(recs))
			}
		}
	})

	t.Run("the offline camera carries out the command when it is back", func(t *testing.T) {
		lobby.start()
		if rc := lobby.receipt(1); rc.Subject != "subj-x" || rc.Erased != 0 {
			t.Errorf("lobby's receipt %+v", rc)
		}
	})

	t.Run("all online: every receipt verified, exit 0", func(t *testing.T) {
		capture(second, "y-1", "subj-y")
		rows, stderr, code := revoke(t, "--visit", "y-1")
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr)
		}
		row(t, rows, "entrance-1", "online", "0", "yes")
		row(t, rows, "entrance-2", "online", "1", "yes")
		row(t, rows, "lobby", "online", "0", "yes")
	})

	t.Run("a receipt signed by another key: not verified, exit 1", func(t *testing.T) {
		install("entrance-2", devicePub(lobby))
		defer install("entrance-2", devicePub(second))
		rows, stderr, code := revoke(t, "--subject", "subj-z")
		if code != 1 || !strings.Contains(stderr, "entrance-2 (receipt not verified") {
			t.Errorf("exit %d, stderr %q; want 1, naming entrance-2", code, stderr)
		}
		row(t, rows, "entrance-1", "online", "0", "yes")
		row(t, rows, "entrance-2", "online", "-", "no")
		row(t, rows, "lobby", "online", "0", "yes")
	})

	t.Run("--camera: that camera only", func(t *testing.T) {
		rows, stderr, code := revoke(t, "--camera", "lobby", "--subject", "subj-x")
		if code != 0 || len(rows) != 1 {
			t.Errorf("exit %d, %d lines: %s", code, len(rows), stderr)
		}
		row(t, rows, "lobby", "online", "0", "yes")
	})
}
