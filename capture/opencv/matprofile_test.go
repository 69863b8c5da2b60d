//go:build matprofile

package opencv_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"testing"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/internal/testenv"
)

// TestMatProfile runs every path that makes Mats (sources playing, looping,
// ending and failing; both detectors on OpenCV frames and on plain images;
// a window copying crops) and checks the count of live Mats returns to
// where it started. Run with: go test -tags matprofile -run MatProfile.
func TestMatProfile(t *testing.T) {
	clip := scene(t, "second-outside-zone").Path // written before counting
	start := gocv.MatProfile.Count()

	yunet, err := opencv.NewYuNet(testenv.Model(t, "yunet_320x320.onnx"), opencv.DetectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cascade, err := opencv.NewCascade(opencv.DefaultCascade, opencv.DetectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []opencv.SourceOptions{{URL: clip}, {URL: clip, Loop: true}} {
		src, err := opencv.Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		w := capture.NewWindow(capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.45, H: 1}, MinFace: 64, MinScore: 0.8})
		for i := 0; i < 40; i++ {
			f, err := src.Read(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []capture.Detector{yunet, cascade} {
				faces, err := d.Detect(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Offer(f, faces); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
		}
		src.Close()
		if best, ok := w.Best(); ok {
			// Plain images go through a temporary Mat.
			if _, err := yunet.Detect(capture.NewImageFrame(best.Image)); err != nil {
				t.Fatal(err)
			}
			if _, err := cascade.Detect(capture.NewImageFrame(best.Image)); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Fatal("no face kept: the loop did not exercise the crop")
		}
	}
	if _, err := yunet.Detect(capture.NewImageFrame(image.NewRGBA(image.Rect(0, 0, 8, 8)))); err != nil {
		t.Fatal(err)
	}
	if _, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: "http://127.0.0.1:1/none"}); err == nil {
		t.Fatal("opened a refused URL")
	}
	yunet.Close()
	cascade.Close()

	if got := gocv.MatProfile.Count(); got != start {
		var b bytes.Buffer
		gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("live Mats: %d at the start, %d at the end; created at:\n%s", start, got, b.String())
	}
}
