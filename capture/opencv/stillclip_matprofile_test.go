//go:build matprofile

package opencv_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/internal/testenv"
)

// TestStillClipMatProfile checks that writing a still clip, and failing to,
// leaves no Mat open. Run with: go test -tags matprofile -run MatProfile.
func TestStillClipMatProfile(t *testing.T) {
	still, err := os.ReadFile(testenv.Face(t, "webcam-portrait.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := gocv.MatProfile.Count()
	if _, err := opencv.WriteStillClip(filepath.Join(dir, "scene.avi"), still, opencv.StillClipOptions{Frames: 24}); err != nil {
		t.Fatal(err)
	}
	if _, err := opencv.WriteStillClip(filepath.Join(dir, "missing", "scene.avi"), still, opencv.StillClipOptions{Frames: 24}); err == nil {
		t.Fatal("wrote into a missing directory")
	}
	if _, err := opencv.WriteStillClip(filepath.Join(dir, "bad.avi"), []byte("not a picture"), opencv.StillClipOptions{}); err == nil {
		t.Fatal("decoded a non-picture")
	}
	if got := gocv.MatProfile.Count(); got != start {
		var b bytes.Buffer
		gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("live Mats: %d at the start, %d at the end; created at:\n%s", start, got, b.String())
	}
}
