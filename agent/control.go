package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/consentcam/consentcam/capture"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// MaxQueue is how many accepted consents may wait for the camera while a
// window is open (docs/SPEC.md, "Capture rules").
const MaxQueue = 16

// Reasons recorded in capture.skipped and window.closed besides the
// detector's verdicts (capture.NoFace, MultipleFaces, LowQuality).
const (
	ReasonSaved        = "saved" // window.closed only
	ReasonQueueTimeout = "queue-timeout"
	ReasonQueueFull    = "queue-full"
	ReasonRevoked      = "revoked"
	ReasonShutdown     = "shutdown"
	ReasonEncodeFailed = "encode-failed"
)

type consentRequest struct {
	c     *consent.Consent
	reply chan consentResult
}

type consentResult struct {
	accepted Accepted
	err      error
}

type revokeRequest struct {
	r     *consent.Revoke
	reply chan revokeResult
}

type revokeResult struct {
	receipt Receipt
	err     error
}

// window is the open capture window of one visit.
type window struct {
	c          *consent.Consent
	timer      *time.Timer
	acc        *capture.Window
	nextDetect time.Time
	qualified  int
}

// control is the state the control loop owns: the open window and the queue.
type control struct {
	a     *Agent
	win   *window
	queue []*consent.Consent
}

// controlLoop owns every change of capture state: it opens and closes
// windows, runs the detector on the frames of the open window, accepts
// consents, carries out revokes, and runs the background jobs. Doing all of
// this in one goroutine means a revoke can never race a capture.
func (a *Agent) controlLoop() {
	c := &control{a: a}
	sweep := time.NewTicker(a.SweepInterval)
	defer sweep.Stop()
	checkpoint := time.NewTicker(a.CheckpointInterval)
	defer checkpoint.Stop()
	compact := time.NewTicker(a.CompactInterval)
	defer compact.Stop()
	queueCheck := time.NewTicker(time.Second)
	defer queueCheck.Stop()

	for {
		var windowEnd <-chan time.Time
		if c.win != nil {
			windowEnd = c.win.timer.C
		}
		select {
		case <-a.ctx.Done():
			c.shutdown()
			return
		case req := <-a.consents:
			acc, err := c.accept(req.c)
			req.reply <- consentResult{acc, err}
		case req := <-a.revokes:
			rc, err := c.revoke(req.r)
			req.reply <- revokeResult{rc, err}
		case f := <-a.frames:
			c.analyze(f)
		case <-windowEnd:
			c.finish("")
		case <-queueCheck.C:
			c.expireQueue()
		case <-sweep.C:
			a.logErr("retention sweep", a.sweep())
		case <-checkpoint.C:
			_, err := a.checkpoint()
			a.logErr("checkpoint", err)
		case <-compact.C:
			if a.compactDue.Load() {
				a.logErr("compaction", a.compact())
			}
		}
		if c.win == nil {
			c.openNext()
		}
	}
}

// publish makes the window and the queue as they are now the agent's
// snapshot (Agent.Snapshot). Every change of either calls it.
func (c *control) publish() {
	s := &Snapshot{Queue: make([]string, len(c.queue))}
	if c.win != nil {
		s.Window = c.win.c.Visit
	}
	for i, cs := range c.queue {
		s.Queue[i] = cs.Visit
	}
	c.a.state.Store(s)
}

func consentEvent(typ string, c *consent.Consent) *store.Event {
	return &store.Event{Type: typ, Visit: c.Visit, Subject: c.Subject, Purposes: c.Purposes, Actor: c.KeyID}
}

// accept spends the token id and records consent.accepted in one
// transaction, then queues the visit for the camera. A spent token id is
// the last refusal, replayed.
func (c *control) accept(cs *consent.Consent) (Accepted, error) {
	a := c.a
	accepted := consentEvent(store.EventConsentAccepted, cs)
	accepted.Detail = map[string]any{"notice": cs.Notice, "expires": cs.Expires.UTC().Format(time.RFC3339)}
	events := []*store.Event{accepted}
	full := len(c.queue) >= MaxQueue
	if full {
		skipped := consentEvent(store.EventCaptureSkipped, cs)
		skipped.Reason = ReasonQueueFull
		events = append(events, skipped)
	}
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := tx.Spend(cs.JTI, cs.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		return appendAll(tx, events...)
	})
	if errors.Is(err, store.ErrReplayed) {
		err = consent.NewReplayed(cs.JTI, err)
		a.rejectConsent(cs, err)
		return Accepted{}, err
	}
	if err != nil {
		return Accepted{}, fmt.Errorf("accept the consent of visit %s: %w", cs.Visit, err)
	}
	acc := Accepted{Consent: cs, Seq: accepted.Seq}
	if full {
		return acc, ErrQueueFull
	}
	c.queue = append(c.queue, cs)
	c.publish()
	acc.Waiting = len(c.queue) - 1
	if c.win != nil {
		acc.Waiting++
	}
	return acc, nil
}

