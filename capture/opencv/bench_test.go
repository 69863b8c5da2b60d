package opencv_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
	"github.com/consentcam/consentcam/internal/testenv"
)

// Benchmarks pin OpenCV to one thread (opencv.SetNumThreads(1)), so figures
// do not depend on what else the machine runs; see docs/BENCHMARKS.md.

func pinThreads(b *testing.B) {
	opencv.SetNumThreads(1)
	b.Cleanup(func() { opencv.SetNumThreads(-1) })
}

func benchDetectors(b *testing.B) map[string]capture.Detector {
	yunet, err := opencv.NewYuNet(testenv.Model(b, "yunet_320x320.onnx"), opencv.DetectorOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cascade, err := opencv.NewCascade(opencv.DefaultCascade, opencv.DetectorOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { yunet.Close(); cascade.Close() })
	return map[string]capture.Detector{"yunet": yunet, "cascade": cascade}
}

// BenchmarkDetect is one detection on a 640x480 two-person frame.
func BenchmarkDetect(b *testing.B) {
	pinThreads(b)
	src, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: scene(b, "two-in-zone").Path})
	if err != nil {
		b.Fatal(err)
	}
	f, err := src.Read(context.Background())
	src.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dets := benchDetectors(b)
	for _, name := range []string{"yunet", "cascade"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := dets[name].Detect(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead is the cost of a 640x480 MJPG stream with no capture window
// open (frames decoded and dropped) against reading and detecting on every
// frame. cpu-ms/frame is the process's user+system CPU time per frame, all
// threads included.
func BenchmarkRead(b *testing.B) {
	pinThreads(b)
	clip := scene(b, "two-in-zone").Path
	dets := benchDetectors(b)
	for _, bc := range []struct {
		name string
		det  capture.Detector // nil: read and drop
	}{{"read-only", nil}, {"read+yunet", dets["yunet"]}, {"read+cascade", dets["cascade"]}} {
		b.Run(bc.name, func(b *testing.B) {
			src, err := opencv.Open(context.Background(), opencv.SourceOptions{URL: clip, Loop: true})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := src.Read(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if bc.det != nil {
					if _, err := bc.det.Detect(f); err != nil {
						b.Fatal(err)
					}
				}
				f.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/frame")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
