package opencv_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// played is what a detector and a window made of one scenario clip.
type played struct {
	frames   int
	found    int // frames where every true face was detected
	anyFace  int // frames with at least one detection
	verdicts map[capture.Verdict]int
	perFrame []capture.Verdict
	window   *capture.Window
	// The frame the window's best face came from, and that frame's pixels
	// over the crop before blurring.
	bestFrame int
	bestOrig  *image.RGBA
	bestFaces []capture.Face
}

func (p *played) String() string {
	return fmt.Sprintf("%d frames, all true faces found in %d (%.0f%%), a face detected in %d; verdicts %v; window reason %q",
		p.frames, p.found, 100*float64(p.found)/float64(p.frames), p.anyFace, p.verdicts, p.window.Reason())
}

// play runs det over every frame of a scenario clip and offers each frame
// to a window with the scenario's rules.
func play(t *testing.T, s *opencvtest.Scene, det capture.Detector) *played {
	t.Helper()
	src, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: s.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := &played{verdicts: map[capture.Verdict]int{}, window: capture.NewWindow(s.Rules), bestFrame: -1}
	for i := 0; ; i++ {
		f, err := src.Read(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		faces, err := det.Detect(f)
		if err != nil {
			t.Fatalf("frame %d: detect: %v", i, err)
		}
		p.frames++
		if len(s.Truth[i]) > 0 && allFound(s.Truth[i], faces) {
			p.found++
		}
		if len(faces) > 0 {
			p.anyFace++
		}
		before, _ := p.window.Best()
		v, err := p.window.Offer(f, faces)
		if err != nil {
			t.Fatalf("frame %d: offer: %v", i, err)
		}
		if after, _ := p.window.Best(); after != before {
			p.bestFrame, p.bestFaces = i, faces
			if p.bestOrig, err = f.RGBA(after.Crop); err != nil {
				t.Fatal(err)
			}
		}
		p.verdicts[v]++
		p.perFrame = append(p.perFrame, v)
		f.Close()
	}
	if p.frames != opencvtest.Frames {
		t.Fatalf("read %d frames, want %d", p.frames, opencvtest.Frames)
	}
	return p
}

func allFound(truth []image.Rectangle, faces []capture.Face) bool {
	for _, tr := range truth {
		ok := false
		for _, f := range faces {
			ok = ok || opencvtest.Matches(tr, f.Box)
		}
		if !ok {
			return false
		}
	}
	return true
}

func atLeast(t *testing.T, what string, got, of int, frac float64) {
	t.Helper()
	if float64(got) < frac*float64(of) {
		t.Errorf("%s in %d of %d frames, want at least %.0f%%", what, got, of, 100*frac)
	}
}

// checkCrop checks the window's best face: it comes from the visitor, its
// crop holds the visitor's whole face, every other detected face reaching
// into the crop is blurred, and the detector run on the crop alone finds the
// visitor's face and no other.
func checkCrop(t *testing.T, s *opencvtest.Scene, p *played, det capture.Detector) {
	t.Helper()
	best, ok := p.window.Best()
	if !ok {
		t.Fatalf("no face kept; window reason %q", p.window.Reason())
	}
	truth := s.Truth[p.bestFrame][s.Visitor]
	if !opencvtest.Matches(truth, best.Face.Box) {
		t.Fatalf("kept %v from frame %d, which is not the visitor's face %v", best.Face.Box, p.bestFrame, truth)
	}
	if !best.Face.Box.In(best.Crop) || best.Image.Rect != best.Crop {
		t.Fatalf("crop %v (image %v) does not hold the face %v", best.Crop, best.Image.Rect, best.Face.Box)
	}
	for _, o := range p.bestFaces {
		in := o.Box.Intersect(best.Crop)
		if o.Box == best.Face.Box || in.Empty() {
			continue
		}
		before, after := capture.Sharpness(p.bestOrig, in), capture.Sharpness(best.Image, in)
		if after > before/10 {
			t.Errorf("face %v (score %.2f) inside the crop not blurred: sharpness %.1f before, %.1f after", o.Box, o.Score, before, after)
		}
	}
	inCrop, err := det.Detect(capture.NewImageFrame(best.Image))
	if err != nil {
		t.Fatal(err)
	}
	var strong []capture.Face
	for _, f := range inCrop {
		if f.Score >= 0.5 {
			strong = append(strong, f)
		}
	}
	if len(strong) != 1 || !opencvtest.Matches(best.Face.Box.Sub(best.Crop.Min), strong[0].Box) {
		t.Errorf("detector on the saved crop found %v, want only the visitor's face at %v", strong, best.Face.Box.Sub(best.Crop.Min))
	}
}

// TestScenesYuNet holds YuNet to the product's promise on every scenario.
func TestScenesYuNet(t *testing.T) {
	det, err := opencv.NewYuNet(testenv.Model(t, "yunet_320x320.onnx"), opencv.DetectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()

	t.Run("visitor", func(t *testing.T) {
		s := scene(t, "visitor")
		p := play(t, s, det)
		t.Log(p)
		atLeast(t, "the visitor found", p.found, p.frames, 0.95)
		atLeast(t, "qualified", p.verdicts[capture.Qualified], p.frames, 0.95)
		checkCrop(t, s, p, det)
	})
	t.Run("two-in-zone", func(t *testing.T) {
		s := scene(t, "two-in-zone")
		p := play(t, s, det)
		t.Log(p)
		atLeast(t, "both people found", p.found, p.frames, 0.95)
		if n := p.verdicts[capture.Qualified]; n > 0 {
			t.Errorf("%d frames with two people in the zone qualified", n)
		}
		if c, ok := p.window.Best(); ok || p.window.Reason() != "multiple-faces" {
			t.Errorf("window kept %v, reason %q; want nothing, multiple-faces", c, p.window.Reason())
		}
	})
	t.Run("second-outside-zone", func(t *testing.T) {
		s := scene(t, "second-outside-zone")
		p := play(t, s, det)
		t.Log(p)
		atLeast(t, "both people found", p.found, p.frames, 0.95)
		atLeast(t, "qualified", p.verdicts[capture.Qualified], p.frames, 0.95)
		checkCrop(t, s, p, det)
		// The second person's face does reach into the crop, so the check
		// above saw it blurred.
		best, _ := p.window.Best()
		if second := s.Truth[p.bestFrame][1]; second.Intersect(best.Crop).Empty() {
			t.Errorf("test set-up: the second face %v does not reach the crop %v", second, best.Crop)
		}
	})
	t.Run("nobody", func(t *testing.T) {
		p := play(t, scene(t, "nobody"), det)
		t.Log(p)
		if p.anyFace > 0 {
			t.Errorf("faces detected in %d frames of an empty scene", p.anyFace)
		}
		if got := p.window.Reason(); got != "no-face" {
			t.Errorf("window reason %q, want no-face", got)
		}
	})
	t.Run("leaving-zone", func(t *testing.T) {
		s := scene(t, "leaving-zone")
		p := play(t, s, det)
		t.Log(p)
		atLeast(t, "the visitor found", p.found, p.frames, 0.95)
		edge := s.Rules.Zone.Rect(image.Pt(opencvtest.Width, opencvtest.Height)).Max.X
		var in, out int
		for i, v := range p.perFrame {
			cx := (s.Truth[i][0].Min.X + s.Truth[i][0].Max.X) / 2
			switch {
			case cx < edge-20:
				in++
				if v != capture.Qualified {
					t.Errorf("frame %d: face centre at x=%d, inside the zone: verdict %q", i, cx, v)
				}
			case cx > edge+20:
				out++
				if v == capture.Qualified {
					t.Errorf("frame %d: face centre at x=%d, outside the zone: qualified", i, cx)
				}
			}
		}
		if in < 5 || out < 5 {
			t.Errorf("test set-up: %d frames clearly inside, %d clearly outside", in, out)
		}
		checkCrop(t, s, p, det)
	})
	t.Run("crowd", func(t *testing.T) {
		s := scene(t, "crowd")
		p := play(t, s, det)
		t.Log(p)
		atLeast(t, "the player found", p.found, p.frames, 0.95)
		atLeast(t, "qualified", p.verdicts[capture.Qualified], p.frames, 0.95)
		checkCrop(t, s, p, det)
	})
}

// TestScenesCascade measures the LBP cascade on the same clips. It holds it
// only to what it does reliably (one frontal face, an empty room); its
// two-person figures, which fall short, are logged for docs/BENCHMARKS.md.
func TestScenesCascade(t *testing.T) {
	det, err := opencv.NewCascade(opencv.DefaultCascade, opencv.DetectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	var report []string
	for _, s := range scenes(t) {
		t.Run(s.Name, func(t *testing.T) {
			p := play(t, s, det)
			report = append(report, fmt.Sprintf("%-20s %v", s.Name, p))
			switch s.Name {
			case "visitor":
				atLeast(t, "the visitor found", p.found, p.frames, 0.95)
			case "nobody":
				if p.anyFace > 0 {
					t.Errorf("faces detected in %d frames of an empty scene", p.anyFace)
				}
			}
		})
	}
	t.Log("cascade:\n" + strings.Join(report, "\n"))
}
