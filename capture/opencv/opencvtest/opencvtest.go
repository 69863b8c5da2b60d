// Package opencvtest makes scenario clips for tests and benchmarks from the
// face stills in testdata/faces: MJPG in AVI, written with gocv's
// VideoWriter, with the true face boxes of every frame. It is for tests only.
package opencvtest

import (
	"image"
	"math"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/internal/testenv"
)

// Frame size and rate of every clip.
const (
	Width  = 640
	Height = 480
	FPS    = 12
	Frames = 30 // 2.5 s
)

// Hand-annotated faces of the stills (hairline to chin, ear to ear), and a
// region of the portrait without anyone.
var (
	portraitFace = image.Rect(262, 145, 450, 388) // webcam-portrait.jpg, 640x480
	playerFace   = image.Rect(216, 86, 267, 133)  // crowd-and-player.jpg, 548x342
	emptyRegion  = image.Rect(0, 0, 224, 168)     // portrait: shelves and printer, no face
)

// Scene is a scenario clip: what it shows, the rules it is judged by, and
// the true face boxes of each frame, visitor first.
type Scene struct {
	Name  string
	Path  string // the clip, once written
	Rules capture.Rules
	// Truth[i] are the faces of frame i. Visitor is the index in each
	// frame's truth of the face that may be kept, or -1 when none may.
	Truth   [][]image.Rectangle
	Visitor int

	draw func(i int, dst *gocv.Mat) []image.Rectangle
}

// Scenes returns every scenario, built from the stills (the Mats are closed
// by tb.Cleanup).
func Scenes(tb testing.TB) []*Scene {
	tb.Helper()
	portrait := still(tb, "webcam-portrait.jpg")
	crowd := still(tb, "crowd-and-player.jpg")
	flipped := gocv.NewMat()
	gocv.Flip(portrait, &flipped, 1)
	tb.Cleanup(func() { flipped.Close() })
	flippedFace := image.Rect(portrait.Cols()-portraitFace.Max.X, portraitFace.Min.Y, portrait.Cols()-portraitFace.Min.X, portraitFace.Max.Y)

	left := capture.Zone{X: 0, Y: 0, W: 0.5, H: 1}
	rules := capture.DefaultRules()
	return []*Scene{
		{
			// One visitor filling the frame, the camera swaying a little.
			Name: "visitor", Rules: rules, Visitor: 0,
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				d := sway(i, 12)
				return []image.Rectangle{paste(dst, portrait, image.Rectangle{}, d, 1, portraitFace)}
			},
		},
		{
			// Two people side by side, both in the zone: never kept.
			Name: "two-in-zone", Rules: rules, Visitor: -1,
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				d := sway(i, 6)
				a := paste(dst, portrait, image.Rectangle{}, image.Pt(0, 110).Add(d), 0.5, portraitFace)
				b := paste(dst, flipped, image.Rectangle{}, image.Pt(340, 140).Sub(d), 0.45, flippedFace)
				return []image.Rectangle{a, b}
			},
		},
		{
			// The visitor in the zone (the left 45%) and, below and to the
			// right, a second person outside it whose face enters the
			// visitor's crop.
			Name: "second-outside-zone", Visitor: 0,
			Rules: capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.45, H: 1}, MinFace: rules.MinFace, MinScore: rules.MinScore},
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				d := sway(i, 3)
				a := pasteFace(dst, portrait, portraitFace, image.Pt(173, 190).Add(d), 0.5)
				b := pasteFace(dst, flipped, flippedFace, image.Pt(266, 318).Sub(d), 0.42)
				return []image.Rectangle{a, b}
			},
		},
		{
			// Shelves and a printer, nobody.
			Name: "nobody", Rules: rules, Visitor: -1,
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				d := sway(i, 8)
				paste(dst, portrait, emptyRegion, d.Sub(image.Pt(8, 8)), float64(Width+16)/float64(emptyRegion.Dx()), image.Rectangle{})
				return nil
			},
		},
		{
			// The visitor walks out of the zone (left half), left to right.
			Name: "leaving-zone", Visitor: 0,
			Rules: capture.Rules{Zone: left, MinFace: rules.MinFace, MinScore: rules.MinScore},
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				x := i * (Width / 2) / (Frames - 1)
				return []image.Rectangle{paste(dst, portrait, image.Rectangle{}, image.Pt(x, 120), 0.5, portraitFace)}
			},
		},
		{
			// The crowd photo across the frame: the player, whose face
			// counts under a min_face of 40, and a crowd of smaller faces
			// behind him, one by his head, inside his crop.
			Name: "crowd", Visitor: 0,
			Rules: capture.Rules{Zone: capture.FullFrame, MinFace: 40, MinScore: rules.MinScore},
			draw: func(i int, dst *gocv.Mat) []image.Rectangle {
				const scale = float64(Width) / 548
				d := sway(i, 4).Add(image.Pt(0, 40))
				return []image.Rectangle{paste(dst, crowd, image.Rectangle{}, d, scale, playerFace)}
			},
		},
	}
}

