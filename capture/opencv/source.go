package opencv

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/consentcam/consentcam/capture"
)

// SourceOptions say where frames come from.
type SourceOptions struct {
	// URL is a V4L2 device path (/dev/video0) or index (0), an rtsp://,
	// rtsps://, http:// or https:// URL (OpenCV's FFmpeg backend), or the
	// path of a video file.
	URL string
	// Realtime plays a file at its own frame rate; otherwise frames come as
	// fast as they decode. Devices and streams always run at their own pace.
	Realtime bool
	// Loop starts a file again at its end instead of returning io.EOF.
	Loop bool
	// OpenTimeout and ReadTimeout bound how long a stream may block when
	// opening and reading (the FFmpeg backend's timeouts); zero means
	// DefaultOpenTimeout and DefaultReadTimeout.
	OpenTimeout, ReadTimeout time.Duration
}

// Stream timeouts.
const (
	DefaultOpenTimeout = 10 * time.Second
	DefaultReadTimeout = 5 * time.Second
)

// fallbackFPS paces a file whose frame rate OpenCV does not know.
const fallbackFPS = 25

// ErrNoFrame is returned when a device or a stream gives no frame: it ended
// or failed. capture.Reopen reopens such a source.
var ErrNoFrame = errors.New("opencv: no frame: the device or stream stopped")

type sourceKind int

const (
	kindFile sourceKind = iota
	kindDevice
	kindStream
)

// Source reads frames from a device, a stream or a video file. It is not
// safe for concurrent use.
type Source struct {
	opts  SourceOptions
	kind  sourceKind
	index int    // device index, when URL is a bare number
	name  string // URL with any password removed, for messages
	cap   *C.cc_capture
	fps   float64
	start time.Time // when frame 0 of the pacing clock was due
	n     int       // frames read since start
	eb    errBuf
}

var _ capture.Source = (*Source)(nil)

// Open opens a source. Opening a stream may block up to OpenTimeout, whatever
// ctx says.
func Open(ctx context.Context, opts SourceOptions) (*Source, error) {
	s := &Source{opts: opts, index: -1}
	if s.opts.OpenTimeout <= 0 {
		s.opts.OpenTimeout = DefaultOpenTimeout
	}
	if s.opts.ReadTimeout <= 0 {
		s.opts.ReadTimeout = DefaultReadTimeout
	}
	if err := s.classify(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) classify() error {
	u := strings.TrimSpace(s.opts.URL)
	s.name = u
	switch {
	case u == "":
		return errors.New("opencv: source: empty URL")
	case strings.HasPrefix(u, "/dev/"):
		s.kind = kindDevice
		return nil
	}
	if n, err := strconv.Atoi(u); err == nil {
		if n < 0 {
			return fmt.Errorf("opencv: source %q: a device index cannot be negative", u)
		}
		s.kind, s.index = kindDevice, n
		return nil
	}
	if scheme, _, ok := strings.Cut(u, "://"); ok {
		pu, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("opencv: source: bad URL: %w", err)
		}
		s.name = pu.Redacted()
		switch strings.ToLower(scheme) {
		case "rtsp", "rtsps", "http", "https":
			s.kind = kindStream
			return nil
		case "file":
			u = pu.Path
		default:
			return fmt.Errorf("opencv: source %s: unsupported scheme %q (rtsp, rtsps, http or https)", s.name, scheme)
		}
	}
	fi, err := os.Stat(u)
	if err != nil {
		return fmt.Errorf("opencv: source: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("opencv: source %s is a directory, not a video file", u)
	}
	s.kind, s.opts.URL, s.name = kindFile, u, u
	return nil
}

func (s *Source) open() error {
	api := gocv.VideoCaptureFFmpeg
	if s.kind == kindDevice {
		api = gocv.VideoCaptureV4L2
	}
	var curl *C.char
	if s.index < 0 {
		curl = C.CString(s.opts.URL)
		defer C.free(unsafe.Pointer(curl))
	}
	p := C.cc_capture_open(curl, C.int(s.index), C.int(api),
		C.int(s.opts.OpenTimeout.Milliseconds()), C.int(s.opts.ReadTimeout.Milliseconds()),
		s.eb.ptr(), errLen)
	if p == nil {
		return fmt.Errorf("opencv: open %s: %w", s.name, s.eb.err())
	}
	s.cap = p
	s.fps = float64(C.cc_capture_fps(p))
	if math.IsNaN(s.fps) || s.fps <= 0 || s.fps > 1000 {
		s.fps = fallbackFPS
	}
	return nil
}

// FPS is the frame rate the source reports (fallbackFPS for a file that
// does not say).
func (s *Source) FPS() float64 { return s.fps }

// Read returns the next frame: io.EOF at the end of a file that does not
// loop, ErrNoFrame when a device or stream stops. A file played in real time
// waits, as long as ctx allows, until its next frame is due.
func (s *Source) Read(ctx context.Context) (capture.Frame, error) {
	if s.cap == nil {
		return nil, capture.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.kind == kindFile && s.opts.Realtime {
		if err := s.pace(ctx); err != nil {
			return nil, err
		}
	}
	m := gocv.NewMat()
	ok, err := s.read(m)
	if err == nil && !ok && s.kind == kindFile && s.opts.Loop {
		// Start again from the top: reopening works for every container.
		C.cc_capture_free(s.cap)
		s.cap = nil
		if err = s.open(); err == nil {
			if ok, err = s.read(m); err == nil && !ok {
				err = fmt.Errorf("opencv: %s has no frame to loop over", s.name)
			}
		}
	}
	switch {
	case err != nil:
	case !ok && s.kind == kindFile:
		err = io.EOF
	case !ok:
		err = fmt.Errorf("%w (%s)", ErrNoFrame, s.name)
	case m.Type() != gocv.MatTypeCV8UC3:
		err = fmt.Errorf("opencv: %s gave %v frames, not 8-bit BGR", s.name, m.Type())
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	s.n++
	return &Frame{mat: m}, nil
}

func (s *Source) read(m gocv.Mat) (bool, error) {
	switch C.cc_capture_read(s.cap, matPtr(m), s.eb.ptr(), errLen) {
	case 1:
		return true, nil
	case 0:
		return false, nil
	default:
		return false, fmt.Errorf("opencv: read %s: %w", s.name, s.eb.err())
	}
}

// pace waits until frame s.n is due at s.fps. A reader more than a second
// late restarts the clock rather than being handed a burst of frames.
func (s *Source) pace(ctx context.Context) error {
	now := time.Now()
	due := s.start.Add(time.Duration(float64(s.n) / s.fps * float64(time.Second)))
	if s.start.IsZero() || now.Sub(due) > time.Second {
		s.start, s.n = now, 0
		return nil
	}
	if d := due.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close releases the device, stream or file.
func (s *Source) Close() error {
	if s.cap != nil {
		C.cc_capture_free(s.cap)
		s.cap = nil
	}
	return nil
}
