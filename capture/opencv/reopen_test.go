package opencv_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
)

// events records a Reopen's OnFail and OnRecover calls.
type events struct {
	mu        sync.Mutex
	fails     []error
	recovered int
	failed    chan struct{} // closed on the first failure
}

func newEvents() *events { return &events{failed: make(chan struct{})} }

func (e *events) reopen(url string) *capture.Reopen {
	return &capture.Reopen{
		Open: func(ctx context.Context) (capture.Source, error) {
			return opencv.Open(ctx, opencv.SourceOptions{URL: url})
		},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnFail: func(err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if len(e.fails) == 0 {
				close(e.failed)
			}
			e.fails = append(e.fails, err)
		},
		OnRecover: func() { e.mu.Lock(); e.recovered++; e.mu.Unlock() },
	}
}

func (e *events) counts() (int, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.fails), e.recovered
}

// TestReopenStreamStoppingMidway serves a clip over HTTP whose first
// connection is cut halfway: the source stops after about half the frames,
// is reported failed once, reopened, and recovers with the whole clip.
func TestReopenStreamStoppingMidway(t *testing.T) {
	data, err := os.ReadFile(scene(t, "visitor").Path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		if first {
			w.Header().Set("Content-Type", "video/x-msvideo")
			w.Write(data[:len(data)/2]) // and the stream stops
			return
		}
		http.ServeContent(w, r, "clip.avi", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()

	ev := newEvents()
	r := ev.reopen(srv.URL + "/clip.avi")
	defer r.Close()
	// The cut clip gives fewer than Frames frames, so reading Frames+5
	// needs the reopened stream.
	for i := 0; i < opencvtest.Frames+5; i++ {
		f, err := r.Read(context.Background())
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		f.Close()
	}
	fails, recovered := ev.counts()
	if fails != 1 || recovered != 1 {
		t.Fatalf("OnFail called %d times, OnRecover %d; want 1 and 1", fails, recovered)
	}
	if !errors.Is(ev.fails[0], opencv.ErrNoFrame) {
		t.Errorf("failure %v, want ErrNoFrame", ev.fails[0])
	}
}

// TestReopenRefusedURL points a source at a port where nothing listens: it
// is reported failed and retried, until a server starts there and the frames
// come.
func TestReopenRefusedURL(t *testing.T) {
	data, err := os.ReadFile(scene(t, "visitor").Path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connections to addr are now refused

	ev := newEvents()
	r := ev.reopen("http://" + addr + "/clip.avi")
	defer r.Close()
	type result struct {
		f   capture.Frame
		err error
	}
	got := make(chan result, 1)
	go func() {
		f, err := r.Read(context.Background())
		got <- result{f, err}
	}()
	<-ev.failed // refused, and retrying

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "clip.avi", time.Time{}, bytes.NewReader(data))
	})}
	go srv.Serve(l)
	defer srv.Close()

	res := <-got
	if res.err != nil {
		t.Fatalf("Read after the server started: %v", res.err)
	}
	res.f.Close()
	fails, recovered := ev.counts()
	if fails != 1 || recovered != 1 {
		t.Errorf("OnFail called %d times, OnRecover %d; want 1 and 1", fails, recovered)
	}
}

// TestReopenCancelWhileRefused: a source that keeps being refused does not
// hold a cancelled reader.
func TestReopenCancelWhileRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ev := newEvents()
	r := ev.reopen("rtsp://" + addr + "/live")
	r.MinBackoff, r.MaxBackoff = time.Hour, time.Hour
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := r.Read(ctx)
		done <- err
	}()
	<-ev.failed
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v, want context.Canceled", err)
	}
}
