package opencv_test

import (
	"context"
	"errors"
	"image"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
)

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"empty", "", "empty URL"},
		{"missing file", filepath.Join(t.TempDir(), "none.avi"), "no such file"},
		{"directory", t.TempDir(), "directory"},
		{"unknown scheme", "ftp://example.com/clip.avi", "unsupported scheme"},
		{"negative index", "-1", "negative"},
		{"not a video", testdataFile(t, "not-a-video.avi", "this is not a video"), "could not open"},
		// No camera here: what can be checked is that a device is opened
		// through V4L2 and fails with its name.
		{"absent device", "/dev/video99", "/dev/video99"},
		{"absent device index", "99", "99"},
		{"refused stream, password hidden", "rtsp://admin:s3cret@127.0.0.1:1/live", "rtsp://admin:xxxxx@127.0.0.1:1/live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: tt.url})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q): no error", tt.url)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%q) = %q, want it to mention %q", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the stream's password", err)
			}
		})
	}
}

func TestFileSource(t *testing.T) {
	clip := scene(t, "visitor").Path
	t.Run("plays once", func(t *testing.T) {
		s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: clip})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.FPS(); got != opencvtest.FPS {
			t.Errorf("FPS = %v, want %v", got, opencvtest.FPS)
		}
		n := 0
		for ; ; n++ {
			f, err := s.Read(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("frame %d: %v", n, err)
			}
			if got := f.Size(); got != image.Pt(opencvtest.Width, opencvtest.Height) {
				t.Fatalf("frame %d: size %v", n, got)
			}
			f.Close()
		}
		if n != opencvtest.Frames {
			t.Errorf("read %d frames, want %d", n, opencvtest.Frames)
		}
		if _, err := s.Read(context.Background()); !errors.Is(err, io.EOF) {
			t.Errorf("read after the end: %v, want io.EOF", err)
		}
	})
	t.Run("loops", func(t *testing.T) {
		s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: "file://" + clip, Loop: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for n := 0; n < 2*opencvtest.Frames+5; n++ {
			f, err := s.Read(context.Background())
			if err != nil {
				t.Fatalf("frame %d of a looping file: %v", n, err)
			}
			f.Close()
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: clip, Realtime: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Read(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Read with a cancelled context: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: clip})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := s.Read(context.Background()); !errors.Is(err, capture.ErrClosed) {
			t.Errorf("Read after Close: %v, want ErrClosed", err)
		}
	})
}

// TestFrameRGBA checks the BGR to RGBA copy on a clip of known colours:
// the left half red, the right half blue.
func TestFrameRGBA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "colours.avi")
	err := opencv.WriteClip(path, image.Pt(64, 48), 10, 3, func(_ int, m *gocv.Mat) {
		left, right := m.Region(image.Rect(0, 0, 32, 48)), m.Region(image.Rect(32, 0, 64, 48))
		left.SetTo(gocv.NewScalar(0, 0, 255, 0)) // BGR red
		right.SetTo(gocv.NewScalar(255, 0, 0, 0))
		left.Close()
		right.Close()
	})
	if err != nil {
		t.Fatal(err)
	}

	s, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	img, err := f.RGBA(image.Rect(-10, -10, 100, 100))
	if err != nil {
		t.Fatal(err)
	}
	if img.Rect != image.Rect(0, 0, 64, 48) {
		t.Fatalf("RGBA clipped to %v, want the 64x48 frame", img.Rect)
	}
	near := func(got, want uint8) bool { return int(got)-int(want) < 24 && int(want)-int(got) < 24 }
	for _, c := range []struct {
		at      image.Point
		r, g, b uint8
	}{{image.Pt(8, 24), 255, 0, 0}, {image.Pt(56, 24), 0, 0, 255}} {
		p := img.RGBAAt(c.at.X, c.at.Y)
		if !near(p.R, c.r) || !near(p.G, c.g) || !near(p.B, c.b) || p.A != 255 {
			t.Errorf("pixel %v = %v, want about (%d,%d,%d,255)", c.at, p, c.r, c.g, c.b)
		}
	}
	sub, err := f.RGBA(image.Rect(20, 10, 40, 30))
	if err != nil {
		t.Fatal(err)
	}
	for y := 10; y < 30; y++ {
		for x := 20; x < 40; x++ {
			if sub.RGBAAt(x, y) != img.RGBAAt(x, y) {
				t.Fatalf("sub-region pixel (%d,%d) = %v, whole frame has %v", x, y, sub.RGBAAt(x, y), img.RGBAAt(x, y))
			}
		}
	}
	if _, err := f.RGBA(image.Rect(100, 100, 120, 120)); err == nil {
		t.Error("RGBA outside the frame: no error")
	}
	f.Close()
	if _, err := f.RGBA(image.Rect(0, 0, 8, 8)); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("RGBA after Close: %v, want ErrClosed", err)
	}
}
