package opencv

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
)

// Frame is a decoded picture: an 8-bit BGR gocv.Mat.
type Frame struct {
	mat    gocv.Mat
	closed bool
}

var _ capture.Frame = (*Frame)(nil)

// Size is the frame's width and height.
func (f *Frame) Size() image.Point { return image.Pt(f.mat.Cols(), f.mat.Rows()) }

// RGBA copies the pixels of r, clipped to the frame, into a new image.
func (f *Frame) RGBA(r image.Rectangle) (*image.RGBA, error) {
	if f.closed {
		return nil, capture.ErrClosed
	}
	r = r.Intersect(image.Rectangle{Max: f.Size()})
	if r.Empty() {
		return nil, fmt.Errorf("opencv: region outside the %v frame", f.Size())
	}
	data, err := f.mat.DataPtrUint8() // checks the Mat is continuous
	if err != nil {
		return nil, fmt.Errorf("opencv: frame pixels: %w", err)
	}
	stride := 3 * f.mat.Cols()
	dst := image.NewRGBA(r)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		src := data[y*stride+3*r.Min.X : y*stride+3*r.Max.X]
		out := dst.Pix[dst.PixOffset(r.Min.X, y):]
		for i, j := 0, 0; i < len(src); i, j = i+3, j+4 {
			out[j], out[j+1], out[j+2], out[j+3] = src[i+2], src[i+1], src[i], 0xff
		}
	}
	return dst, nil
}

// Close releases the frame's Mat. It may be called more than once.
func (f *Frame) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return f.mat.Close()
}

// bgr returns the BGR Mat of any capture.Frame: the frame's own Mat for a
// *Frame (release does nothing), else a copy that release closes.
func bgr(f capture.Frame) (m gocv.Mat, release func(), err error) {
	if of, ok := f.(*Frame); ok {
		if of.closed {
			return gocv.Mat{}, nil, capture.ErrClosed
		}
		return of.mat, func() {}, nil
	}
	img, err := f.RGBA(image.Rectangle{Max: f.Size()})
	if err != nil {
		return gocv.Mat{}, nil, err
	}
	rgba, err := gocv.NewMatFromBytes(img.Rect.Dy(), img.Rect.Dx(), gocv.MatTypeCV8UC4, img.Pix)
	if err != nil {
		return gocv.Mat{}, nil, fmt.Errorf("opencv: frame to Mat: %w", err)
	}
	defer rgba.Close()
	m = gocv.NewMat()
	gocv.CvtColor(rgba, &m, gocv.ColorRGBAToBGR)
	return m, func() { m.Close() }, nil
}
