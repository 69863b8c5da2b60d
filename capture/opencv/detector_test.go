package opencv_test

import (
	"errors"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/internal/testenv"
)

func testdataFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewDetector(t *testing.T) {
	model := testenv.Model(t, "yunet_320x320.onnx")
	tests := []struct {
		name                  string
		kind, model, cascade  string
		wantName, wantErrPart string
	}{
		{"auto with a model", "auto", model, "", "yunet", ""},
		{"auto without a model", "auto", "", "", "cascade", ""},
		{"yunet", "yunet", model, "", "yunet", ""},
		{"cascade, default file", "cascade", model, "", "cascade", ""},
		{"yunet without a model", "yunet", "", "", "", "needs a model"},
		{"unknown kind", "hog", "", "", "", "unknown detector"},
		{"missing model", "yunet", "/nonexistent/yunet.onnx", "", "", "no such file"},
		{"model that is not ONNX", "yunet", testdataFile(t, "bad.onnx", "not a model"), "", "", "onnx"},
		{"missing cascade", "cascade", "", "/nonexistent/cascade.xml", "", "no such file"},
		{"cascade that is not XML", "cascade", "", testdataFile(t, "bad.xml", "<nope"), "", "Input file is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := opencv.NewDetector(tt.kind, tt.model, tt.cascade, opencv.DetectorOptions{})
			if tt.wantErrPart != "" {
				if err == nil {
					d.Close()
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tt.wantErrPart) {
					t.Errorf("error %q, want it to mention %q", err, tt.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Name() != tt.wantName {
				t.Errorf("Name = %q, want %q", d.Name(), tt.wantName)
			}
		})
	}
}

func TestYuNetInputSize(t *testing.T) {
	for _, tt := range []struct {
		model string
		want  image.Point
	}{
		{"yunet_320x320.onnx", image.Pt(320, 320)},
		{"yunet_640x640.onnx", image.Pt(640, 640)},
	} {
		t.Run(tt.model, func(t *testing.T) {
			y, err := opencv.NewYuNet(testenv.Model(t, tt.model), opencv.DetectorOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer y.Close()
			if got := y.InputSize(); got != tt.want {
				t.Errorf("InputSize = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDetectorsOnAStill runs both detectors on the portrait given as a plain
// image (not an OpenCV frame): each finds the one face, with landmarks and a
// calibrated score for YuNet.
func TestDetectorsOnAStill(t *testing.T) {
	fh, err := os.Open(testenv.Face(t, "webcam-portrait.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(fh)
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	face := image.Rect(262, 145, 450, 388) // annotated by hand
	for _, kind := range []string{"yunet", "cascade"} {
		t.Run(kind, func(t *testing.T) {
			model := ""
			if kind == "yunet" {
				model = testenv.Model(t, "yunet_320x320.onnx")
			}
			d, err := opencv.NewDetector(kind, model, "", opencv.DetectorOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := capture.NewImageFrame(img)
			faces, err := d.Detect(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) != 1 {
				t.Fatalf("found %d faces, want 1: %v", len(faces), faces)
			}
			c := faces[0].Box.Min.Add(faces[0].Box.Max).Div(2)
			if !c.In(face) {
				t.Errorf("face %v, want it centred in %v", faces[0].Box, face)
			}
			if s := faces[0].Score; s < 0.9 || s > 1 {
				t.Errorf("score %v, want a probability over 0.9", s)
			}
			if kind == "yunet" {
				for _, lm := range faces[0].Landmarks {
					if !lm.In(faces[0].Box) {
						t.Errorf("landmark %v outside the face %v", lm, faces[0].Box)
					}
				}
				if len(faces[0].Landmarks) != 5 {
					t.Errorf("%d landmarks, want 5", len(faces[0].Landmarks))
				}
			}
			d.Close()
			if _, err := d.Detect(f); !errors.Is(err, capture.ErrClosed) {
				t.Errorf("Detect after Close: %v, want ErrClosed", err)
			}
			f.Close()
		})
	}
}
