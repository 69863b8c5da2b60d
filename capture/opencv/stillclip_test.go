package opencv_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// readClip reads every frame of a clip and returns the frames' pixels and
// the clip's frame rate; each frame is passed to each before it is closed.
func readClip(t *testing.T, path string, each func(i int, f capture.Frame)) ([]*image.RGBA, float64) {
	t.Helper()
	src, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: path})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var frames []*image.RGBA
	for {
		f, err := src.Read(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(frames), err)
		}
		px, err := f.RGBA(image.Rectangle{Max: f.Size()})
		if err != nil {
			t.Fatal(err)
		}
		if each != nil {
			each(len(frames), f)
		}
		f.Close()
		frames = append(frames, px)
	}
	return frames, src.FPS()
}

// TestWriteStillClip plays the demo's scene, made from the portrait still,
// through YuNet: the visitor's face is found, alone, wherever the still is
// wholly in view; nothing is found while the visitor is away; and the
// picture moves from frame to frame while they stand there.
func TestWriteStillClip(t *testing.T) {
	still, err := os.ReadFile(testenv.Face(t, "webcam-portrait.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	det, err := opencv.NewYuNet(testenv.Model(t, "yunet_320x320.onnx"), opencv.DetectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()

	// The face in the still itself, where each frame should show it.
	img, err := jpeg.Decode(bytes.NewReader(still))
	if err != nil {
		t.Fatal(err)
	}
	inStill, err := det.Detect(capture.NewImageFrame(img))
	if err != nil {
		t.Fatal(err)
	}
	if len(inStill) != 1 {
		t.Fatalf("test set-up: %d faces in the still, want 1", len(inStill))
	}
	face := inStill[0].Box

	path := filepath.Join(t.TempDir(), "scene.avi")
	placed, err := opencv.WriteStillClip(path, still, opencv.StillClipOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(placed), opencv.DefaultStillClipFrames; got != want {
		t.Fatalf("%d placements, want one per frame, %d", got, want)
	}

	rules := capture.DefaultRules()
	bounds := image.Rectangle{Max: opencv.DefaultStillClipSize}
	var withFace, empty int
	frames, fps := readClip(t, path, func(i int, f capture.Frame) {
		if i >= len(placed) {
			return
		}
		faces, err := det.Detect(f)
		if err != nil {
			t.Fatal(err)
		}
		at := placed[i]
		// The still is drawn at its own size here: 640x480 in 640x480.
		want := face.Add(at.Min)
		switch {
		case at.Intersect(bounds).Empty():
			empty++
			if len(faces) > 0 {
				t.Errorf("frame %d: nobody in view, yet faces %v", i, faces)
			}
		case want.In(bounds):
			withFace++
			var counted []capture.Face
			for _, fc := range faces {
				if rules.Counts(f.Size(), fc) {
					counted = append(counted, fc)
				}
			}
			if len(counted) != 1 || !opencvtest.Matches(want, counted[0].Box) {
				t.Errorf("frame %d: faces %v, want only the visitor's, at %v", i, counted, want)
			}
		}
	})
	if len(frames) != len(placed) {
		t.Fatalf("read %d frames, want %d", len(frames), len(placed))
	}
	if fps != opencv.DefaultStillClipFPS {
		t.Errorf("clip plays at %v fps, want %v", fps, opencv.DefaultStillClipFPS)
	}
	if frames[0].Rect.Size() != opencv.DefaultStillClipSize {
		t.Errorf("frames of %v, want %v", frames[0].Rect.Size(), opencv.DefaultStillClipSize)
	}
	// Most of the loop shows the visitor, and part of it nobody.
	if withFace < len(frames)/2 || empty < len(frames)/10 {
		t.Errorf("visitor wholly in view in %d frames, nobody in %d, of %d", withFace, empty, len(frames))
	}
	for i := 1; i < len(frames); i++ {
		if !placed[i].Intersect(bounds).Empty() && bytes.Equal(frames[i].Pix, frames[i-1].Pix) {
			t.Errorf("frame %d is the same as frame %d: the visitor does not move", i, i-1)
		}
	}
}

// TestWriteStillClipOptions checks that the clip has the size, frame count
// and rate asked for, whatever the still's size, and that bad input is
// refused.
func TestWriteStillClipOptions(t *testing.T) {
	still, err := os.ReadFile(testenv.Face(t, "crowd-and-player.jpg")) // 548x342
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := opencv.StillClipOptions{Size: image.Pt(320, 240), FPS: 10, Frames: 20}
	path := filepath.Join(dir, "small.avi")
	placed, err := opencv.WriteStillClip(path, still, opts)
	if err != nil {
		t.Fatal(err)
	}
	frames, fps := readClip(t, path, nil)
	if len(frames) != opts.Frames || len(placed) != opts.Frames {
		t.Fatalf("%d frames and %d placements, want %d", len(frames), len(placed), opts.Frames)
	}
	if got := frames[0].Rect.Size(); got != opts.Size {
		t.Errorf("frames of %v, want %v", got, opts.Size)
	}
	if fps != opts.FPS {
		t.Errorf("%v fps, want %v", fps, opts.FPS)
	}
	// Scaled to fit: the full width, the height in proportion, centred.
	if got, want := placed[0], image.Rect(0, 20, 320, 220); got != want {
		t.Errorf("still placed at %v in frame 0, want %v", got, want)
	}

	for _, tc := range []struct {
		name  string
		path  string
		still []byte
		opts  opencv.StillClipOptions
	}{
		{"not an image", filepath.Join(dir, "a.avi"), []byte("not a picture"), opencv.StillClipOptions{}},
		{"no such directory", filepath.Join(dir, "missing", "a.avi"), still, opencv.StillClipOptions{}},
		{"negative frames", filepath.Join(dir, "b.avi"), still, opencv.StillClipOptions{Frames: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := opencv.WriteStillClip(tc.path, tc.still, tc.opts); err == nil {
				t.Errorf("no error")
			}
		})
	}
}
