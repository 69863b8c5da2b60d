package opencv

import (
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"
)

// WriteClip writes a video file of frames frames of size size at fps frames
// per second, MJPG in AVI (the codec and container every OpenCV build can
// write and read back), calling draw to paint each frame. The frame given
// to draw is reused: draw paints all of it.
//
// The clip holds only what draw paints (a still, a test scene): this package
// never writes a frame a camera gave.
func WriteClip(path string, size image.Point, fps float64, frames int, draw func(i int, frame *gocv.Mat)) (err error) {
	if size.X <= 0 || size.Y <= 0 || fps <= 0 || frames <= 0 {
		return fmt.Errorf("opencv: clip %s: size %v, fps %v and frames %d must be positive", path, size, fps, frames)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("opencv: clip: %w", err) // before OpenCV's own, louder, complaint
	}
	w, err := gocv.VideoWriterFile(path, "MJPG", fps, size.X, size.Y, true)
	if err != nil {
		return fmt.Errorf("opencv: clip %s: %w", path, err)
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("opencv: clip %s: %w", path, cerr)
		}
	}()
	if !w.IsOpened() {
		return fmt.Errorf("opencv: clip %s: cannot write MJPG in AVI there", path)
	}
	frame := gocv.NewMatWithSize(size.Y, size.X, gocv.MatTypeCV8UC3)
	defer frame.Close()
	for i := 0; i < frames; i++ {
		draw(i, &frame)
		if err := w.Write(frame); err != nil {
			return fmt.Errorf("opencv: clip %s: frame %d: %w", path, i, err)
		}
	}
	return nil
}

// StillClipOptions shape the clip of WriteStillClip; zero values mean the
// defaults.
type StillClipOptions struct {
	Size   image.Point // frame size (default 640x480)
	FPS    float64     // frames per second (default 12)
	Frames int         // frames of one loop (default 96: 8 s at 12 fps)
}

// Still clip defaults.
const (
	DefaultStillClipFPS    = 12
	DefaultStillClipFrames = 96
)

// DefaultStillClipSize is the frame size of a still clip: VGA, as most
// webcams give.
var DefaultStillClipSize = image.Pt(640, 480)

// The loop of a still clip, as fractions of it: the person stands in front
// of the camera until stillLeave, walks out to the right until stillAway,
// is out of view until stillBack, and walks back in until the end.
const (
	stillLeave = 0.6
	stillAway  = 0.7
	stillBack  = 0.9
	stillSway  = 16 // pixels of sway while standing
)

// stillWall is the background where the still is not: a gray-beige wall
// (BGR).
var stillWall = gocv.NewScalar(150, 160, 170, 0)

// WriteStillClip writes a looping scene made from one still picture of a
// person (JPEG, PNG or any image OpenCV decodes), for a demo without a
// camera: MJPG in AVI, as WriteClip. The still, scaled to fit the frame on a
// plain wall, sways by a few pixels so that the picture moves; then the
// person walks out of view, stays away for a while and walks back, so each
// loop shows both a face and nobody. Played with SourceOptions.Loop, the
// last frame leads smoothly into the first.
//
// It returns where the scaled still lies in each frame: partly or wholly
// outside the frame while the person walks out and back, and empty while
// they are away.
func WriteStillClip(path string, still []byte, opts StillClipOptions) ([]image.Rectangle, error) {
	if opts.Size == (image.Point{}) {
		opts.Size = DefaultStillClipSize
	}
	if opts.FPS == 0 {
		opts.FPS = DefaultStillClipFPS
	}
	if opts.Frames == 0 {
		opts.Frames = DefaultStillClipFrames
	}
	if opts.Size.X <= 0 || opts.Size.Y <= 0 || opts.FPS <= 0 || opts.Frames <= 0 {
		return nil, fmt.Errorf("opencv: still clip: size %v, fps %v and frames %d must be positive", opts.Size, opts.FPS, opts.Frames)
	}
	img, err := gocv.IMDecode(still, gocv.IMReadColor)
	if err != nil {
		return nil, fmt.Errorf("opencv: still clip: decode the still: %w", err)
	}
	defer img.Close()
	if img.Empty() {
		return nil, errors.New("opencv: still clip: the still is not an image OpenCV decodes")
	}

	// Scale the still to fit the frame, centred.
	s := math.Min(float64(opts.Size.X)/float64(img.Cols()), float64(opts.Size.Y)/float64(img.Rows()))
	sz := image.Pt(max(1, int(math.Round(float64(img.Cols())*s))), max(1, int(math.Round(float64(img.Rows())*s))))
	scaled := gocv.NewMat()
	defer scaled.Close()
	gocv.Resize(img, &scaled, sz, 0, 0, gocv.InterpolationArea)
	home := image.Rectangle{Max: sz}.Add(opts.Size.Sub(sz).Div(2))

	placed := make([]image.Rectangle, opts.Frames)
	bounds := image.Rectangle{Max: opts.Size}
	err = WriteClip(path, opts.Size, opts.FPS, opts.Frames, func(i int, frame *gocv.Mat) {
		frame.SetTo(stillWall)
		at, ok := stillAt(float64(i)/float64(opts.Frames), home, opts.Size.X)
		if !ok {
			return
		}
		placed[i] = at
		clip := at.Intersect(bounds)
		if clip.Empty() {
			return
		}
		from := scaled.Region(clip.Sub(at.Min))
		to := frame.Region(clip)
		from.CopyTo(&to)
		from.Close()
		to.Close()
	})
	if err != nil {
		return nil, err
	}
	return placed, nil
}

// stillAt is where the still lies at time t of the loop (0 <= t < 1): home
// moved by the sway or by the walk; false while the person is away.
func stillAt(t float64, home image.Rectangle, width int) (image.Rectangle, bool) {
	walk := func(u float64) int { // smooth from 0 to width as u goes 0 to 1
		return int(math.Round(float64(width) * u * u * (3 - 2*u)))
	}
	switch {
	case t < stillLeave:
		u := 2 * math.Pi * t / stillLeave // a whole sway, still at both ends
		d := image.Pt(int(math.Round(stillSway*math.Sin(u))), int(math.Round(stillSway/2*math.Sin(2*u))))
		return home.Add(d), true
	case t < stillAway:
		return home.Add(image.Pt(walk((t-stillLeave)/(stillAway-stillLeave)), 0)), true
	case t < stillBack:
		return image.Rectangle{}, false
	default:
		return home.Add(image.Pt(walk(1-(t-stillBack)/(1-stillBack)), 0)), true
	}
}
