package capture_test

import (
	"context"
	"errors"
	"image"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/capture"
)

// This package runs without OpenCV, so Reopen is tested here against
// scripted sources; capture/opencv tests it against real failing streams.

// scripted is a Source that gives frames frames, then fails with err (or
// io.EOF when err is nil).
type scripted struct {
	frames int
	err    error
	closed bool
}

func (s *scripted) Read(ctx context.Context) (capture.Frame, error) {
	if s.closed {
		return nil, capture.ErrClosed
	}
	if s.frames == 0 {
		if s.err == nil {
			return nil, io.EOF
		}
		return nil, s.err
	}
	s.frames--
	return capture.NewImageFrame(image.NewRGBA(image.Rect(0, 0, 4, 4))), nil
}

func (s *scripted) Close() error { s.closed = true; return nil }

// opener hands out the sources of a script, one per Open; an entry with a
// nil source is a failed open.
type opener struct {
	mu      sync.Mutex
	script  []*scripted
	opened  []*scripted
	opens   int
	fails   []error
	recover int
}

var errRefused = errors.New("connection refused")

func (o *opener) open(ctx context.Context) (capture.Source, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opens++
	if len(o.script) == 0 {
		return nil, errRefused
	}
	s := o.script[0]
	o.script = o.script[1:]
	if s == nil {
		return nil, errRefused
	}
	o.opened = append(o.opened, s)
	return s, nil
}

func (o *opener) reopen(min, max time.Duration, log *slog.Logger) *capture.Reopen {
	return &capture.Reopen{
		Open: o.open, MinBackoff: min, MaxBackoff: max, Logger: log,
		OnFail:    func(err error) { o.fails = append(o.fails, err) },
		OnRecover: func() { o.recover++ },
	}
}

func readN(t *testing.T, r capture.Source, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		f, err := r.Read(context.Background())
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		f.Close()
	}
}

func TestReopenRecoversFromFailures(t *testing.T) {
	stalled := errors.New("stream stalled")
	o := &opener{script: []*scripted{
		{frames: 3, err: stalled}, // a stream that stops
		nil, nil,                  // two refused reconnections
		{frames: 2, err: stalled}, // back for two frames
		{frames: 5, err: stalled},
	}}
	r := o.reopen(time.Millisecond, 4*time.Millisecond, nil)
	defer r.Close()

	readN(t, r, 3+2+5)
	if got, want := o.opens, 5; got != want {
		t.Errorf("opens = %d, want %d", got, want)
	}
	// Two outages: one from frame 3 until frame 4, one after frame 5. Each
	// is reported once, however many attempts it took.
	if len(o.fails) != 2 || o.recover != 2 {
		t.Fatalf("OnFail called %d times, OnRecover %d; want 2 and 2", len(o.fails), o.recover)
	}
	if !errors.Is(o.fails[0], stalled) {
		t.Errorf("first failure %v, want the stream's error", o.fails[0])
	}
	for i, s := range o.opened[:2] {
		if !s.closed {
			t.Errorf("failed source %d not closed", i)
		}
	}
}

func TestReopenPassesTheEndOfAFileOn(t *testing.T) {
	o := &opener{script: []*scripted{{frames: 2}, {frames: 2}}}
	r := o.reopen(time.Millisecond, time.Millisecond, nil)
	defer r.Close()
	readN(t, r, 2)
	for i := 0; i < 2; i++ {
		if _, err := r.Read(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("read %d after the end: %v, want io.EOF", i, err)
		}
	}
	if o.opens != 1 || len(o.fails) != 0 {
		t.Errorf("opens = %d, failures = %d; a file that ended must not be reopened", o.opens, len(o.fails))
	}
	if !o.opened[0].closed {
		t.Error("the ended source was not closed")
	}
}

func TestReopenBacksOffExponentially(t *testing.T) {
	rec := &recorder{}
	o := &opener{script: []*scripted{nil, nil, nil, nil, nil, {frames: 1}}}
	r := o.reopen(time.Millisecond, 4*time.Millisecond, slog.New(rec))
	defer r.Close()
	readN(t, r, 1)
	want := []time.Duration{1, 2, 4, 4, 4} // ms, capped at MaxBackoff
	got := rec.retries()
	if len(got) != len(want) {
		t.Fatalf("retry waits %v, want %v ms", got, want)
	}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("retry waits %v, want %v ms", got, want)
		}
	}
}

func TestReopenReturnsWhenCancelled(t *testing.T) {
	tests := []struct {
		name    string
		stop    func(cancel context.CancelFunc, r *capture.Reopen)
		wantErr error
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ *capture.Reopen) { cancel() }, context.Canceled},
		{"closed", func(_ context.CancelFunc, r *capture.Reopen) { r.Close() }, capture.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failed := make(chan struct{})
			// Every open fails and the backoff is an hour: only the
			// cancellation can end Read.
			r := &capture.Reopen{
				Open:       func(context.Context) (capture.Source, error) { return nil, errRefused },
				MinBackoff: time.Hour, MaxBackoff: time.Hour,
				OnFail: func(error) { close(failed) },
			}
			defer r.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error)
			go func() {
				_, err := r.Read(ctx)
				done <- err
			}()
			<-failed
			tt.stop(cancel, r)
			if err := <-done; !errors.Is(err, tt.wantErr) {
				t.Errorf("Read = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// recorder is a slog.Handler keeping the retry_in of each record.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			r.waits = append(r.waits, a.Value.Duration())
		}
		return true
	})
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
func (r *recorder) retries() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}
