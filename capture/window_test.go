package capture_test

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"

	"github.com/consentcam/consentcam/capture"
)

// scene is a test picture: a mid-gray textured wall with "faces", squares
// of fine random texture (sharp) or of a smooth gradient (soft).
type scene struct {
	img *image.RGBA
	rng *rand.Rand
}

func newScene(w, h int) *scene {
	s := &scene{img: image.NewRGBA(image.Rect(0, 0, w, h)), rng: rand.New(rand.NewPCG(1, 2))}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8(120 + (x/16+y/16)%2*10)
			s.img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	return s
}

func (s *scene) sharpFace(r image.Rectangle) image.Rectangle {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			v := uint8(s.rng.IntN(256))
			s.img.SetRGBA(x, y, color.RGBA{v, v / 2, 255 - v, 255})
		}
	}
	return r
}

func (s *scene) softFace(r image.Rectangle) image.Rectangle {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			v := uint8(100 + (x-r.Min.X)*100/r.Dx())
			s.img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	return r
}

func (s *scene) frame() capture.Frame { return capture.NewImageFrame(s.img) }

func offer(t *testing.T, w *capture.Window, s *scene, faces ...capture.Face) capture.Verdict {
	t.Helper()
	f := s.frame()
	defer f.Close()
	v, err := w.Offer(f, faces)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	return v
}

func TestWindowKeepsTheBestFace(t *testing.T) {
	rules := capture.Rules{Zone: capture.FullFrame, MinFace: 64, MinScore: 0.8}
	w := capture.NewWindow(rules)

	small := newScene(640, 480)
	smallBox := small.sharpFace(image.Rect(100, 100, 180, 180))
	big := newScene(640, 480)
	bigBox := big.sharpFace(image.Rect(200, 100, 400, 300))
	soft := newScene(640, 480)
	softBox := soft.softFace(image.Rect(200, 100, 400, 300))

	for _, step := range []struct {
		name  string
		scene *scene
		face  capture.Face
	}{
		{"small sharp face", small, capture.Face{Box: smallBox, Score: 0.99}},
		{"big sharp face", big, capture.Face{Box: bigBox, Score: 0.95}},
		{"same big face, out of focus", soft, capture.Face{Box: softBox, Score: 0.99}},
	} {
		if v := offer(t, w, step.scene, step.face); v != capture.Qualified {
			t.Fatalf("%s: verdict %q, want qualified", step.name, v)
		}
	}
	best, ok := w.Best()
	if !ok {
		t.Fatal("Best: no candidate after three qualifying frames")
	}
	if got, want := best.Face, (capture.Face{Box: bigBox, Score: 0.95}); got.Box != want.Box || got.Score != want.Score {
		t.Errorf("best face = %v (score %v), want the big sharp one %v (score %v)", got.Box, got.Score, want.Box, want.Score)
	}
	if w.Reason() != "" {
		t.Errorf("Reason = %q with a candidate, want \"\"", w.Reason())
	}

	// The scores that made the choice: sharpness tells the focused face
	// from the soft one of the same size.
	sharp := capture.Sharpness(big.img, bigBox)
	blurred := capture.Sharpness(soft.img, softBox)
	if !(sharp > 10*blurred) {
		t.Errorf("Sharpness: sharp face %.1f, soft face %.1f; want the sharp one far higher", sharp, blurred)
	}
}

