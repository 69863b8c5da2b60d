package opencv

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"image"
	"math"
	"os"
	"sync"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
)

// YuNet detects faces with a fixed-size YuNet ONNX model, run by the shim
// with cv::dnn and decoded as OpenCV 4.6's FaceDetectorYN does (which it does
// not call: see shim.cpp). Frames are resized (not letterboxed) to the
// model's input, and boxes mapped back to the frame. It is safe for
// concurrent use; calls are serialised.
type YuNet struct {
	mu   sync.Mutex
	p    *C.cc_yunet
	size image.Point // the model's input
	buf  []float32
	eb   errBuf
}

var _ capture.Detector = (*YuNet)(nil)

// NewYuNet loads a YuNet model; its input size is read from the file.
func NewYuNet(model string, opts DetectorOptions) (*YuNet, error) {
	opts = opts.withDefaults()
	data, err := os.ReadFile(model)
	if err != nil {
		return nil, fmt.Errorf("opencv: yunet model: %w", err)
	}
	size, err := onnxInputSize(data)
	if err != nil {
		return nil, fmt.Errorf("opencv: yunet model %s: %w", model, err)
	}
	cmodel := C.CString(model)
	defer C.free(unsafe.Pointer(cmodel))
	var eb errBuf
	p := C.cc_yunet_new(cmodel, C.int(size.X), C.int(size.Y), C.float(opts.MinScore),
		C.float(yunetNMS), C.int(yunetTopK), eb.ptr(), errLen)
	if p == nil {
		return nil, fmt.Errorf("opencv: yunet model %s: %w", model, eb.err())
	}
	return &YuNet{p: p, size: size}, nil
}

// Name is "yunet".
func (y *YuNet) Name() string { return "yunet" }

// InputSize is the model's input size, which every frame is resized to.
func (y *YuNet) InputSize() image.Point { return y.size }

// Detect finds the faces in a frame.
func (y *YuNet) Detect(f capture.Frame) ([]capture.Face, error) {
	m, release, err := bgr(f)
	if err != nil {
		return nil, err
	}
	defer release()
	return y.DetectMat(m)
}

// DetectMat finds the faces in an 8-bit BGR Mat.
func (y *YuNet) DetectMat(m gocv.Mat) ([]capture.Face, error) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.p == nil {
		return nil, capture.ErrClosed
	}
	n := int(C.cc_yunet_detect(y.p, matPtr(m), y.eb.ptr(), errLen))
	if n < 0 {
		return nil, fmt.Errorf("opencv: yunet: %w", y.eb.err())
	}
	if n == 0 {
		return nil, nil
	}
	const k = C.CC_YUNET_FACE_FLOATS
	if cap(y.buf) < n*k {
		y.buf = make([]float32, n*k)
	}
	buf := y.buf[:n*k]
	C.cc_yunet_faces(y.p, (*C.float)(unsafe.Pointer(&buf[0])), C.int(n))

	frame := image.Pt(m.Cols(), m.Rows())
	sx := float64(frame.X) / float64(y.size.X)
	sy := float64(frame.Y) / float64(y.size.Y)
	faces := make([]capture.Face, 0, n)
	for i := 0; i < n; i++ {
		r := buf[i*k : (i+1)*k]
		box := scaleRect(float64(r[0]), float64(r[1]), float64(r[2]), float64(r[3]), sx, sy, frame)
		if box.Empty() {
			continue
		}
		lm := make([]image.Point, 5)
		for j := range lm {
			lm[j] = image.Pt(int(math.Round(float64(r[4+2*j])*sx)), int(math.Round(float64(r[5+2*j])*sy)))
		}
		faces = append(faces, capture.Face{Box: box, Score: float64(r[14]), Landmarks: lm})
	}
	return faces, nil
}

// Close frees the detector.
func (y *YuNet) Close() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.p != nil {
		C.cc_yunet_free(y.p)
		y.p = nil
	}
	return nil
}
