package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/capture/opencv"
)

const probeUsage = `Print what the detector sees, to aim the camera: one JSON line per analysed
frame with the faces found and how many count under the rules (in_zone),
then a summary line with the frames per second. No image is ever written.

Usage:

	consentcam probe --config FILE [flags]
	consentcam probe --source SRC [--detector D --model M] [--frames N] [--realtime=false]

Arguments:

	--config FILE    take the source, detector, zone and thresholds from the
	                 configuration; the flags below override it
	--source SRC     /dev/video0, a device index, rtsp:// or http(s):// URL,
	                 or a video file
	--detector D     auto, yunet or cascade (auto: yunet when a model is given)
	--model M        YuNet ONNX model, such as yunet_320x320.onnx
	--cascade C      cascade XML (default: Debian's LBP frontal-face cascade)
	--frames N       stop after N frames (default 0: at the end of a file,
	                 or on Ctrl-C)
	--realtime=false read a video file as fast as it decodes, not at its own
	                 frame rate

Without --config the rules are SPEC's defaults: the whole frame, min_face 64,
min_score 0.8.
`

// ProbeCommand runs the detector on every frame of a source and prints the
// faces, for installers aiming the camera.
type ProbeCommand struct{ Stdout, Stderr io.Writer }

// probeFace and probeFrame are the JSON lines of docs/SPEC.md.
type probeFace struct {
	X     int     `json:"x"`
	Y     int     `json:"y"`
	W     int     `json:"w"`
	H     int     `json:"h"`
	Score float64 `json:"score"`
}

type probeFrame struct {
	Frame  int         `json:"frame"`
	Faces  []probeFace `json:"faces"`
	InZone int         `json:"in_zone"`
}

type probeSummary struct {
	Frames    int     `json:"frames"`
	Qualified int     `json:"qualified"` // frames with exactly one face counting
	Seconds   float64 `json:"seconds"`
	FPS       float64 `json:"fps"`
	Detector  string  `json:"detector"`
}

// Run probes until the source ends, --frames frames are analysed, or ctx is
// cancelled (Ctrl-C), which ends it normally.
func (c *ProbeCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("probe", probeUsage, c.Stderr)
	configPath := fs.String("config", "", "")
	source := fs.String("source", "", "")
	kind := fs.String("detector", "auto", "")
	model := fs.String("model", "", "")
	cascade := fs.String("cascade", "", "")
	frames := fs.Int("frames", 0, "")
	realtime := fs.Bool("realtime", true, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	src := opencv.SourceOptions{URL: *source, Realtime: *realtime}
	rules := capture.DefaultRules()
	if *configPath != "" {
		cfg, err := ReadConfigFile(*configPath)
		if err != nil {
			return err
		}
		if !set["source"] {
			src.URL = cfg.Source.URL
		}
		if !set["realtime"] {
			src.Realtime = cfg.Source.Realtime
		}
		src.Loop = cfg.Source.Loop
		if !set["detector"] {
			*kind = cfg.Capture.Detector
		}
		if !set["model"] {
			*model = cfg.Capture.Model
		}
		if !set["cascade"] {
			*cascade = cfg.Capture.Cascade
		}
		rules = cfg.Rules()
	}
	switch {
	case src.URL == "":
		fs.Usage()
		return usagef("probe: give --config or --source")
	case *kind != "auto" && *kind != "yunet" && *kind != "cascade":
		return usagef("probe: --detector must be auto, yunet or cascade (got %q)", *kind)
	case *kind == "yunet" && *model == "":
		return usagef("probe: --detector yunet needs --model")
	case *frames < 0:
		return usagef("probe: --frames must be 0 or more (got %d)", *frames)
	}

	det, err := opencv.NewDetector(*kind, *model, *cascade, opencv.DetectorOptions{})
	if err != nil {
		return err
	}
	defer det.Close()
	s, err := opencv.Open(ctx, src)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(c.Stderr, "probe: %s with %s; zone %v, min_face %d, min_score %v\n",
		src.URL, det.Name(), rules.Zone, rules.MinFace, rules.MinScore)
	return probe(ctx, s, det, rules, *frames, json.NewEncoder(c.Stdout))
}

func probe(ctx context.Context, src capture.Source, det capture.Detector, rules capture.Rules, limit int, out *json.Encoder) error {
	sum := probeSummary{Detector: det.Name()}
	start := time.Now()
	var err error
	for limit == 0 || sum.Frames < limit {
		var f capture.Frame
		if f, err = src.Read(ctx); err != nil {
			break
		}
		var faces []capture.Face
		faces, err = det.Detect(f)
		size := f.Size()
		f.Close()
		if err != nil {
			break
		}
		sum.Frames++
		line := probeFrame{Frame: sum.Frames, Faces: make([]probeFace, 0, len(faces))}
		for _, fc := range faces {
			b := fc.Box
			line.Faces = append(line.Faces, probeFace{X: b.Min.X, Y: b.Min.Y, W: b.Dx(), H: b.Dy(), Score: math.Round(fc.Score*1000) / 1000})
			if rules.Counts(size, fc) {
				line.InZone++
			}
		}
		if line.InZone == 1 {
			sum.Qualified++
		}
		if err = out.Encode(line); err != nil {
			break
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.FPS = math.Round(float64(sum.Frames)/sum.Seconds*10) / 10
	}
	sum.Seconds = math.Round(sum.Seconds*1000) / 1000
	if encErr := out.Encode(sum); err == nil {
		err = encErr
	}
	if errors.Is(err, io.EOF) || ctx.Err() != nil {
		return nil // the file ended, or Ctrl-C
	}
	return err
}
