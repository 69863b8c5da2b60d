package opencv

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"image"
	"os"
	"sync"
	"unsafe"

	"github.com/consentcam/consentcam/capture"
)

// Cascade detects faces with an OpenCV cascade classifier (LBP or Haar) on
// the histogram-equalised gray frame, at full resolution. Its faces have
// Score 1 and no landmarks. It is safe for concurrent use; calls are
// serialised.
type Cascade struct {
	mu      sync.Mutex
	p       *C.cc_cascade
	minSize int
	buf     []C.int
	eb      errBuf
}

var _ capture.Detector = (*Cascade)(nil)

// NewCascade loads a cascade XML file.
func NewCascade(path string, opts DetectorOptions) (*Cascade, error) {
	opts = opts.withDefaults()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opencv: cascade: %w", err)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var eb errBuf
	p := C.cc_cascade_new(cpath, eb.ptr(), errLen)
	if p == nil {
		return nil, fmt.Errorf("opencv: cascade %s: %w", path, eb.err())
	}
	return &Cascade{p: p, minSize: opts.MinSize}, nil
}

// Name is "cascade".
func (c *Cascade) Name() string { return "cascade" }

// Detect finds the faces in a frame.
func (c *Cascade) Detect(f capture.Frame) ([]capture.Face, error) {
	m, release, err := bgr(f)
	if err != nil {
		return nil, err
	}
	defer release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return nil, capture.ErrClosed
	}
	n := int(C.cc_cascade_detect(c.p, matPtr(m), C.int(c.minSize), C.double(cascadeScaleFactor), C.int(cascadeNeighbors), c.eb.ptr(), errLen))
	if n < 0 {
		return nil, fmt.Errorf("opencv: cascade: %w", c.eb.err())
	}
	if n == 0 {
		return nil, nil
	}
	if cap(c.buf) < 4*n {
		c.buf = make([]C.int, 4*n)
	}
	buf := c.buf[:4*n]
	C.cc_cascade_faces(c.p, &buf[0], C.int(n))
	faces := make([]capture.Face, n)
	for i := range faces {
		r := buf[4*i : 4*i+4]
		faces[i] = capture.Face{Box: image.Rect(int(r[0]), int(r[1]), int(r[0]+r[2]), int(r[1]+r[3])), Score: 1}
	}
	return faces, nil
}

// Close frees the classifier.
func (c *Cascade) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		C.cc_cascade_free(c.p)
		c.p = nil
	}
	return nil
}
