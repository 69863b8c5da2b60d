package opencv

import (
	"fmt"
	"image"
	"math"

	"github.com/consentcam/consentcam/capture"
)

// DefaultCascade is the cascade of docs/SPEC.md, from Debian's opencv-data.
const DefaultCascade = "/usr/share/opencv4/lbpcascades/lbpcascade_frontalface_improved.xml"

// DetectorOptions tune the detectors; zero values mean the defaults.
type DetectorOptions struct {
	// MinScore drops YuNet candidates scoring under it (default 0.3). It is
	// lower than the rules' min_score on purpose: weaker faces still reach
	// the window, which blurs them when they overlap a crop, and probe,
	// which shows them to the installer.
	MinScore float64
	// MinSize is the smallest face, in frame pixels, the cascade looks for
	// (default 24: the LBP cascade's own window).
	MinSize int
}

// Detector defaults.
const (
	DefaultMinScore    = 0.3
	DefaultMinSize     = 24
	yunetNMS           = 0.3
	yunetTopK          = 5000
	cascadeScaleFactor = 1.1
	cascadeNeighbors   = 3
)

func (o DetectorOptions) withDefaults() DetectorOptions {
	if o.MinScore <= 0 {
		o.MinScore = DefaultMinScore
	}
	if o.MinSize <= 0 {
		o.MinSize = DefaultMinSize
	}
	return o
}

// NewDetector returns the detector of kind "yunet" (model is the ONNX
// file), "cascade" (cascade is the XML file, DefaultCascade when empty) or
// "auto": yunet when a model is given, else cascade.
func NewDetector(kind, model, cascade string, opts DetectorOptions) (capture.Detector, error) {
	if kind == "auto" {
		kind = "cascade"
		if model != "" {
			kind = "yunet"
		}
	}
	switch kind {
	case "yunet":
		if model == "" {
			return nil, fmt.Errorf("opencv: the yunet detector needs a model file")
		}
		return NewYuNet(model, opts)
	case "cascade":
		if cascade == "" {
			cascade = DefaultCascade
		}
		return NewCascade(cascade, opts)
	default:
		return nil, fmt.Errorf("opencv: unknown detector %q (auto, yunet or cascade)", kind)
	}
}

// scaleRect maps a box from a detector's input to frame pixels, clipped to
// the frame.
func scaleRect(x, y, w, h, sx, sy float64, frame image.Point) image.Rectangle {
	return image.Rect(
		int(math.Round(x*sx)), int(math.Round(y*sy)),
		int(math.Round((x+w)*sx)), int(math.Round((y+h)*sy)),
	).Intersect(image.Rectangle{Max: frame})
}