// SceneNamed returns the scenario of that name.
func SceneNamed(tb testing.TB, name string) *Scene {
	tb.Helper()
	for _, s := range Scenes(tb) {
		if s.Name == name {
			return s
		}
	}
	tb.Fatalf("no scene %q", name)
	return nil
}

// WriteClip writes the scene's clip into dir and fills s.Path and s.Truth;
// it returns the file's path.
func (s *Scene) WriteClip(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, s.Name+".avi")
	s.Truth = make([][]image.Rectangle, Frames)
	err := opencv.WriteClip(path, image.Pt(Width, Height), FPS, Frames, func(i int, frame *gocv.Mat) {
		frame.SetTo(gocv.NewScalar(150, 160, 170, 0)) // a gray-beige wall
		for _, f := range s.draw(i, frame) {
			s.Truth[i] = append(s.Truth[i], f.Intersect(image.Rect(0, 0, Width, Height)))
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	s.Path = path
	return path
}

// WriteScenes writes every scenario's clip into dir.
func WriteScenes(tb testing.TB, dir string) []*Scene {
	tb.Helper()
	scenes := Scenes(tb)
	for _, s := range scenes {
		s.WriteClip(tb, dir)
	}
	return scenes
}

// Matches reports whether a detected box is the true face t: each box's
// centre lies inside the other (boxes of different detectors frame a face
// differently, tight or loose).
func Matches(t, box image.Rectangle) bool {
	c := func(r image.Rectangle) image.Point { return r.Min.Add(r.Max).Div(2) }
	return c(box).In(t) && c(t).In(box)
}

func still(tb testing.TB, name string) gocv.Mat {
	tb.Helper()
	m := gocv.IMRead(testenv.Face(tb, name), gocv.IMReadColor)
	if m.Empty() {
		m.Close()
		tb.Fatalf("cannot decode %s", name)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// paste draws region src (the whole Mat when empty) of img, scaled by
// scale, at offset at of dst, clipped to dst; it returns where face (in
// img's coordinates) lands.
func paste(dst *gocv.Mat, img gocv.Mat, src image.Rectangle, at image.Point, scale float64, face image.Rectangle) image.Rectangle {
	if src.Empty() {
		src = image.Rect(0, 0, img.Cols(), img.Rows())
	}
	part := img.Region(src)
	defer part.Close()
	scaled := gocv.NewMat()
	defer scaled.Close()
	gocv.Resize(part, &scaled, image.Pt(int(math.Round(float64(src.Dx())*scale)), int(math.Round(float64(src.Dy())*scale))), 0, 0, gocv.InterpolationArea)
	r := image.Rect(0, 0, scaled.Cols(), scaled.Rows()).Add(at)
	clip := r.Intersect(image.Rect(0, 0, dst.Cols(), dst.Rows()))
	if !clip.Empty() {
		from := scaled.Region(clip.Sub(at))
		to := dst.Region(clip)
		from.CopyTo(&to)
		from.Close()
		to.Close()
	}
	return scaleRect(face.Sub(src.Min), scale).Add(at)
}

// pasteFace draws the head and shoulders around face in img, scaled by
// scale, so that the face's top-left corner lands at at; it returns the face
// box in dst.
func pasteFace(dst *gocv.Mat, img gocv.Mat, face image.Rectangle, at image.Point, scale float64) image.Rectangle {
	w, h := face.Dx(), face.Dy()
	head := image.Rect(face.Min.X-w/5, face.Min.Y-h/4, face.Max.X+w/5, face.Max.Y+h/3).Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	off := scaleRect(face.Sub(head.Min), scale).Min
	return paste(dst, img, head, at.Sub(off), scale, face)
}

func scaleRect(r image.Rectangle, s float64) image.Rectangle {
	f := func(v int) int { return int(math.Round(float64(v) * s)) }
	return image.Rect(f(r.Min.X), f(r.Min.Y), f(r.Max.X), f(r.Max.Y))
}

// sway is a small motion of amplitude a pixels, so no two frames are the same.
func sway(i, a int) image.Point {
	t := 2 * math.Pi * float64(i) / Frames
	return image.Pt(int(math.Round(float64(a)*math.Sin(t))), int(math.Round(float64(a)*math.Sin(2*t)/2)))
}

// PlainLoop is the reference a benchmark compares the product with: the
// loop a gocv program would write, reading the clip into one reused Mat and
// running YuNet on it, with nothing else. It returns the frames analysed.
func PlainLoop(tb testing.TB, clip string, yunet *opencv.YuNet) int {
	tb.Helper()
	vc, err := gocv.VideoCaptureFile(clip)
	if err != nil {
		tb.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for vc.Read(&m) {
		if _, err := yunet.DetectMat(m); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	return n
}
