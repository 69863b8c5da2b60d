package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Log attribute keys.
const (
	logKeyErr   = "err"
	logKeyRetry = "retry_in"
	logKeyTries = "tries"
)

// Default backoff of Reopen.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Reopen is a Source that keeps another one going: when the source fails,
// or a stream ends, it is closed and opened again, waiting MinBackoff after
// the first failure and twice as long after each further one, up to
// MaxBackoff, until a frame is read again.
//
// The end of a file that does not loop (io.EOF from the source) is not a
// failure: Reopen passes io.EOF on and reads nothing more, because playing a
// file once is what was asked. Sources report a stream or a device that stops
// as an error, never as io.EOF, so those are reopened.
//
// Set the fields before the first Read. Close may be called from another
// goroutine; it interrupts a backoff wait.
type Reopen struct {
	// Open opens the underlying source.
	Open func(ctx context.Context) (Source, error)
	// MinBackoff and MaxBackoff bound the wait between attempts; zero
	// means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// OnFail is called once when the source starts failing (with the
	// first error), OnRecover once when a frame is read after that; the
	// retries in between are only logged. Either may be nil.
	OnFail    func(error)
	OnRecover func()
	Logger    *slog.Logger

	once   sync.Once
	done   chan struct{} // closed by Close
	mu     sync.Mutex    // held by Read; guards the fields below
	src    Source
	tries  int  // failures since the last frame read
	outage bool // OnFail called, OnRecover not yet
	ended  bool // io.EOF seen
	closed bool
}

func (r *Reopen) init() { r.once.Do(func() { r.done = make(chan struct{}) }) }

// Read returns the next frame, reopening the source as often as needed. It
// returns early with ctx's error when ctx is done, ErrClosed after Close,
// and io.EOF once a file that does not loop has ended.
func (r *Reopen) Read(ctx context.Context) (Frame, error) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case r.closed:
			return nil, ErrClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case r.ended:
			return nil, io.EOF
		}
		if r.src == nil {
			if r.tries > 0 {
				if err := r.wait(ctx, r.backoff()); err != nil {
					return nil, err
				}
			}
			src, err := r.Open(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.fail(fmt.Errorf("open source: %w", err))
				continue
			}
			r.src = src
		}
		f, err := r.src.Read(ctx)
		switch {
		case err == nil:
			r.recovered()
			return f, nil
		case errors.Is(err, io.EOF):
			r.ended = true
			r.closeSource()
			return nil, io.EOF
		case ctx.Err() != nil:
			return nil, ctx.Err() // cancelled, not a failure of the source
		default:
			r.closeSource()
			r.fail(fmt.Errorf("read source: %w", err))
		}
	}
}

// Close closes the underlying source. It waits for a Read in progress to
// return, interrupting its backoff wait.
func (r *Reopen) Close() error {
	r.init()
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.closeSource()
}

func (r *Reopen) closeSource() error {
	if r.src == nil {
		return nil
	}
	err := r.src.Close()
	r.src = nil
	return err
}

func (r *Reopen) fail(err error) {
	r.tries++
	if !r.outage {
		r.outage = true
		r.logger().Warn("source failed", logKeyErr, err, logKeyRetry, r.backoff())
		if r.OnFail != nil {
			r.OnFail(err)
		}
		return
	}
	r.logger().Info("source still failing", logKeyErr, err, logKeyTries, r.tries, logKeyRetry, r.backoff())
}

func (r *Reopen) recovered() {
	r.tries = 0
	if !r.outage {
		return
	}
	r.outage = false
	r.logger().Info("source recovered")
	if r.OnRecover != nil {
		r.OnRecover()
	}
}

// backoff is the wait before the next attempt after r.tries failures.
func (r *Reopen) backoff() time.Duration {
	lo, hi := r.MinBackoff, r.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < r.tries && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func (r *Reopen) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrClosed
	}
}

func (r *Reopen) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
