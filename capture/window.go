package capture

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"
)

// Candidate is the best face a window has kept so far.
type Candidate struct {
	Face Face
	// Crop is the face box with its margin, clipped to the frame, in frame
	// pixels; Image holds its pixels (Image.Bounds() == Crop), any other face
	// overlapping it already blurred.
	Crop  image.Rectangle
	Image *image.RGBA
	// Quality ranks candidates: Score × size factor × sharpness factor, in [0, 1].
	Quality float64
}

// Window keeps the best qualifying face of one capture window. It is not
// safe for concurrent use.
type Window struct {
	Rules Rules
	// Margin widens the face box on each side by this fraction of its width
	// (left, right) and height (top, bottom) to make the crop.
	Margin float64

	best *Candidate
	seen map[Verdict]bool
}

// Default crop and scoring parameters.
const (
	DefaultMargin = 0.25
	// Faces whose smaller side reaches sizeRef pixels get the full size
	// factor; smaller ones proportionally less.
	sizeRef = 160
	// The sharpness factor is s / (s + sharpHalf): a half for a gray face
	// whose Laplacian variance is sharpHalf (soft), near 1 for crisp ones.
	sharpHalf = 100
	// Another face is blurred over its box widened by this fraction on
	// each side, to cover hair, ears and chin.
	blurMargin = 0.2
)

// NewWindow returns an empty window judging frames by rules.
func NewWindow(rules Rules) *Window {
	return &Window{Rules: rules, Margin: DefaultMargin, seen: map[Verdict]bool{}}
}

// Offer judges a frame and its detected faces. When the frame qualifies and
// its face beats the best so far, the window copies the face's crop out of f
// (other faces overlapping it blurred), so f may be closed as soon as Offer
// returns.
func (w *Window) Offer(f Frame, faces []Face) (Verdict, error) {
	if f == nil {
		return "", errors.New("capture: nil frame")
	}
	size := f.Size()
	v, i := w.Rules.Judge(size, faces)
	w.seen[v] = true
	if v != Qualified {
		return v, nil
	}
	face := faces[i]
	sf := sizeFactor(face.Box)
	if w.best != nil && face.Score*sf <= w.best.Quality {
		return v, nil // even a perfectly sharp crop could not win
	}
	crop := CropRect(face.Box, w.Margin, size)
	img, err := f.RGBA(crop)
	if err != nil {
		return v, fmt.Errorf("capture: copy crop: %w", err)
	}
	if img.Rect != crop {
		return v, fmt.Errorf("capture: frame gave %v for crop %v", img.Rect, crop)
	}
	for j, o := range faces {
		if j != i {
			blur(img, grow(o.Box, blurMargin))
		}
	}
	sharp := Sharpness(img, face.Box)
	q := face.Score * sf * sharp / (sharp + sharpHalf)
	if w.best == nil || q > w.best.Quality {
		face.Landmarks = slices.Clone(face.Landmarks)
		w.best = &Candidate{Face: face, Crop: crop, Image: img, Quality: q}
	}
	return v, nil
}

// Best returns the best qualifying face offered so far.
func (w *Window) Best() (*Candidate, bool) { return w.best, w.best != nil }

// Reason says why a window kept no face: "multiple-faces" if any frame had
// several faces in the zone, else "low-quality" if any had faces in the zone
// under the thresholds, else "no-face". This order reports the strongest
// thing the window saw: a crowded zone matters more to the operator than a
// poor face, and a poor face more than an empty zone. It is "" once a face
// was kept.
func (w *Window) Reason() string {
	switch {
	case w.best != nil:
		return ""
	case w.seen[MultipleFaces]:
		return string(MultipleFaces)
	case w.seen[LowQuality]:
		return string(LowQuality)
	default:
		return string(NoFace)
	}
}

// CropRect is box widened by margin × its width and height on each side,
// clipped to a frame of the given size.
func CropRect(box image.Rectangle, margin float64, frame image.Point) image.Rectangle {
	return grow(box, margin).Intersect(image.Rectangle{Max: frame})
}

func grow(r image.Rectangle, f float64) image.Rectangle {
	dx := int(math.Ceil(float64(r.Dx()) * f))
	dy := int(math.Ceil(float64(r.Dy()) * f))
	return image.Rect(r.Min.X-dx, r.Min.Y-dy, r.Max.X+dx, r.Max.Y+dy)
}

func sizeFactor(box image.Rectangle) float64 {
	return math.Min(1, float64(min(box.Dx(), box.Dy()))/sizeRef)
}
