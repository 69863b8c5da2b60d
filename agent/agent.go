package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/mod/sumdb/note"
)

// Defaults of docs/SPEC.md ("Capture rules", "Configuration"). The
// configuration starts from these; capture.DefaultRules holds the face rules.
const (
	DefaultWindow             = 20 * time.Second
	DefaultDetectFPS          = 5.0
	DefaultBestOf             = 3
	DefaultSweepInterval      = time.Minute
	DefaultCheckpointInterval = time.Minute
	DefaultCompactInterval    = 10 * time.Minute
	// DefaultEvidenceRetention is three years: PIPL art. 56 and the 2025
	// face-recognition measures art. 9.
	DefaultEvidenceRetention = 3 * 365 * 24 * time.Hour
)

// Store is the persistent state the agent needs: *store.DB implements it.
type Store interface {
	Update(fn func(tx *store.Tx) error) error
	View(fn func(tx *store.Tx) error) error
	Subscribe(fn func(events []store.Event))
	// Events returns up to limit events' JSON from seq from on.
	Events(from uint64, limit int) ([][]byte, error)
	Size() uint64
	RecordCount() (int, error)
	Compact() (store.CompactStats, error)
	LatestCheckpoint() ([]byte, error)
}

// Verifier checks consent tokens and revoke commands: *consent.Verifier.
// It keeps no state; the agent spends token ids itself.
type Verifier interface {
	VerifyConsent(token []byte) (*consent.Consent, error)
	VerifyRevoke(token []byte) (*consent.Revoke, error)
}

// Detector finds faces in a frame: the detectors of capture/opencv.
type Detector interface {
	Detect(f capture.Frame) ([]capture.Face, error)
	Name() string
}

// Agent is the core of the consentcam daemon: the control loop that owns
// capture windows, revokes, sweeps, checkpoints and compaction, and the
// typed API the transports (agent/httpapi, agent/mqttbus) call. Set the
// exported fields, then Open; Close stops it. Fields must not change after
// Open.
type Agent struct {
	Site   string
	Camera string

	Store    Store
	Verifier Verifier

	// Notice is the notice in force (its JSON, with its hash) and NoticeHash
	// its hash: recorded at start, the notice kept by its hash.
	Notice     []byte
	NoticeHash string
	// Settings are added to the detail of agent.started: the settings an
	// auditor's check needs (docs/SPEC.md, "Audit log"), made by cmd.
	Settings map[string]any
	// EvidenceRetention is how long the tokens and commands an event rests
	// on are kept, as evidence.
	EvidenceRetention time.Duration
	// Purposes maps each configured purpose id to its retention.
	Purposes map[string]time.Duration

	// DeviceKey signs checkpoints and revoke receipts.
	DeviceKey ed25519.PrivateKey

	// OpenSource opens the camera; it is reopened with backoff when it fails.
	OpenSource func(ctx context.Context) (capture.Source, error)
	Detector   Detector
	Rules      capture.Rules
	// Window is how long a capture window stays open; DetectFPS how often
	// the detector runs while it is.
	Window    time.Duration
	DetectFPS float64
	// BestOf is how many qualifying frames a window collects before it saves
	// the best of them and closes (it saves earlier when the window ends).
	BestOf int
	// ClockSkew is added to a token's expiry for as long as its id is kept
	// to refuse replays: the verifier accepts it that long.
	ClockSkew time.Duration

	SweepInterval      time.Duration
	CheckpointInterval time.Duration
	CompactInterval    time.Duration
	// RefusalInterval is how long refusals of unverified tokens are counted
	// before their count is written (refusals.go).
	RefusalInterval time.Duration

	// Witnesses, when set, cosign every checkpoint before it is published
	// (docs/WITNESS.md).
	Witnesses Witnesser

	// FilingThresholds are the counts of distinct subjects with stored face
	// data whose first crossing is recorded (filing.threshold).
	FilingThresholds []int

	// Registry receives the agent's metrics; the transports add theirs.
	Registry *prometheus.Registry

	// Version is reported in agent.started.
	Version string
	Now     func() time.Time
	Logger  *slog.Logger

	signer   note.Signer
	metrics  *metrics
	visits   *visitTracker
	subjects *subjects
	// refusals counts the refusals of unverified tokens.
	refusals refusals
	// cps takes checkpoints to the witnesses and the transports.
	cps           checkpoints
	witnessing    atomic.Bool // the witness loop runs
	witnessCancel context.CancelFunc
	// state is the open window and the queue as the control loop last
	// published them: the one place they are read from outside the loop.
	state atomic.Pointer[Snapshot]

	consents chan consentRequest
	revokes  chan revokeRequest
	frames   chan capture.Frame
	// compactDue is set when records were deleted since the last compaction.
	compactDue atomic.Bool
	// sourceDown is set while the camera source is failed.
	sourceDown atomic.Bool

	opened    bool
	ctx       context.Context // ends when Close begins
	cancel    context.CancelFunc
	loopsDone sync.WaitGroup // the frame reader and the control loop
	closeOnce sync.Once
	closeErr  error
}

