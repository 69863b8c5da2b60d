package capture

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
)

// Frame is one decoded picture from a Source, in pixels from (0, 0).
type Frame interface {
	// Size is the frame's width and height.
	Size() image.Point
	// RGBA copies the pixels of r, clipped to the frame, into a new image
	// whose bounds are that clipped rectangle; an error if it is empty.
	RGBA(r image.Rectangle) (*image.RGBA, error)
	// Close releases the frame's pixels.
	Close() error
}

// Source gives frames: a camera, a stream or a video file.
type Source interface {
	// Read returns the next frame, which the caller closes; io.EOF at the
	// end of a file that does not loop.
	Read(ctx context.Context) (Frame, error)
	Close() error
}

// Detector finds faces in a frame.
type Detector interface {
	Detect(Frame) ([]Face, error)
	// Name is "yunet" or "cascade", as in audit records.
	Name() string
	Close() error
}

// ErrClosed is returned by the methods of a closed frame or source.
var ErrClosed = errors.New("capture: closed")

// NewImageFrame returns a Frame holding a copy of img, moved to start at
// (0, 0): for detectors and tests that have a picture rather than a camera.
func NewImageFrame(img image.Image) Frame {
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
	return &imageFrame{img: dst, size: dst.Rect.Size()}
}

type imageFrame struct {
	img  *image.RGBA // nil once closed
	size image.Point
}

func (f *imageFrame) Size() image.Point { return f.size }

func (f *imageFrame) RGBA(r image.Rectangle) (*image.RGBA, error) {
	if f.img == nil {
		return nil, ErrClosed
	}
	r = r.Intersect(f.img.Rect)
	if r.Empty() {
		return nil, fmt.Errorf("capture: region outside the %v frame", f.size)
	}
	dst := image.NewRGBA(r)
	draw.Draw(dst, r, f.img, r.Min, draw.Src)
	return dst, nil
}

func (f *imageFrame) Close() error {
	f.img = nil
	return nil
}