// openNext opens the window of the first queued consent that has not
// expired; those that have are skipped with queue-timeout.
func (c *control) openNext() {
	c.expireQueue()
	if len(c.queue) == 0 {
		return
	}
	a := c.a
	cs := c.queue[0]
	opened := consentEvent(store.EventWindowOpened, cs)
	opened.Detail = map[string]any{"window": a.Window.String()}
	if err := a.append(opened); err != nil {
		// Without its audit event the window must not open; the visit
		// stays first in the queue and is tried again.
		a.Logger.Error("open window", logKeyVisit, cs.Visit, logKeyError, err)
		return
	}
	c.queue = c.queue[1:]
	c.win = &window{
		c:     cs,
		timer: time.NewTimer(a.Window),
		acc:   capture.NewWindow(a.Rules),
	}
	c.publish()
}

// expireQueue skips queued consents whose token expired before their
// window could open.
func (c *control) expireQueue() {
	a := c.a
	now := a.Now()
	kept := c.queue[:0]
	for _, cs := range c.queue {
		if now.Before(cs.Expires) {
			kept = append(kept, cs)
			continue
		}
		ev := consentEvent(store.EventCaptureSkipped, cs)
		ev.Reason = ReasonQueueTimeout
		if err := a.append(ev); err != nil {
			a.Logger.Error("skip queued consent", logKeyVisit, cs.Visit, logKeyError, err)
			kept = append(kept, cs) // try again later rather than lose the event
		}
	}
	if len(kept) == len(c.queue) {
		return
	}
	clear(c.queue[len(kept):])
	c.queue = kept
	c.publish()
}

// analyze runs the detector on a frame of the open window, at most
// DetectFPS times a second, and closes the frame.
func (c *control) analyze(f capture.Frame) {
	defer f.Close()
	a := c.a
	w := c.win
	now := a.Now()
	if w == nil || now.Before(w.nextDetect) {
		return
	}
	w.nextDetect = now.Add(time.Duration(float64(time.Second) / a.DetectFPS))
	a.metrics.analyzed.Inc()
	start := time.Now()
	faces, err := a.Detector.Detect(f)
	a.metrics.detectSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		a.Logger.Error("detect faces", logKeyError, err)
		return
	}
	v, err := w.acc.Offer(f, faces)
	if err != nil {
		a.Logger.Error("judge frame", logKeyError, err)
		return
	}
	if v == capture.Qualified {
		w.qualified++
		if w.qualified >= a.BestOf {
			c.finish("")
		}
	}
}

// finish closes the open window. With reason "" it saves the best
// qualifying face, if any, or records why there was none; otherwise
// (shutdown) it saves nothing and records that reason.
func (c *control) finish(reason string) {
	w := c.closeWindow()
	if w == nil {
		return
	}
	a := c.a
	events, rec, image := c.outcome(w, reason)
	err := a.Store.Update(func(tx *store.Tx) error {
		if rec != nil {
			if err := tx.PutRecord(rec, image); err != nil {
				return err
			}
		}
		return appendAll(tx, events...)
	})
	a.logErr("close the window of visit "+w.c.Visit, err)
}

// closeWindow stops capturing for the open window, if any, and returns it.
func (c *control) closeWindow() *window {
	w := c.win
	if w == nil {
		return nil
	}
	c.win = nil
	w.timer.Stop()
	c.publish()
	return w
}