// New returns an agent with the defaults of docs/SPEC.md.
func New() *Agent {
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		Rules:              capture.DefaultRules(),
		Window:             DefaultWindow,
		DetectFPS:          DefaultDetectFPS,
		BestOf:             DefaultBestOf,
		ClockSkew:          consent.DefaultClockSkew,
		SweepInterval:      DefaultSweepInterval,
		CheckpointInterval: DefaultCheckpointInterval,
		CompactInterval:    DefaultCompactInterval,
		RefusalInterval:    DefaultRefusalInterval,
		EvidenceRetention:  DefaultEvidenceRetention,
		FilingThresholds:   []int{store.FilingWarnThreshold, store.FilingThreshold},
		Registry:           newRegistry(),
		Version:            "dev",
		Now:                time.Now,
		Logger:             slog.New(slog.DiscardHandler),
		consents:           make(chan consentRequest),
		revokes:            make(chan revokeRequest),
		frames:             make(chan capture.Frame),
		ctx:                ctx,
		cancel:             cancel,
	}
	a.state.Store(&Snapshot{})
	return a
}

// newRegistry is a metrics registry holding the Go runtime's and the
// process's metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Log attribute keys.
const (
	logKeyError  = "error"
	logKeyReason = "reason"
	logKeyVisit  = "visit"
)

// Origin is the checkpoint origin: consentcam/SITE/CAMERA.
func (a *Agent) Origin() string { return store.Origin(a.Site, a.Camera) }

// Open checks the fields, records agent.started, and starts the frame
// reader and the control loop.
func (a *Agent) Open() error {
	switch {
	case a.opened:
		return errors.New("agent: already opened; make a new one")
	case a.Store == nil:
		return errors.New("agent: no store")
	case a.Verifier == nil:
		return errors.New("agent: no verifier")
	case len(a.DeviceKey) != ed25519.PrivateKeySize:
		return errors.New("agent: no device key")
	case a.OpenSource == nil || a.Detector == nil:
		return errors.New("agent: no source or detector")
	case a.Window <= 0 || a.DetectFPS <= 0 || a.BestOf < 1:
		return errors.New("agent: window, detect_fps and best-of must be positive")
	case a.SweepInterval <= 0 || a.CheckpointInterval <= 0 || a.CompactInterval <= 0 || a.RefusalInterval <= 0 || a.EvidenceRetention <= 0:
		return errors.New("agent: the intervals and the evidence retention must be positive")
	case len(a.Notice) == 0 || a.NoticeHash == "":
		return errors.New("agent: no notice")
	case len(a.Purposes) == 0:
		return errors.New("agent: no purposes")
	case a.Registry == nil:
		return errors.New("agent: no metrics registry")
	}
	a.opened = true
	signer, err := store.NewCheckpointSigner(a.Origin(), a.DeviceKey)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.signer = signer
	// Nothing writes before start: the count read from the log and the
	// subscriber's updates leave no gap.
	a.subjects = newSubjects(a.FilingThresholds)
	if err := a.subjects.load(a.Store); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.metrics, err = newMetrics(a); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := a.cps.init(a.Registry); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.Witnesses != nil {
		var wctx context.Context
		wctx, a.witnessCancel = context.WithCancel(context.Background())
		a.witnessing.Store(true)
		go a.witnessLoop(wctx)
	}
	a.visits = newVisitTracker()
	a.Store.Subscribe(a.metrics.observe)
	a.Store.Subscribe(a.visits.observe)
	a.Store.Subscribe(a.subjects.observe)
	if err := a.start(); err != nil {
		a.cancel()
		a.stopWitnessing()
		return err
	}

	src := &capture.Reopen{
		Open:       a.OpenSource,
		MinBackoff: 500 * time.Millisecond,
		MaxBackoff: 30 * time.Second,
		OnFail:     a.sourceFailed,
		OnRecover:  a.sourceRecovered,
		Logger:     a.Logger,
	}
	a.loopsDone.Add(2)
	go func() { defer a.loopsDone.Done(); a.readFrames(src) }()
	go func() { defer a.loopsDone.Done(); a.controlLoop() }()
	return nil
}

