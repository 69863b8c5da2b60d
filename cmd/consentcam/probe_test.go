package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// probeClip writes a scenario clip into a fresh directory.
func probeClip(t testing.TB, name string) string {
	t.Helper()
	return opencvtest.SceneNamed(t, name).WriteClip(t, t.TempDir())
}

func runProbe(t *testing.T, args ...string) (lines []probeFrame, sum probeSummary, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	code = m.ExitCode(m.Run(context.Background(), append([]string{"probe"}, args...)))
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"frame":`) {
			var l probeFrame
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			lines = append(lines, l)
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &sum); err != nil || sum.Detector == "" {
			t.Fatalf("line %q is neither a frame nor the summary (%v)", sc.Text(), err)
		}
	}
	return lines, sum, errOut.String(), code
}

func TestProbe(t *testing.T) {
	model := testenv.Model(t, "yunet_320x320.onnx")
	two := probeClip(t, "two-in-zone")

	t.Run("two people, every frame", func(t *testing.T) {
		before := dirFiles(t, filepath.Dir(two))
		lines, sum, stderr, code := runProbe(t, "--source", two, "--detector", "yunet", "--model", model, "--realtime=false")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if len(lines) != opencvtest.Frames || sum.Frames != opencvtest.Frames {
			t.Fatalf("%d frame lines, summary %d frames; want %d", len(lines), sum.Frames, opencvtest.Frames)
		}
		for i, l := range lines {
			// Weak detections (background shapes) are shown too, with
			// their score; the two people are the strong ones.
			strong := 0
			for _, f := range l.Faces {
				if f.Score >= 0.8 && f.W >= 64 && f.H >= 64 {
					strong++
				}
				if f.Score < 0 || f.Score > 1 {
					t.Errorf("line %d: face %+v, want a score in [0, 1]", i, f)
				}
			}
			if l.Frame != i+1 || strong != 2 || l.InZone != 2 {
				t.Errorf("line %d: %+v, want frame %d with 2 strong faces, 2 in the zone", i, l, i+1)
			}
		}
		if sum.Qualified != 0 || sum.Detector != "yunet" || !(sum.FPS > 0) {
			t.Errorf("summary %+v, want no qualified frame, yunet, a frame rate", sum)
		}
		if after := dirFiles(t, filepath.Dir(two)); after != before {
			t.Errorf("probe changed the clip's directory: %s, then %s", before, after)
		}
	})
	t.Run("config zone and frame limit", func(t *testing.T) {
		clip := probeClip(t, "second-outside-zone")
		cfg := filepath.Join(t.TempDir(), "consentcam.yaml")
		writeProbeConfig(t, cfg, clip, model, "[0.0, 0.0, 0.45, 1.0]")
		lines, sum, stderr, code := runProbe(t, "--config", cfg, "--frames", "5", "--realtime=false")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if len(lines) != 5 || sum.Frames != 5 {
			t.Fatalf("%d lines, summary %d frames; want 5", len(lines), sum.Frames)
		}
		for i, l := range lines {
			if len(l.Faces) < 2 || l.InZone != 1 {
				t.Errorf("line %d: %+v, want both faces, 1 of them in the zone", i, l)
			}
		}
		if sum.Qualified != 5 {
			t.Errorf("summary %+v, want 5 qualified frames", sum)
		}
	})
	t.Run("cascade by default", func(t *testing.T) {
		_, sum, stderr, code := runProbe(t, "--source", probeClip(t, "visitor"), "--frames", "2", "--realtime=false")
		if code != 0 || sum.Detector != "cascade" || sum.Frames != 2 {
			t.Errorf("exit %d, summary %+v (%s); want 0, cascade, 2 frames", code, sum, stderr)
		}
	})
}

func TestProbeExitCodes(t *testing.T) {
	clip := probeClip(t, "nobody")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "Usage"},
		{"no source", nil, 2, "--config or --source"},
		{"unknown detector", []string{"--source", clip, "--detector", "hog"}, 2, "auto, yunet or cascade"},
		{"yunet without a model", []string{"--source", clip, "--detector", "yunet"}, 2, "needs --model"},
		{"negative frames", []string{"--source", clip, "--frames", "-1"}, 2, "--frames"},
		{"stray argument", []string{"--source", clip, "extra"}, 2, "unexpected argument"},
		{"missing file", []string{"--source", filepath.Join(t.TempDir(), "none.avi")}, 1, "no such file"},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, 1, "no such file"},
		{"missing model", []string{"--source", clip, "--model", "/nonexistent/yunet.onnx"}, 1, "yunet model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
			code := m.ExitCode(m.Run(context.Background(), append([]string{"probe"}, tt.args...)))
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Errorf("output %q %q, want it to mention %q", out.String(), errOut.String(), tt.want)
			}
		})
	}
}

func writeProbeConfig(t testing.TB, path, clip, model, zone string) {
	t.Helper()
	cfg := fmt.Sprintf(`site: office-07
camera: entrance-1
source: {url: %q, realtime: false}
capture: {detector: yunet, model: %q, zone: %s}
issuers:
  - {kid: kiosk-1, public_key: /etc/consentcam/issuer.pub}
notice:
  controller: Example Realty Ltd.
  contact: privacy@example.com
  withdraw: Ask the front desk.
  alternative: Sign in at the front desk instead.
purposes:
  - {id: channel-attribution, description: Tell which sales channel brought you, retention: 720h}
`, clip, model, zone)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dirFiles(t testing.TB, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		info, _ := e.Info()
		names = append(names, fmt.Sprintf("%s:%d", e.Name(), info.Size()))
	}
	return strings.Join(names, ",")
}

// BenchmarkProbe compares probe with the plain gocv loop (opencvtest.PlainLoop)
// on the same clip, alternating the two in each iteration so both see the
// same machine load. OpenCV runs on one thread. It reports each one's frames
// per second and their ratio (target: at least 0.9).
func BenchmarkProbe(b *testing.B) {
	model := testenv.Model(b, "yunet_320x320.onnx")
	clip := probeClip(b, "two-in-zone")
	yunet, err := opencv.NewYuNet(model, opencv.DetectorOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer yunet.Close()
	opencv.SetNumThreads(1)
	defer opencv.SetNumThreads(-1)

	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
	args := []string{"probe", "--source", clip, "--detector", "yunet", "--model", model, "--realtime=false"}
	var probeTime, plainTime time.Duration
	var frames int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := m.Run(context.Background(), args); err != nil {
			b.Fatal(err)
		}
		probeTime += time.Since(start)
		start = time.Now()
		frames += opencvtest.PlainLoop(b, clip, yunet)
		plainTime += time.Since(start)
	}
	probeFPS := float64(frames) / probeTime.Seconds()
	plainFPS := float64(frames) / plainTime.Seconds()
	b.ReportMetric(probeFPS, "probe-fps")
	b.ReportMetric(plainFPS, "plain-fps")
	b.ReportMetric(probeFPS/plainFPS, "ratio")
}