func TestWindowCrop(t *testing.T) {
	rules := capture.Rules{Zone: capture.FullFrame, MinFace: 64, MinScore: 0.8}
	tests := []struct {
		name string
		box  image.Rectangle
		want image.Rectangle
	}{
		{"in the middle", image.Rect(200, 100, 400, 300), image.Rect(150, 50, 450, 350)},
		{"at the top-left corner", image.Rect(0, 0, 100, 120), image.Rect(0, 0, 125, 150)},
		{"at the bottom-right corner", image.Rect(540, 380, 640, 480), image.Rect(515, 355, 640, 480)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScene(640, 480)
			s.sharpFace(tt.box)
			w := capture.NewWindow(rules)
			f := s.frame()
			if _, err := w.Offer(f, []capture.Face{{Box: tt.box, Score: 0.9}}); err != nil {
				t.Fatal(err)
			}
			f.Close() // the window holds its own copy
			best, ok := w.Best()
			if !ok {
				t.Fatal("no candidate")
			}
			if best.Crop != tt.want || best.Image.Rect != tt.want {
				t.Fatalf("crop %v, image %v; want %v", best.Crop, best.Image.Rect, tt.want)
			}
			for y := tt.want.Min.Y; y < tt.want.Max.Y; y++ {
				for x := tt.want.Min.X; x < tt.want.Max.X; x++ {
					if got, want := best.Image.RGBAAt(x, y), s.img.RGBAAt(x, y); got != want {
						t.Fatalf("pixel (%d,%d) = %v, want the frame's %v", x, y, got, want)
					}
				}
			}
		})
	}
}

func TestWindowBlursOtherFaces(t *testing.T) {
	visitor := image.Rect(200, 100, 360, 280) // crop (160,55)-(400,325)
	tests := []struct {
		name  string
		rules capture.Rules
		other capture.Face
		blur  bool
	}{
		{"tiny face inside the crop", capture.Rules{Zone: capture.FullFrame, MinFace: 64, MinScore: 0.8},
			capture.Face{Box: image.Rect(365, 60, 395, 90), Score: 0.9}, true},
		{"weak face inside the crop", capture.Rules{Zone: capture.FullFrame, MinFace: 64, MinScore: 0.8},
			capture.Face{Box: image.Rect(330, 250, 420, 340), Score: 0.4}, true},
		{"face outside the zone, reaching into the crop", capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.6, H: 1}, MinFace: 64, MinScore: 0.8},
			capture.Face{Box: image.Rect(370, 200, 480, 320), Score: 0.99}, true},
		{"face far from the crop", capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.7, H: 1}, MinFace: 64, MinScore: 0.8},
			capture.Face{Box: image.Rect(500, 300, 600, 400), Score: 0.99}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScene(640, 480)
			s.sharpFace(visitor)
			s.sharpFace(tt.other.Box)
			w := capture.NewWindow(tt.rules)
			if v := offer(t, w, s, tt.other, capture.Face{Box: visitor, Score: 0.95}); v != capture.Qualified {
				t.Fatalf("verdict %q, want qualified", v)
			}
			best, _ := w.Best()
			if best.Face.Box != visitor {
				t.Fatalf("kept %v, want the visitor %v", best.Face.Box, visitor)
			}
			inCrop := tt.other.Box.Intersect(best.Crop)
			if !tt.blur {
				if !inCrop.Empty() {
					t.Fatalf("test set-up: %v overlaps the crop %v", tt.other.Box, best.Crop)
				}
				if !sameRGBA(best.Image, s.img, best.Crop) {
					t.Error("the crop was changed though no other face reaches it")
				}
				return
			}
			if inCrop.Empty() {
				t.Fatalf("test set-up: %v does not overlap the crop %v", tt.other.Box, best.Crop)
			}
			before, after := capture.Sharpness(s.img, inCrop), capture.Sharpness(best.Image, inCrop)
			if after > before/100 || after > 5 {
				t.Errorf("other face in the crop: sharpness %.1f before, %.1f after; want it blurred flat", before, after)
			}
			if step := maxStep(best.Image, inCrop); step > 12 {
				t.Errorf("blurred region has a step of %d between neighbours: block edges or features remain", step)
			}
			// The visitor's face, away from the other face, is untouched.
			clean := image.Rect(visitor.Min.X, visitor.Min.Y, visitor.Min.X+60, visitor.Min.Y+60)
			if !sameRGBA(best.Image, s.img, clean) {
				t.Error("the visitor's face was changed away from the other face")
			}
		})
	}
}

