package capture_test

import (
	"image"
	"math"
	"testing"

	"github.com/consentcam/consentcam/capture"
)

var frame640 = image.Pt(640, 480)

func TestZoneRect(t *testing.T) {
	tests := []struct {
		name string
		zone capture.Zone
		want image.Rectangle
	}{
		{"full frame", capture.FullFrame, image.Rect(0, 0, 640, 480)},
		{"left half", capture.Zone{X: 0, Y: 0, W: 0.5, H: 1}, image.Rect(0, 0, 320, 480)},
		{"centre", capture.Zone{X: 0.25, Y: 0.25, W: 0.5, H: 0.5}, image.Rect(160, 120, 480, 360)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.zone.Rect(frame640); got != tt.want {
				t.Errorf("Rect = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZoneHolds(t *testing.T) {
	left := capture.Zone{X: 0, Y: 0, W: 0.5, H: 1}
	tests := []struct {
		name string
		box  image.Rectangle
		want bool
	}{
		{"inside", image.Rect(100, 100, 200, 200), true},
		{"straddling, centre inside", image.Rect(250, 100, 380, 200), true},   // centre x 315
		{"straddling, centre outside", image.Rect(270, 100, 380, 200), false}, // centre x 325
		{"centre on the boundary", image.Rect(300, 100, 340, 200), false},     // centre x 320: half-open
		{"outside", image.Rect(400, 100, 500, 200), false},
		{"empty box", image.Rectangle{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := left.Holds(frame640, tt.box); got != tt.want {
				t.Errorf("Holds(%v) = %v, want %v", tt.box, got, tt.want)
			}
		})
	}
}

func TestZoneOf(t *testing.T) {
	tests := []struct {
		name    string
		in      []float64
		wantErr bool
	}{
		{"full", []float64{0, 0, 1, 1}, false},
		{"right third", []float64{2.0 / 3, 0, 1.0 / 3, 1}, false},
		{"three numbers", []float64{0, 0, 1}, true},
		{"negative x", []float64{-0.1, 0, 0.5, 1}, true},
		{"zero width", []float64{0, 0, 0, 1}, true},
		{"past the right edge", []float64{0.6, 0, 0.5, 1}, true},
		{"NaN", []float64{math.NaN(), 0, 1, 1}, true},
		{"infinite", []float64{0, 0, math.Inf(1), 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := capture.ZoneOf(tt.in)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("ZoneOf(%v) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func face(x, y, w, h int, score float64) capture.Face {
	return capture.Face{Box: image.Rect(x, y, x+w, y+h), Score: score}
}

func TestRulesJudge(t *testing.T) {
	rules := capture.Rules{Zone: capture.Zone{X: 0, Y: 0, W: 0.5, H: 1}, MinFace: 64, MinScore: 0.8}
	tests := []struct {
		name      string
		faces     []capture.Face
		want      capture.Verdict
		wantIndex int
	}{
		{"nobody", nil, capture.NoFace, -1},
		{"one visitor", []capture.Face{face(100, 100, 100, 120, 0.95)}, capture.Qualified, 0},
		{"two in the zone", []capture.Face{face(20, 100, 100, 120, 0.95), face(180, 100, 100, 120, 0.9)}, capture.MultipleFaces, -1},
		{"two in the zone, the second barely over the thresholds", []capture.Face{face(20, 100, 100, 120, 0.99), face(180, 100, 64, 64, 0.8)}, capture.MultipleFaces, -1},
		{"visitor in the zone, second person outside", []capture.Face{face(400, 100, 100, 120, 0.99), face(100, 100, 100, 120, 0.9)}, capture.Qualified, 1},
		{"only a face outside the zone", []capture.Face{face(400, 100, 100, 120, 0.99)}, capture.NoFace, -1},
		{"too small", []capture.Face{face(100, 100, 63, 120, 0.99)}, capture.LowQuality, -1},
		{"score too low", []capture.Face{face(100, 100, 100, 120, 0.79)}, capture.LowQuality, -1},
		{"NaN score", []capture.Face{face(100, 100, 100, 120, math.NaN())}, capture.LowQuality, -1},
		{"visitor and a tiny face in the zone", []capture.Face{face(200, 20, 20, 20, 0.9), face(100, 100, 100, 120, 0.95)}, capture.Qualified, 1},
		{"visitor and a weak face in the zone", []capture.Face{face(100, 100, 100, 120, 0.95), face(220, 300, 80, 80, 0.5)}, capture.Qualified, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, i := rules.Judge(frame640, tt.faces)
			if got != tt.want || i != tt.wantIndex {
				t.Errorf("Judge = %q, %d; want %q, %d", got, i, tt.want, tt.wantIndex)
			}
		})
	}
}

func TestDefaultRules(t *testing.T) {
	got := capture.DefaultRules()
	want := capture.Rules{Zone: capture.FullFrame, MinFace: 64, MinScore: 0.8}
	if got != want {
		t.Errorf("DefaultRules() = %+v, want the SPEC defaults %+v", got, want)
	}
}
