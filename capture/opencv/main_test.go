package opencv_test

import (
	"os"
	"sync"
	"testing"

	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
)

var (
	clipDir   string
	clipsOnce sync.Once
	clips     []*opencvtest.Scene
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "consentcam-clips-")
	if err != nil {
		panic(err)
	}
	clipDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// scenes writes the scenario clips once for the whole test binary.
func scenes(tb testing.TB) []*opencvtest.Scene {
	tb.Helper()
	clipsOnce.Do(func() { clips = opencvtest.WriteScenes(tb, clipDir) })
	if clips == nil {
		tb.Fatal("the scenario clips could not be written")
	}
	return clips
}

func scene(tb testing.TB, name string) *opencvtest.Scene {
	tb.Helper()
	for _, s := range scenes(tb) {
		if s.Name == name {
			return s
		}
	}
	tb.Fatalf("no scene %q", name)
	return nil
}
