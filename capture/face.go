package capture

import (
	"errors"
	"fmt"
	"image"
	"math"
)

// Face is one face found by a detector, in frame pixels.
type Face struct {
	Box image.Rectangle
	// Score is the detector's confidence in [0, 1]; cascades, which give
	// none, report 1.
	Score float64
	// Landmarks are the eyes, the nose tip and the mouth corners when the
	// detector finds them (YuNet), else nil.
	Landmarks []image.Point
}

// Zone is the consent zone: the part of the frame, in fractions of its width
// and height, where the visitor stands.
type Zone struct{ X, Y, W, H float64 }

// FullFrame is the default zone: the whole frame.
var FullFrame = Zone{0, 0, 1, 1}

// ZoneOf returns the zone of a configuration's [x, y, w, h], checked.
func ZoneOf(xywh []float64) (Zone, error) {
	if len(xywh) != 4 {
		return Zone{}, fmt.Errorf("zone: want [x, y, w, h], got %d numbers", len(xywh))
	}
	z := Zone{xywh[0], xywh[1], xywh[2], xywh[3]}
	return z, z.Validate()
}

// Validate reports whether the zone lies inside the frame and is not empty.
func (z Zone) Validate() error {
	for _, v := range []float64{z.X, z.Y, z.W, z.H} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("zone: every number must be finite")
		}
	}
	const eps = 1e-9
	if z.X < 0 || z.Y < 0 || z.W <= 0 || z.H <= 0 || z.X+z.W > 1+eps || z.Y+z.H > 1+eps {
		return fmt.Errorf("zone: must lie inside the frame: 0 <= x, y; w, h > 0; x+w <= 1; y+h <= 1 (got %v)", z)
	}
	return nil
}

// Rect is the zone in the pixels of a frame of the given size.
func (z Zone) Rect(frame image.Point) image.Rectangle {
	fx, fy := float64(frame.X), float64(frame.Y)
	return image.Rect(
		int(math.Round(z.X*fx)), int(math.Round(z.Y*fy)),
		int(math.Round((z.X+z.W)*fx)), int(math.Round((z.Y+z.H)*fy)),
	).Intersect(image.Rectangle{Max: frame})
}

// Holds reports whether a face box lies in the zone: whether its centre is
// inside the zone of a frame of the given size.
func (z Zone) Holds(frame image.Point, box image.Rectangle) bool {
	if box.Empty() {
		return false
	}
	cx := float64(box.Min.X+box.Max.X) / 2
	cy := float64(box.Min.Y+box.Max.Y) / 2
	fx, fy := float64(frame.X), float64(frame.Y)
	return cx >= z.X*fx && cx < (z.X+z.W)*fx && cy >= z.Y*fy && cy < (z.Y+z.H)*fy
}

// Verdict is what the rules say of one frame, or why a window kept nothing.
// The strings other than Qualified are the skip reasons of docs/SPEC.md.
type Verdict string

// Verdicts.
const (
	Qualified     Verdict = "qualified"      // exactly one face counts
	NoFace        Verdict = "no-face"        // no face in the zone
	MultipleFaces Verdict = "multiple-faces" // several faces count: never kept
	LowQuality    Verdict = "low-quality"    // faces in the zone, none over the thresholds
)

// Rules decide whether a frame may give the visitor's face.
type Rules struct {
	Zone Zone
	// MinFace is the smallest side, in pixels, of a face that counts.
	MinFace int
	// MinScore is the lowest detector score of a face that counts.
	MinScore float64
}

// DefaultRules are the defaults of docs/SPEC.md: the whole frame, faces of 64
// pixels or more, scores of 0.8 or more.
func DefaultRules() Rules { return Rules{Zone: FullFrame, MinFace: 64, MinScore: 0.8} }

// Counts reports whether a face counts as "a face in the zone": its centre
// lies in the zone, its smaller side is at least MinFace and its score at
// least MinScore. Faces that do not count are still blurred in a crop.
func (r Rules) Counts(frame image.Point, f Face) bool {
	return r.Zone.Holds(frame, f.Box) &&
		min(f.Box.Dx(), f.Box.Dy()) >= r.MinFace &&
		f.Score >= r.MinScore // false for NaN
}

// Judge gives the verdict on the faces detected in a frame of the given size
// and, when the frame qualifies, the index of the visitor's face in faces
// (else -1). A frame qualifies when exactly one face counts; with several it
// never does, whatever their sizes and scores: a bystander must never be
// saved in place of the visitor.
func (r Rules) Judge(frame image.Point, faces []Face) (Verdict, int) {
	found, inZone := -1, false
	for i, f := range faces {
		if !r.Zone.Holds(frame, f.Box) {
			continue
		}
		inZone = true
		if !r.Counts(frame, f) {
			continue
		}
		if found >= 0 {
			return MultipleFaces, -1
		}
		found = i
	}
	switch {
	case found >= 0:
		return Qualified, found
	case inZone:
		return LowQuality, -1
	default:
		return NoFace, -1
	}
}