// start records agent.started and the notice in force, closes the consents
// a crash left without outcome, sweeps what expired while the agent was
// down, and signs a checkpoint.
func (a *Agent) start() error {
	detail := maps.Clone(a.Settings)
	if detail == nil {
		detail = map[string]any{}
	}
	detail["version"], detail["detector"] = a.Version, a.Detector.Name()
	err := a.Store.Update(func(tx *store.Tx) error {
		err := appendAll(tx, &store.Event{Type: store.EventAgentStarted, Actor: actorAgent, Detail: detail},
			&store.Event{Type: store.EventNoticePublished, Actor: actorAgent, Detail: map[string]any{"hash": a.NoticeHash}})
		if err != nil {
			return err
		}
		return tx.PutNotice(a.NoticeHash, a.Notice)
	})
	if err != nil {
		return fmt.Errorf("record agent.started: %w", err)
	}
	if err := a.closeInterrupted(); err != nil {
		return err
	}
	if err := a.sweep(); err != nil {
		return err
	}
	_, err = a.checkpoint()
	return err
}

// closeInterrupted records, in one transaction, the outcome of every
// accepted consent the last run left without one (a crash, a power cut, a
// disk that failed at shutdown): capture.skipped, and window.closed when
// its window was open, with reason interrupted.
func (a *Agent) closeInterrupted() error {
	err := a.Store.Update(func(tx *store.Tx) error {
		left, err := tx.Awaiting()
		if err != nil {
			return err
		}
		for _, w := range left {
			ev := &store.Event{Visit: w.Visit, Subject: w.Subject, Purposes: w.Purposes, Actor: w.Actor, Reason: ReasonInterrupted}
			skipped, closed := *ev, *ev
			skipped.Type, closed.Type = store.EventCaptureSkipped, store.EventWindowClosed
			events := []*store.Event{&skipped}
			if w.Opened {
				events = append(events, &closed)
			}
			if err := appendAll(tx, events...); err != nil {
				return err
			}
			if err := tx.DeleteAwaiting(w.Seq); err != nil {
				return err
			}
		}
		if len(left) > 0 {
			a.Logger.Warn("closed the consents the last run left without outcome", "count", len(left))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("close interrupted consents: %w", err)
	}
	return nil
}

// Close stops capture (an open window closes without saving), and records
// agent.stopped and a final checkpoint. It returns the first error.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

func (a *Agent) close() error {
	a.cancel()
	if !a.opened || a.signer == nil {
		return nil // never opened, or Open failed
	}
	a.loopsDone.Wait()
	// The last checkpoint is published as the device signed it: the
	// witnesses see it at the next start.
	a.stopWitnessing()
	errs := []error{a.flushRefusals(), a.append(&store.Event{Type: store.EventAgentStopped, Actor: actorAgent})}
	_, err := a.checkpoint()
	return errors.Join(append(errs, err)...)
}

// stopWitnessing stops the witness loop, if it runs, and waits for it.
func (a *Agent) stopWitnessing() {
	if a.witnessing.Swap(false) {
		a.witnessCancel()
		<-a.cps.done
	}
}

// append records events in a transaction of their own.
func (a *Agent) append(events ...*store.Event) error {
	return a.Store.Update(func(tx *store.Tx) error { return appendAll(tx, events...) })
}

// appendAll appends events to the log in tx.
func appendAll(tx *store.Tx, events ...*store.Event) error {
	for _, ev := range events {
		if err := tx.Append(ev); err != nil {
			return err
		}
	}
	return nil
}

// Actors named in audit events.
const (
	actorAgent = "agent"
)

func (a *Agent) sourceFailed(err error) {
	a.Logger.Warn("camera source failed", logKeyError, err)
	a.sourceDown.Store(true)
	a.metrics.sourceUp.Set(0)
	a.logErr("audit source.failed", a.append(&store.Event{Type: store.EventSourceFailed, Actor: actorAgent,
		Detail: map[string]any{"error": err.Error()}}))
}

func (a *Agent) sourceRecovered() {
	a.Logger.Info("camera source recovered")
	a.sourceDown.Store(false)
	a.metrics.sourceUp.Set(1)
	a.logErr("audit source.recovered", a.append(&store.Event{Type: store.EventSourceRecovered, Actor: actorAgent}))
}

func (a *Agent) logErr(what string, err error) {
	if err != nil {
		a.Logger.Error(what, logKeyError, err)
	}
}

// readFrames reads every frame and drops it at once unless a window is open:
// with no window no detector runs and nothing is kept.
func (a *Agent) readFrames(src capture.Source) {
	defer src.Close()
	for {
		f, err := src.Read(a.ctx)
		switch {
		case err == nil:
		case a.ctx.Err() != nil:
			return
		case errors.Is(err, io.EOF):
			a.Logger.Info("camera source ended")
			return
		default:
			a.Logger.Error("camera source stopped", logKeyError, err)
			return
		}
		a.metrics.frames.Inc()
		if a.state.Load().Window == "" {
			f.Close()
			continue
		}
		select {
		case a.frames <- f:
		case <-a.ctx.Done():
			f.Close()
			return
		}
	}
}
