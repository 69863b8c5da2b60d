package opencv

/*
#cgo pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"strings"
	"unsafe"

	"gocv.io/x/gocv"
)

// errLen is the size of the buffer the shim writes its error messages to.
const errLen = 512

// errBuf receives the shim's error messages. The handles that the shim
// calls on every frame (Source, YuNet, Cascade) keep one each, used under
// their own exclusion, so that a call that succeeds allocates nothing.
type errBuf [errLen]C.char

// ptr empties the buffer, so that no earlier message is read for a later
// error, and returns it for the shim.
func (b *errBuf) ptr() *C.char {
	b[0] = 0
	return &b[0]
}

func (b *errBuf) err() error {
	msg := strings.TrimSpace(C.GoString(&b[0]))
	if msg == "" {
		msg = "unknown OpenCV error"
	}
	return errors.New(msg)
}

// matPtr is the cv::Mat* behind a gocv.Mat, for the shim.
func matPtr(m gocv.Mat) unsafe.Pointer { return unsafe.Pointer(m.Ptr()) }

// SetNumThreads sets the size of OpenCV's thread pool for the whole process
// (cv::setNumThreads, through the shim: gocv v0.31.0 does not wrap it). 0
// runs everything on the calling thread; a negative n restores OpenCV's
// default, one thread per core.
func SetNumThreads(n int) { C.cc_set_num_threads(C.int(n)) }