// outcome builds the events (and the record) that close window w.
func (c *control) outcome(w *window, reason string) ([]*store.Event, *store.Record, []byte) {
	a := c.a
	closed := consentEvent(store.EventWindowClosed, w.c)
	var image []byte
	best, ok := w.acc.Best()
	switch {
	case reason != "":
	case !ok:
		reason = w.acc.Reason()
	default:
		var err error
		if image, err = capture.EncodeJPEG(best.Image); err != nil {
			a.Logger.Error("encode face crop", logKeyError, err)
			reason = ReasonEncodeFailed
		}
	}
	if reason != "" {
		skipped := consentEvent(store.EventCaptureSkipped, w.c)
		skipped.Reason = reason
		closed.Reason = reason
		return []*store.Event{skipped, closed}, nil, nil
	}

	now := a.Now().UTC()
	rec := &store.Record{
		ID:         store.NewID(),
		Visit:      w.c.Visit,
		Subject:    w.c.Subject,
		Camera:     a.Camera,
		CapturedAt: now,
		Box: store.Box{
			X: best.Face.Box.Min.X, Y: best.Face.Box.Min.Y,
			W: best.Face.Box.Dx(), H: best.Face.Box.Dy(),
		},
		Detector: a.Detector.Name(),
		Score:    best.Face.Score,
		Notice:   w.c.Notice,
		JTI:      w.c.JTI,
	}
	expires := map[string]any{}
	for _, p := range w.c.Purposes {
		exp := now.Add(a.Purposes[p])
		rec.Purposes = append(rec.Purposes, store.Tag{Purpose: p, Expires: exp})
		expires[p] = exp.Format(time.RFC3339)
	}
	saved := consentEvent(store.EventCaptureSaved, w.c)
	saved.Record = rec.ID
	saved.Detail = map[string]any{
		"detector": rec.Detector,
		"score":    rec.Score,
		"box":      []int{rec.Box.X, rec.Box.Y, rec.Box.W, rec.Box.H},
		"expires":  expires,
	}
	closed.Reason = ReasonSaved
	closed.Record = rec.ID
	return []*store.Event{saved, closed}, rec, image
}

// shutdown closes the window and skips the queue when the agent stops.
func (c *control) shutdown() {
	c.finish(ReasonShutdown)
	for _, cs := range c.queue {
		ev := consentEvent(store.EventCaptureSkipped, cs)
		ev.Reason = ReasonShutdown
		c.a.logErr("skip queued consent", c.a.append(ev))
	}
	c.queue = nil
	c.publish()
}

// matches reports whether a revoke names this consent's subject or visit.
func matches(r *consent.Revoke, cs *consent.Consent) bool {
	return (r.Subject != "" && r.Subject == cs.Subject) || (r.Visit != "" && r.Visit == cs.Visit)
}

// revoke carries out a verified revoke command: in one transaction it
// spends the request id, closes the window and drops the queued consents it
// names, erases the records, records what it did and signs a checkpoint
// covering it; then it signs the receipt. A spent request id is refused as
// replayed.
func (c *control) revoke(r *consent.Revoke) (Receipt, error) {
	a := c.a
	var events []*store.Event
	closeWin := c.win != nil && matches(r, c.win.c)
	if closeWin {
		skipped := consentEvent(store.EventCaptureSkipped, c.win.c)
		skipped.Reason = ReasonRevoked
		closed := consentEvent(store.EventWindowClosed, c.win.c)
		closed.Reason = ReasonRevoked
		events = append(events, skipped, closed)
	}
	var kept []*consent.Consent
	for _, cs := range c.queue {
		if matches(r, cs) {
			ev := consentEvent(store.EventCaptureSkipped, cs)
			ev.Reason = ReasonRevoked
			events = append(events, ev)
		} else {
			kept = append(kept, cs)
		}
	}

	sel := store.Selector{Subject: r.Subject, Visit: r.Visit}
	revoked := &store.Event{Type: store.EventConsentRevoked, Subject: r.Subject, Visit: r.Visit, Reason: r.Reason, Actor: r.KeyID}
	var erased []*store.Record
	var note []byte
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := tx.Spend(r.JTI, r.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		if err := appendAll(tx, events...); err != nil {
			return err
		}
		var err error
		if erased, err = tx.Erase(sel); err != nil {
			return err
		}
		for _, rec := range erased {
			err := tx.Append(&store.Event{Type: store.EventRecordErased, Record: rec.ID, Visit: rec.Visit, Subject: rec.Subject,
				Purposes: tagPurposes(rec.Purposes), Reason: r.Reason, Actor: r.KeyID})
			if err != nil {
				return err
			}
		}
		revoked.Detail = map[string]any{"request": r.JTI, "erased": len(erased)}
		if err := tx.Append(revoked); err != nil {
			return err
		}
		note, err = a.appendCheckpoint(tx)
		return err
	})
	if errors.Is(err, store.ErrReplayed) {
		err = consent.NewReplayed(r.JTI, err)
		a.rejectRevoke(r, err)
		return Receipt{}, err
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("carry out revoke %s: %w", r.JTI, err)
	}
	if closeWin {
		c.closeWindow()
	}
	c.queue = kept
	c.publish()
	if len(erased) > 0 {
		a.compactDue.Store(true)
	}
	rc := consent.Receipt{
		Request:    r.JTI,
		Subject:    r.Subject,
		Visit:      r.Visit,
		Erased:     len(erased),
		Seq:        revoked.Seq,
		Checkpoint: string(note),
		Time:       revoked.Time,
	}
	signed, err := consent.SignReceipt(a.DeviceKey, rc)
	if err != nil {
		return Receipt{}, fmt.Errorf("sign the receipt of revoke %s: %w", r.JTI, err)
	}
	return Receipt{Receipt: rc, Signed: signed}, nil
}

