package agent

import (
	"context"
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
// detector's verdicts (no-face, multiple-faces, low-quality).
const (
	reasonSaved        = "saved"
	reasonQueueTimeout = "queue-timeout"
	reasonQueueFull    = "queue-full"
	reasonRevoked      = "revoked"
	reasonShutdown     = "shutdown"
	reasonEncodeFailed = "encode-failed"
)

// ErrStopped is returned to requests that arrive while the agent stops.
var ErrStopped = errors.New("agent stopped")

type consentRequest struct {
	c     *consent.Consent
	reply chan consentResult
}

// consentResult says what became of an accepted consent.
type consentResult struct {
	consent *consent.Consent
	seq     uint64 // of consent.accepted
	err     error  // a *consent.Error (replayed), or another failure
	queue   int    // consents waiting before this one (0: its window opens now)
}

type revokeRequest struct {
	r     *consent.Revoke
	reply chan revokeResult
}

// revokeResult is what a revoke did: the receipt, and its signed JSON.
type revokeResult struct {
	receipt consent.Receipt
	signed  []byte
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
			req.reply <- c.accept(req.c)
		case req := <-a.revokes:
			req.reply <- c.revoke(req.r)
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

func (a *Agent) logErr(what string, err error) {
	if err != nil {
		a.Logger.Error(what, logKeyError, err)
	}
}

func consentEvent(typ string, c *consent.Consent) *store.Event {
	return &store.Event{Type: typ, Visit: c.Visit, Subject: c.Subject, Purposes: c.Purposes, Actor: c.KeyID}
}

// accept spends the token id and records consent.accepted in one
// transaction, then queues the visit for the camera.
func (c *control) accept(cs *consent.Consent) consentResult {
	a := c.a
	accepted := consentEvent(store.EventConsentAccepted, cs)
	accepted.Detail = map[string]any{"notice": cs.Notice, "expires": cs.Expires.UTC().Format(time.RFC3339)}
	events := []*store.Event{accepted}
	full := len(c.queue) >= MaxQueue
	if full {
		skipped := consentEvent(store.EventCaptureSkipped, cs)
		skipped.Reason = reasonQueueFull
		events = append(events, skipped)
	}
	err := a.update(func(tx *auditTx) error {
		if err := tx.Spend(cs.JTI, cs.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		return tx.Append(events...)
	})
	if errors.Is(err, store.ErrReplayed) {
		rerr := &consent.Error{Reason: consent.ReasonReplayed, Err: err}
		a.rejectConsent(cs, rerr)
		return consentResult{consent: cs, err: rerr}
	}
	if err != nil {
		return consentResult{consent: cs, err: fmt.Errorf("accept consent: %w", err)}
	}
	a.metrics.consents.WithLabelValues("accepted").Inc()
	if full {
		return consentResult{consent: cs, seq: accepted.Seq, err: errQueueFull}
	}
	c.queue = append(c.queue, cs)
	waiting := len(c.queue) - 1
	if c.win != nil {
		waiting++
	}
	return consentResult{consent: cs, seq: accepted.Seq, queue: waiting}
}

var errQueueFull = errors.New("too many visits are waiting for the camera; ask for a new token in a minute")

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
	a.windowOpen.Store(true)
	a.metrics.windowsOpen.Set(1)
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
		ev.Reason = reasonQueueTimeout
		if err := a.append(ev); err != nil {
			a.Logger.Error("skip queued consent", logKeyVisit, cs.Visit, logKeyError, err)
			kept = append(kept, cs) // try again later rather than lose the event
		}
	}
	clear(c.queue[len(kept):])
	c.queue = kept
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
	err := a.update(func(tx *auditTx) error {
		if rec != nil {
			if err := tx.PutRecord(rec, image); err != nil {
				return err
			}
		}
		return tx.Append(events...)
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
	c.a.windowOpen.Store(false)
	c.a.metrics.windowsOpen.Set(0)
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
			reason = reasonEncodeFailed
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
	closed.Reason = reasonSaved
	closed.Record = rec.ID
	return []*store.Event{saved, closed}, rec, image
}

// shutdown closes the window and skips the queue when the agent stops.
func (c *control) shutdown() {
	c.finish(reasonShutdown)
	for _, cs := range c.queue {
		ev := consentEvent(store.EventCaptureSkipped, cs)
		ev.Reason = reasonShutdown
		c.a.logErr("skip queued consent", c.a.append(ev))
	}
	c.queue = nil
}

// matches reports whether a revoke names this consent's subject or visit.
func matches(r *consent.Revoke, cs *consent.Consent) bool {
	return (r.Subject != "" && r.Subject == cs.Subject) || (r.Visit != "" && r.Visit == cs.Visit)
}

// revoke carries out a verified revoke command: in one transaction it
// spends the request id, closes the window and drops the queued consents it
// names, erases the records and records what it did; then it makes a
// checkpoint and signs the receipt.
func (c *control) revoke(r *consent.Revoke) revokeResult {
	a := c.a
	var events []*store.Event
	closeWin := c.win != nil && matches(r, c.win.c)
	if closeWin {
		skipped := consentEvent(store.EventCaptureSkipped, c.win.c)
		skipped.Reason = reasonRevoked
		closed := consentEvent(store.EventWindowClosed, c.win.c)
		closed.Reason = reasonRevoked
		events = append(events, skipped, closed)
	}
	var kept []*consent.Consent
	for _, cs := range c.queue {
		if matches(r, cs) {
			ev := consentEvent(store.EventCaptureSkipped, cs)
			ev.Reason = reasonRevoked
			events = append(events, ev)
		} else {
			kept = append(kept, cs)
		}
	}

	sel := store.Selector{Subject: r.Subject, Visit: r.Visit}
	revoked := &store.Event{Type: store.EventConsentRevoked, Subject: r.Subject, Visit: r.Visit, Reason: r.Reason, Actor: r.KeyID}
	var erased []*store.Record
	err := a.update(func(tx *auditTx) error {
		if err := tx.Spend(r.JTI, r.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		if err := tx.Append(events...); err != nil {
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
		return tx.Append(revoked)
	})
	if errors.Is(err, store.ErrReplayed) {
		rerr := &consent.Error{Reason: consent.ReasonReplayed, Err: err}
		a.rejectRevoke(r, rerr)
		return revokeResult{err: rerr}
	}
	if err != nil {
		return revokeResult{err: fmt.Errorf("revoke: %w", err)}
	}
	if closeWin {
		c.closeWindow()
	}
	c.queue = kept
	if len(erased) > 0 {
		a.compactDue.Store(true)
	}

	note, err := a.checkpoint()
	if err != nil {
		return revokeResult{err: fmt.Errorf("checkpoint after revoke: %w", err)}
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
		return revokeResult{err: fmt.Errorf("sign receipt: %w", err)}
	}
	return revokeResult{receipt: rc, signed: signed}
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
	err := a.update(func(tx *auditTx) error {
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
		return fmt.Errorf("sweep: %w", err)
	}
	if deleted {
		a.compactDue.Store(true)
	}
	return nil
}

// checkpoint brings the latest checkpoint up to the whole log (a
// checkpoint event only when something happened since the last one:
// store.Tx.SignLog), publishes it (retained) when connected, and returns it.
func (a *Agent) checkpoint() ([]byte, error) {
	var note []byte
	err := a.update(func(tx *auditTx) error {
		cp, ev, err := tx.SignLog(a.Origin(), a.signer, actorAgent)
		if err != nil {
			return err
		}
		note = cp.Note
		if ev != nil {
			tx.events = append(tx.events, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if a.mqtt != nil {
		a.mqtt.publish(topicCheckpoint, true, note)
	}
	return note, nil
}

// compact runs the store's maintenance step after erasures: the erased
// records' data keys are overwritten on disk (store.DB.Compact).
func (a *Agent) compact() error {
	stats, err := a.Store.Compact()
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	a.compactDue.Store(false)
	return a.append(&store.Event{Type: store.EventStoreCompacted, Actor: actorAgent,
		Detail: map[string]any{"bytes_before": stats.Before, "bytes_after": stats.After}})
}

// Consent verifies a consent token and, when it is valid, queues its visit
// for the camera. Refusals are audited as consent.rejected; the error is a
// *consent.Error carrying the reason.
func (a *Agent) Consent(ctx context.Context, token []byte) (consentResult, error) {
	cs, err := a.Verifier.VerifyConsent(token)
	if err != nil {
		a.rejectConsent(cs, err)
		return consentResult{}, err
	}
	reply := make(chan consentResult, 1)
	select {
	case a.consents <- consentRequest{c: cs, reply: reply}:
	case <-a.ctx.Done():
		return consentResult{}, ErrStopped
	case <-ctx.Done():
		return consentResult{}, ctx.Err()
	}
	res := <-reply
	return res, res.err
}

// rejectConsent audits a refused consent token. Claims are named only when
// the signature verified (cs is nil otherwise).
func (a *Agent) rejectConsent(cs *consent.Consent, err error) {
	ev := &store.Event{Type: store.EventConsentRejected, Reason: string(consent.ReasonOf(err))}
	if cs != nil {
		ev.Visit, ev.Subject, ev.Purposes, ev.Actor = cs.Visit, cs.Subject, cs.Purposes, cs.KeyID
	}
	a.metrics.consents.WithLabelValues("rejected").Inc()
	a.Logger.Info("consent rejected", logKeyReason, ev.Reason)
	a.logErr("audit consent.rejected", a.append(ev))
}

// Revoke verifies a revoke command and carries it out; it returns the signed
// receipt. Refusals are audited as revoke.rejected.
func (a *Agent) Revoke(ctx context.Context, token []byte) ([]byte, error) {
	r, err := a.Verifier.VerifyRevoke(token)
	if err != nil {
		a.rejectRevoke(r, err)
		return nil, err
	}
	res := a.carryOut(ctx, r)
	return res.signed, res.err
}

// carryOut has the control loop carry out a verified revoke.
func (a *Agent) carryOut(ctx context.Context, r *consent.Revoke) revokeResult {
	reply := make(chan revokeResult, 1)
	select {
	case a.revokes <- revokeRequest{r: r, reply: reply}:
	case <-a.ctx.Done():
		return revokeResult{err: ErrStopped}
	case <-ctx.Done():
		return revokeResult{err: ctx.Err()}
	}
	return <-reply
}

func (a *Agent) rejectRevoke(r *consent.Revoke, err error) {
	ev := &store.Event{Type: store.EventRevokeRejected, Reason: string(consent.ReasonOf(err))}
	if r != nil {
		ev.Visit, ev.Subject, ev.Actor = r.Visit, r.Subject, r.KeyID
		ev.Detail = map[string]any{"request": r.JTI}
	}
	a.Logger.Info("revoke rejected", logKeyReason, ev.Reason)
	a.logErr("audit revoke.rejected", a.append(ev))
}
