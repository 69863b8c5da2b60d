package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// Store is the persistent state the agent needs: *store.DB implements it.
type Store interface {
	Update(fn func(tx *store.Tx) error) error
	View(fn func(tx *store.Tx) error) error
	Events(from uint64, limit int) ([][]byte, error)
	Size() uint64
	InclusionProof(seq, size uint64) ([][]byte, error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
	Root(size uint64) ([]byte, error)
	LatestCheckpoint() ([]byte, error)
	Pending(limit int) ([]store.Message, error)
	Ack(seqs ...uint64) error
	PendingCount() (int, error)
	RecordCount() (int, error)
	Compact() (store.CompactStats, error)
}

// Verifier checks consent tokens and revoke commands: *consent.Verifier.
type Verifier interface {
	VerifyConsent(token []byte) (*consent.Consent, error)
	VerifyRevoke(token []byte) (*consent.Revoke, error)
}

// Detector finds faces in a frame: the detectors of capture/opencv.
type Detector interface {
	Detect(f capture.Frame) ([]capture.Face, error)
	Name() string
}

// Agent is the consentcam daemon. Set the exported fields, then Open; Close
// stops it. Fields must not change after Open.
type Agent struct {
	Site   string
	Camera string

	Store    Store
	Verifier Verifier

	// Notice is the notice JSON (with its hash) published on …/notice and
	// served at /v1/notice; NoticeHash is its hash.
	Notice     []byte
	NoticeHash string
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

	MQTT MQTTOptions
	HTTP HTTPOptions
	// Kiosk, when set, turns on the consent kiosk (kiosk.go).
	Kiosk *KioskOptions

	// Version is reported in agent.started.
	Version string
	Now     func() time.Time
	Logger  *slog.Logger

	signer   note.Signer
	metrics  *metrics
	kiosk    *kiosk
	mqtt     *mqttClient
	listener net.Listener
	server   *http.Server

	consents chan consentRequest
	revokes  chan revokeRequest
	frames   chan capture.Frame
	kick     chan struct{} // wakes the outbox publisher
	// windowOpen is read by the frame reader to drop frames early.
	windowOpen atomic.Bool
	// compactDue is set when records were deleted since the last compaction.
	compactDue atomic.Bool

	opened    bool
	ctx       context.Context
	cancel    context.CancelFunc
	loopsDone sync.WaitGroup // the frame reader and the control loop
	pubDone   chan struct{}  // the outbox publisher
	pubCancel context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// New returns an agent with the defaults of docs/SPEC.md.
func New() *Agent {
	return &Agent{
		Rules:              capture.DefaultRules(),
		Window:             20 * time.Second,
		DetectFPS:          5,
		BestOf:             3,
		ClockSkew:          30 * time.Second,
		SweepInterval:      time.Minute,
		CheckpointInterval: time.Minute,
		CompactInterval:    10 * time.Minute,
		HTTP:               HTTPOptions{Addr: "127.0.0.1:8765"},
		Version:            "dev",
		Now:                time.Now,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// Log attribute keys.
const (
	logKeyError  = "error"
	logKeyReason = "reason"
	logKeyVisit  = "visit"
	logKeySeq    = "seq"
	logKeyTopic  = "topic"
)

// Origin is the checkpoint origin: consentcam/SITE/CAMERA.
func (a *Agent) Origin() string { return store.Origin(a.Site, a.Camera) }

// Open checks the configuration, records agent.started, and starts the
// frame reader, the control loop, the MQTT client, the outbox publisher and
// the HTTP server.
func (a *Agent) Open(ctx context.Context) error {
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
	case len(a.Purposes) == 0:
		return errors.New("agent: no purposes")
	}
	a.opened = true
	signer, err := store.NewCheckpointSigner(a.Origin(), a.DeviceKey)
	if err != nil {
		return fmt.Errorf("checkpoint signer: %w", err)
	}
	a.signer = signer
	a.metrics = newMetrics(a)
	if a.Kiosk != nil {
		if a.kiosk, err = newKiosk(a); err != nil {
			return err
		}
	}
	a.consents = make(chan consentRequest)
	a.revokes = make(chan revokeRequest)
	a.frames = make(chan capture.Frame)
	a.kick = make(chan struct{}, 1)
	if err := a.listenHTTP(); err != nil {
		return err
	}
	if err := a.start(); err != nil {
		a.listener.Close()
		return err
	}

	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.mqtt = newMQTTClient(a)
	pubCtx, pubCancel := context.WithCancel(context.Background())
	a.pubCancel, a.pubDone = pubCancel, make(chan struct{})
	go func() { defer close(a.pubDone); a.publishOutbox(pubCtx) }()
	a.mqtt.connect()

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
	go a.serveHTTP()
	return nil
}

// start records agent.started and the notice in force, sweeps what expired
// while the agent was down, and signs a checkpoint.
func (a *Agent) start() error {
	err := a.append(&store.Event{
		Type:   store.EventAgentStarted,
		Actor:  actorAgent,
		Detail: map[string]any{"version": a.Version, "detector": a.Detector.Name()},
	}, &store.Event{
		Type:   store.EventNoticePublished,
		Actor:  actorAgent,
		Detail: map[string]any{"hash": a.NoticeHash},
	})
	if err != nil {
		return err
	}
	if err := a.sweep(); err != nil {
		return err
	}
	_, err = a.checkpoint()
	return err
}

// Close stops capture (an open window closes without saving), records
// agent.stopped and a final checkpoint, gives the outbox until ctx ends to
// drain, publishes "stopped" and disconnects. It returns the first error.
func (a *Agent) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { a.closeErr = a.close(ctx) })
	return a.closeErr
}

func (a *Agent) close(ctx context.Context) error {
	if a.cancel == nil {
		return nil // never opened, or Open failed
	}
	shutCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	errs := []error{ignoreClosed(a.server.Shutdown(shutCtx))}
	cancel()
	a.cancel()
	a.loopsDone.Wait()

	errs = append(errs, a.append(&store.Event{Type: store.EventAgentStopped, Actor: actorAgent}))
	_, err := a.checkpoint()
	errs = append(errs, err)

	a.drainOutbox(ctx)
	a.pubCancel()
	<-a.pubDone
	a.mqtt.disconnect(availabilityStopped)
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// auditTx is a store transaction that remembers the events appended in it,
// so that they are announced once they are durable.
type auditTx struct {
	*store.Tx
	events []*store.Event
}

// Append appends events to the log in this transaction.
func (tx *auditTx) Append(events ...*store.Event) error {
	for _, ev := range events {
		if err := tx.Tx.Append(ev); err != nil {
			return fmt.Errorf("append %s: %w", ev.Type, err)
		}
		tx.events = append(tx.events, ev)
	}
	return nil
}

// update runs fn in one store transaction: the state change and the events
// describing it commit together or not at all. Then it announces the events.
func (a *Agent) update(fn func(tx *auditTx) error) error {
	var atx *auditTx
	err := a.Store.Update(func(tx *store.Tx) error {
		atx = &auditTx{Tx: tx}
		return fn(atx)
	})
	if err != nil {
		return err
	}
	a.committed(atx.events...)
	return nil
}

// append records events in a transaction of their own.
func (a *Agent) append(events ...*store.Event) error {
	return a.update(func(tx *auditTx) error { return tx.Append(events...) })
}

// committed tells the publisher and the metrics about events that are now
// durable.
func (a *Agent) committed(events ...*store.Event) {
	if len(events) == 0 {
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	for _, ev := range events {
		a.metrics.observe(ev)
		if a.kiosk != nil {
			a.kiosk.visits.observe(ev)
		}
	}
}

// Actors named in audit events.
const (
	actorAgent = "agent"
)

func (a *Agent) sourceFailed(err error) {
	a.Logger.Warn("camera source failed", logKeyError, err)
	a.metrics.sourceUp.Set(0)
	a.logErr("audit source.failed", a.append(&store.Event{Type: store.EventSourceFailed, Actor: actorAgent,
		Detail: map[string]any{"error": err.Error()}}))
}

func (a *Agent) sourceRecovered() {
	a.Logger.Info("camera source recovered")
	a.metrics.sourceUp.Set(1)
	a.logErr("audit source.recovered", a.append(&store.Event{Type: store.EventSourceRecovered, Actor: actorAgent}))
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
		if !a.windowOpen.Load() {
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