func tagPurposes(tags []store.Tag) []string {
	ps := make([]string, len(tags))
	for i, t := range tags {
		ps[i] = t.Purpose
	}
	return ps
}

// sweep drops expired purpose tags and deletes records left with none.
func (a *Agent) sweep() error {
	deleted := false
	err := a.Store.Update(func(tx *store.Tx) error {
		res, err := tx.Sweep(a.Now())
		if err != nil {
			return err
		}
		for _, x := range res.Expired {
			err := tx.Append(&store.Event{Type: store.EventRecordExpired, Record: x.Record.ID, Visit: x.Record.Visit,
				Subject: x.Record.Subject, Purposes: x.Purposes, Actor: actorAgent,
				Detail: map[string]any{"deleted": x.Deleted}})
			if err != nil {
				return err
			}
			deleted = deleted || x.Deleted
		}
		return nil
	})
	if err != nil {
		return err
	}
	if deleted {
		a.compactDue.Store(true)
	}
	return nil
}

// checkpoint signs the log as it stands and records a checkpoint event
// carrying the signed note, which it returns.
func (a *Agent) checkpoint() ([]byte, error) {
	var note []byte
	err := a.Store.Update(func(tx *store.Tx) error {
		var err error
		note, err = a.appendCheckpoint(tx)
		return err
	})
	return note, err
}

// appendCheckpoint signs the log as it stands in tx and appends the
// checkpoint event carrying the signed note, which it returns.
func (a *Agent) appendCheckpoint(tx *store.Tx) ([]byte, error) {
	cp, err := tx.Checkpoint(a.Origin(), a.signer)
	if err != nil {
		return nil, err
	}
	ev := cp.Event()
	ev.Actor = actorAgent
	return cp.Note, tx.Append(ev)
}

// compact rewrites the store so that no freed page keeps erased bytes.
func (a *Agent) compact() error {
	stats, err := a.Store.Compact()
	if err != nil {
		return err
	}
	a.compactDue.Store(false)
	return a.append(&store.Event{Type: store.EventStoreCompacted, Actor: actorAgent,
		Detail: map[string]any{"bytes_before": stats.Before, "bytes_after": stats.After}})
}

// rejectConsent audits a refused consent token. Claims are named only when
// the signature verified (cs is nil otherwise).
func (a *Agent) rejectConsent(cs *consent.Consent, err error) {
	ev := &store.Event{Type: store.EventConsentRejected, Reason: string(consent.ReasonOf(err))}
	if cs != nil {
		ev.Visit, ev.Subject, ev.Purposes, ev.Actor = cs.Visit, cs.Subject, cs.Purposes, cs.KeyID
	}
	a.Logger.Info("consent rejected", logKeyReason, ev.Reason)
	a.logErr("audit consent.rejected", a.append(ev))
}

// rejectRevoke audits a refused revoke command, naming what it asked for
// only when the signature verified (r is nil otherwise).
func (a *Agent) rejectRevoke(r *consent.Revoke, err error) {
	ev := &store.Event{Type: store.EventRevokeRejected, Reason: string(consent.ReasonOf(err))}
	if r != nil {
		ev.Visit, ev.Subject, ev.Actor = r.Visit, r.Subject, r.KeyID
		ev.Detail = map[string]any{"request": r.JTI}
	}
	a.Logger.Info("revoke rejected", logKeyReason, ev.Reason)
	a.logErr("audit revoke.rejected", a.append(ev))
}