// A bystander is blurred over the face box widened by its margin (hair,
// ears, chin), not over the bare box: here only the margin reaches into
// the crop, and that part of the crop must be blurred flat.
func TestWindowBlursBystanderMargin(t *testing.T) {
	// hairEarsChin is how far, as a fraction of the face box on each side,
	// a face's hair, ears and chin reach: the least that must be blurred.
	const hairEarsChin = 0.2
	visitor := image.Rect(200, 100, 360, 280) // crop (160,55)-(400,325)
	bystander := image.Rect(404, 100, 564, 260)
	widened := bystander.Inset(-int(hairEarsChin * float64(bystander.Dx())))
	s := newScene(640, 480)
	s.sharpFace(visitor)
	s.sharpFace(widened) // hair, ears and chin are as sharp as the face
	rules := capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.6, H: 1}, MinFace: 64, MinScore: 0.8}
	w := capture.NewWindow(rules)
	if v := offer(t, w, s, capture.Face{Box: bystander, Score: 0.99}, capture.Face{Box: visitor, Score: 0.95}); v != capture.Qualified {
		t.Fatalf("verdict %q, want qualified (the bystander stands outside the zone)", v)
	}
	best, _ := w.Best()
	if !bystander.Intersect(best.Crop).Empty() {
		t.Fatalf("test set-up: the bare box %v overlaps the crop %v", bystander, best.Crop)
	}
	margin := widened.Intersect(best.Crop)
	if margin.Dx() < 20 || margin.Dy() < 100 {
		t.Fatalf("test set-up: the margin overlaps the crop %v over only %v", best.Crop, margin)
	}
	before, after := capture.Sharpness(s.img, margin), capture.Sharpness(best.Image, margin)
	if after > before/100 || after > 5 {
		t.Errorf("bystander's hair and ears in the crop (%v): sharpness %.1f before, %.1f after; want them blurred flat", margin, before, after)
	}
	if step := maxStep(best.Image, margin); step > 12 {
		t.Errorf("bystander's margin in the crop has a step of %d between neighbours: features remain", step)
	}
	if !sameRGBA(best.Image, s.img, visitor) {
		t.Error("the visitor's face was changed")
	}
}

func TestWindowNeverKeepsACrowdedZone(t *testing.T) {
	w := capture.NewWindow(capture.DefaultRules())
	s := newScene(640, 480)
	a := s.sharpFace(image.Rect(50, 100, 250, 300))
	b := s.sharpFace(image.Rect(350, 120, 430, 200))
	for i := 0; i < 10; i++ {
		if v := offer(t, w, s, capture.Face{Box: a, Score: 0.99}, capture.Face{Box: b, Score: 0.81}); v != capture.MultipleFaces {
			t.Fatalf("frame %d: verdict %q, want multiple-faces", i, v)
		}
	}
	if c, ok := w.Best(); ok {
		t.Fatalf("kept %v from frames with two faces in the zone", c.Face.Box)
	}
	if got := w.Reason(); got != "multiple-faces" {
		t.Errorf("Reason = %q, want multiple-faces", got)
	}
}

func TestWindowReason(t *testing.T) {
	s := newScene(640, 480)
	visitor := capture.Face{Box: s.sharpFace(image.Rect(50, 100, 250, 300)), Score: 0.99}
	second := capture.Face{Box: s.sharpFace(image.Rect(350, 100, 550, 300)), Score: 0.99}
	weak := capture.Face{Box: visitor.Box, Score: 0.5}
	tests := []struct {
		name   string
		frames [][]capture.Face
		want   string
	}{
		{"no frame at all", nil, "no-face"},
		{"empty frames", [][]capture.Face{nil, nil}, "no-face"},
		{"a weak face", [][]capture.Face{nil, {weak}, nil}, "low-quality"},
		{"two faces once, weak faces after", [][]capture.Face{{weak}, {visitor, second}, {weak}, nil}, "multiple-faces"},
		{"a visitor at last", [][]capture.Face{{visitor, second}, {weak}, {visitor}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := capture.NewWindow(capture.DefaultRules())
			for _, faces := range tt.frames {
				offer(t, w, s, faces...)
			}
			if got := w.Reason(); got != tt.want {
				t.Errorf("Reason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWindowOfferErrors(t *testing.T) {
	w := capture.NewWindow(capture.DefaultRules())
	if _, err := w.Offer(nil, nil); err == nil {
		t.Error("Offer(nil frame): no error")
	}
	s := newScene(640, 480)
	f := s.frame()
	f.Close()
	box := s.sharpFace(image.Rect(50, 100, 250, 300))
	if _, err := w.Offer(f, []capture.Face{{Box: box, Score: 0.9}}); err == nil {
		t.Error("Offer(closed frame) with a qualifying face: no error")
	}
}

func TestEncodeJPEG(t *testing.T) {
	s := newScene(640, 480)
	box := s.sharpFace(image.Rect(200, 100, 400, 300))
	w := capture.NewWindow(capture.DefaultRules())
	offer(t, w, s, capture.Face{Box: box, Score: 0.9})
	best, _ := w.Best()
	data, err := capture.EncodeJPEG(best.Image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got, want := img.Bounds().Size(), best.Crop.Size(); got != want {
		t.Errorf("decoded size %v, want the crop's %v", got, want)
	}
	if _, err := capture.EncodeJPEG(image.NewRGBA(image.Rectangle{})); err == nil {
		t.Error("EncodeJPEG(empty): no error")
	}
}

func TestImageFrame(t *testing.T) {
	src := image.NewRGBA(image.Rect(10, 20, 110, 70)) // not at the origin
	src.SetRGBA(10, 20, color.RGBA{1, 2, 3, 255})
	src.SetRGBA(109, 69, color.RGBA{4, 5, 6, 255})
	f := capture.NewImageFrame(src)
	if got, want := f.Size(), image.Pt(100, 50); got != want {
		t.Fatalf("Size = %v, want %v", got, want)
	}
	img, err := f.RGBA(image.Rect(-5, -5, 200, 200))
	if err != nil {
		t.Fatal(err)
	}
	if img.Rect != image.Rect(0, 0, 100, 50) {
		t.Errorf("RGBA clipped to %v, want the frame", img.Rect)
	}
	if img.RGBAAt(0, 0) != (color.RGBA{1, 2, 3, 255}) || img.RGBAAt(99, 49) != (color.RGBA{4, 5, 6, 255}) {
		t.Error("pixels not moved to start at (0, 0)")
	}
	if _, err := f.RGBA(image.Rect(200, 200, 300, 300)); err == nil {
		t.Error("RGBA outside the frame: no error")
	}
	f.Close()
	if _, err := f.RGBA(image.Rect(0, 0, 10, 10)); err == nil {
		t.Error("RGBA after Close: no error")
	}
}

func sameRGBA(a, b *image.RGBA, r image.Rectangle) bool {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.RGBAAt(x, y) != b.RGBAAt(x, y) {
				return false
			}
		}
	}
	return true
}

// maxStep is the largest difference of a colour channel between two
// neighbouring pixels of r.
func maxStep(img *image.RGBA, r image.Rectangle) int {
	step := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			p := img.RGBAAt(x, y)
			for _, q := range []image.Point{{x + 1, y}, {x, y + 1}} {
				if !q.In(r) {
					continue
				}
				n := img.RGBAAt(q.X, q.Y)
				for _, d := range []int{int(p.R) - int(n.R), int(p.G) - int(n.G), int(p.B) - int(n.B)} {
					step = max(step, d, -d)
				}
			}
		}
	}
	return step
}
