package agent

import (
	"crypto/ed25519"
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
	// ReasonSourceDown: the camera gave no picture while the window was
	// open.
	ReasonSourceDown = "source-down"
	// ReasonInterrupted: the agent stopped (a crash, a power cut) before the
	// consent's outcome was recorded; the next start records this.
	ReasonInterrupted = "interrupted"
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
	quiet bool // nothing to erase: write nothing (a kiosk withdrawal)
	reply chan revokeResult
}

type revokeResult struct {
	receipt Receipt
	err     error
}

// queued is an accepted consent: its claims, and the seq of its
// consent.accepted, which keys its awaiting entry in the store until its
// outcome is recorded.
type queued struct {
	c   *consent.Consent
	seq uint64
}

// window is the open capture window of one visit.
type window struct {
	queued
	timer      *time.Timer
	acc        *capture.Window
	nextDetect time.Time
	qualified  int
	analyzed   int // frames the detector saw
}

// closing is the outcome of an accepted consent (its window, or its place
// in the queue), as written in one transaction with the deletion of its
// awaiting entry: its events, and the record it saves, if any.
type closing struct {
	queued
	events []*store.Event
	rec    *store.Record
	image  []byte
}

// control is the state the control loop owns: the open window, the queue,
// and the outcomes the store failed to record, which are written again, in
// order, before anything else.
type control struct {
	a         *Agent
	win       *window
	queue     []queued
	unsettled []closing
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
	refusals := time.NewTicker(a.RefusalInterval)
	defer refusals.Stop()

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
			rc, err := c.revoke(req.r, req.quiet)
			req.reply <- revokeResult{rc, err}
		case f := <-a.frames:
			c.analyze(f)
		case <-windowEnd:
			c.finish("")
		case <-queueCheck.C:
			c.settle()
			c.expireQueue()
		case <-sweep.C:
			a.logErr("retention sweep", a.sweep())
		case <-checkpoint.C:
			_, err := a.checkpoint()
			a.logErr("checkpoint", err)
		case <-refusals.C:
			a.logErr("refused tokens", a.flushRefusals())
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
	for i, q := range c.queue {
		s.Queue[i] = q.c.Visit
	}
	c.a.state.Store(s)
}

func consentEvent(typ string, c *consent.Consent) *store.Event {
	return &store.Event{Type: typ, Visit: c.Visit, Subject: c.Subject, Purposes: c.Purposes, Actor: c.KeyID}
}

// accept spends the token id and records consent.accepted in one
// transaction, with the consent's awaiting entry, then queues the visit for
// the camera. A spent token id is the last refusal, replayed.
func (c *control) accept(cs *consent.Consent) (Accepted, error) {
	a := c.a
	accepted := consentEvent(store.EventConsentAccepted, cs)
	accepted.Detail = map[string]any{"notice": cs.Notice, "expires": cs.Expires.UTC().Format(time.RFC3339),
		"jti": cs.JTI, "token_sha256": consent.TokenSHA256(cs.Token), "minor": cs.Minor, "guardian": cs.Guardian}
	full := len(c.queue) >= MaxQueue
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := tx.Spend(cs.JTI, cs.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		if err := tx.Append(accepted); err != nil {
			return err
		}
		if err := a.keepEvidence(tx, accepted, store.EvidenceConsent, cs.JTI, cs.Token); err != nil {
			return err
		}
		if full {
			skipped := consentEvent(store.EventCaptureSkipped, cs)
			skipped.Reason = ReasonQueueFull
			return tx.Append(skipped)
		}
		return tx.PutAwaiting(awaiting(queued{cs, accepted.Seq}, false))
	})
	if errors.Is(err, store.ErrReplayed) {
		return Accepted{}, a.rejectConsent(cs, consent.NewReplayed(cs.JTI, err))
	}
	if err != nil {
		return Accepted{}, unavailable(fmt.Errorf("accept the consent of visit %s: %w", cs.Visit, err))
	}
	acc := Accepted{Consent: cs, Seq: accepted.Seq}
	if full {
		return acc, ErrQueueFull
	}
	c.queue = append(c.queue, queued{cs, accepted.Seq})
	c.publish()
	acc.Waiting = len(c.queue) - 1
	if c.win != nil {
		acc.Waiting++
	}
	return acc, nil
}

// awaiting is the store's entry for an accepted consent without outcome.
func awaiting(q queued, opened bool) store.Awaiting {
	return store.Awaiting{Seq: q.seq, Visit: q.c.Visit, Subject: q.c.Subject, Purposes: q.c.Purposes, Actor: q.c.KeyID, Opened: opened}
}

// openNext opens the window of the first queued consent that has not
// expired; those that have are skipped with queue-timeout. No window opens
// while an outcome waits to be recorded: outcomes are recorded in order.
func (c *control) openNext() {
	if !c.settle() {
		return
	}
	c.expireQueue()
	if len(c.queue) == 0 {
		return
	}
	a := c.a
	q := c.queue[0]
	opened := consentEvent(store.EventWindowOpened, q.c)
	opened.Detail = map[string]any{"window": a.Window.String()}
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := tx.Append(opened); err != nil {
			return err
		}
		return tx.PutAwaiting(awaiting(q, true))
	})
	if err != nil {
		// Without its audit event the window must not open; the visit
		// stays first in the queue and is tried again.
		a.Logger.Error("open window", logKeyVisit, q.c.Visit, logKeyError, err)
		return
	}
	c.queue = c.queue[1:]
	c.win = &window{
		queued: q,
		timer:  time.NewTimer(a.Window),
		acc:    capture.NewWindow(a.Rules),
	}
	c.publish()
}

// skip is the closing of a queued consent that gets no window.
func skip(q queued, reason string) closing {
	ev := consentEvent(store.EventCaptureSkipped, q.c)
	ev.Reason = reason
	return closing{queued: q, events: []*store.Event{ev}}
}

// expireQueue skips queued consents whose token expired before their
// window could open.
func (c *control) expireQueue() {
	now := c.a.Now()
	kept := c.queue[:0]
	var skipped []closing
	for _, q := range c.queue {
		if now.Before(q.c.Expires) {
			kept = append(kept, q)
		} else {
			skipped = append(skipped, skip(q, ReasonQueueTimeout))
		}
	}
	if len(skipped) == 0 {
		return
	}
	clear(c.queue[len(kept):])
	c.queue = kept
	c.publish()
	c.record(skipped...)
}

// record writes outcomes in one transaction, after those the store failed
// to write before. What fails is kept, in order, and tried again
// (settle): an accepted consent never loses its outcome while the agent
// runs, and the next start closes what a crash left open (interrupted).
func (c *control) record(outcomes ...closing) {
	c.unsettled = append(c.unsettled, outcomes...)
	c.settle()
}

// settle writes the outcomes waiting to be recorded, in one transaction,
// and reports whether none is left.
func (c *control) settle() bool {
	if len(c.unsettled) == 0 {
		return true
	}
	a := c.a
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := writeClosings(tx, c.unsettled); err != nil {
			return err
		}
		// A capture may take the subjects stored past a filing threshold:
		// recorded with it, in its transaction.
		return appendAll(tx, a.subjects.crossings(tx.Appended())...)
	})
	if err != nil {
		visits := make([]string, len(c.unsettled))
		for i, cl := range c.unsettled {
			visits[i] = cl.c.Visit
		}
		a.Logger.Error("record outcomes; trying again", "visits", visits, logKeyError, err)
		return false
	}
	clear(c.unsettled)
	c.unsettled = c.unsettled[:0]
	return true
}

// writeClosings writes outcomes in tx, in order.
func writeClosings(tx *store.Tx, outcomes []closing) error {
	for _, cl := range outcomes {
		if cl.rec != nil {
			if err := tx.PutRecord(cl.rec, cl.image); err != nil {
				return err
			}
		}
		if err := appendAll(tx, cl.events...); err != nil {
			return err
		}
		if err := tx.DeleteAwaiting(cl.seq); err != nil {
			return err
		}
	}
	return nil
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
	w.analyzed++
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
	if w := c.closeWindow(); w != nil {
		c.record(c.outcome(w, reason))
	}
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

// outcome builds the closing of window w: its events and the record.
func (c *control) outcome(w *window, reason string) closing {
	a := c.a
	cl := closing{queued: w.queued}
	closed := consentEvent(store.EventWindowClosed, w.c)
	best, ok := w.acc.Best()
	switch {
	case reason != "":
	case !ok && (w.analyzed == 0 || a.sourceDown.Load()):
		reason = ReasonSourceDown
	case !ok:
		reason = w.acc.Reason()
	default:
		var err error
		if cl.image, err = capture.EncodeJPEG(best.Image); err != nil {
			a.Logger.Error("encode face crop", logKeyError, err)
			reason = ReasonEncodeFailed
		}
	}
	if reason != "" {
		skipped := consentEvent(store.EventCaptureSkipped, w.c)
		skipped.Reason = reason
		closed.Reason = reason
		cl.events, cl.image = []*store.Event{skipped, closed}, nil
		return cl
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
	cl.events, cl.rec = []*store.Event{saved, closed}, rec
	return cl
}

// shutdown closes the window and skips the queue when the agent stops.
// What the store cannot record now, the next start records as interrupted.
func (c *control) shutdown() {
	c.finish(ReasonShutdown)
	skipped := make([]closing, len(c.queue))
	for i, q := range c.queue {
		skipped[i] = skip(q, ReasonShutdown)
	}
	c.queue = nil
	c.publish()
	c.record(skipped...)
}

// matches reports whether a revoke names this consent's subject or visit.
func matches(r *consent.Revoke, cs *consent.Consent) bool {
	return (r.Subject != "" && r.Subject == cs.Subject) || (r.Visit != "" && r.Visit == cs.Visit)
}

// revoke carries out a verified revoke command: in one transaction it
// spends the request id, records the outcomes still waiting to be recorded
// (those it names as revoked, without their record), closes the window and
// skips the queued consents it names, erases the records, records what it
// did and signs a checkpoint covering it; then it signs the receipt. A
// spent request id is refused as replayed.
func (c *control) revoke(r *consent.Revoke, quiet bool) (Receipt, error) {
	a := c.a
	var outcomes []closing
	named := 0 // windows and queued consents the revoke names
	for _, cl := range c.unsettled {
		if cl.rec != nil && matches(r, cl.c) {
			cl = revokedWindow(cl.queued)
			named++
		}
		outcomes = append(outcomes, cl)
	}
	closeWin := c.win != nil && matches(r, c.win.c)
	if closeWin {
		outcomes = append(outcomes, revokedWindow(c.win.queued))
		named++
	}
	var kept []queued
	for _, q := range c.queue {
		if matches(r, q.c) {
			outcomes = append(outcomes, skip(q, ReasonRevoked))
			named++
		} else {
			kept = append(kept, q)
		}
	}
	if quiet && named == 0 {
		if left, err := c.a.Records(store.Selector{Subject: r.Subject, Visit: r.Visit}); err != nil || len(left) == 0 {
			return Receipt{Receipt: consent.Receipt{Request: r.JTI, Subject: r.Subject, Visit: r.Visit, Time: a.Now().UTC()}}, err
		}
	}

	sel := store.Selector{Subject: r.Subject, Visit: r.Visit}
	revoked := &store.Event{Type: store.EventConsentRevoked, Subject: r.Subject, Visit: r.Visit, Reason: r.Reason, Actor: r.KeyID}
	var rc Receipt
	erased := 0
	err := a.Store.Update(func(tx *store.Tx) error {
		if err := tx.Spend(r.JTI, r.Expires.Add(a.ClockSkew)); err != nil {
			return err
		}
		if err := writeClosings(tx, outcomes); err != nil {
			return err
		}
		recs, err := tx.Erase(sel)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			err := tx.Append(&store.Event{Type: store.EventRecordErased, Record: rec.ID, Visit: rec.Visit, Subject: rec.Subject,
				Purposes: tagPurposes(rec.Purposes), Reason: r.Reason, Actor: r.KeyID})
			if err != nil {
				return err
			}
		}
		erased = len(recs)
		revoked.Detail = map[string]any{"request": r.JTI, "erased": erased}
		if r.Token != "" {
			revoked.Detail["token_sha256"] = consent.TokenSHA256(r.Token)
		}
		if err := tx.Append(revoked); err != nil {
			return err
		}
		if r.Token != "" {
			if err := a.keepEvidence(tx, revoked, store.EvidenceRevoke, r.JTI, r.Token); err != nil {
				return err
			}
		}
		note, err := a.appendCheckpoint(tx)
		if err != nil {
			return err
		}
		rc.Receipt = consent.Receipt{Request: r.JTI, Subject: r.Subject, Visit: r.Visit, Erased: erased,
			Seq: revoked.Seq, Checkpoint: string(note), Time: revoked.Time}
		if rc.Signed, err = consent.SignReceipt(a.DeviceKey, rc.Receipt); err != nil {
			return fmt.Errorf("sign the receipt: %w", err)
		}
		return tx.PutReceipt(r.JTI, rc.Signed)
	})
	if errors.Is(err, store.ErrReplayed) {
		return a.replayedRevoke(r, err)
	}
	if err != nil {
		return Receipt{}, unavailable(fmt.Errorf("carry out revoke %s: %w", r.JTI, err))
	}
	clear(c.unsettled)
	c.unsettled = c.unsettled[:0]
	if closeWin {
		c.closeWindow()
	}
	c.queue = kept
	c.publish()
	if erased > 0 {
		a.compactDue.Store(true)
	}
	a.signed([]byte(rc.Checkpoint))
	return rc, nil
}

// replayedRevoke refuses a revoke whose request id is spent, as replayed,
// and returns with the refusal the receipt of the revoke that spent it, if
// it was carried out here: a broker gives a revoke again when the agent
// stopped before acknowledging it, and its sender must get its receipt.
func (a *Agent) replayedRevoke(r *consent.Revoke, spent error) (Receipt, error) {
	var signed []byte
	if err := a.Store.View(func(tx *store.Tx) error { signed = tx.Receipt(r.JTI); return nil }); err != nil {
		return Receipt{}, unavailable(fmt.Errorf("read the receipt of revoke %s: %w", r.JTI, err))
	}
	refusal := a.rejectRevoke(r, consent.NewReplayed(r.JTI, spent))
	if signed == nil || consent.ReasonOf(refusal) == "" {
		return Receipt{}, refusal
	}
	rc, err := consent.VerifyReceipt(a.DeviceKey.Public().(ed25519.PublicKey), signed)
	if err != nil {
		return Receipt{}, fmt.Errorf("the receipt kept for revoke %s: %w", r.JTI, err)
	}
	return Receipt{Receipt: *rc, Signed: signed}, refusal
}

// keepEvidence keeps, in tx, the token an event rests on, for
// EvidenceRetention after the event.
func (a *Agent) keepEvidence(tx *store.Tx, ev *store.Event, kind, jti, token string) error {
	return tx.PutEvidence(store.Evidence{Seq: ev.Seq, Kind: kind, JTI: jti, Token: token, Expires: ev.Time.Add(a.EvidenceRetention)})
}

// revokedWindow is the closing of a window a revoke closed: skipped and
// closed as revoked, nothing saved.
func revokedWindow(q queued) closing {
	skipped := consentEvent(store.EventCaptureSkipped, q.c)
	skipped.Reason = ReasonRevoked
	closed := consentEvent(store.EventWindowClosed, q.c)
	closed.Reason = ReasonRevoked
	return closing{queued: q, events: []*store.Event{skipped, closed}}
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
		now := a.Now()
		res, err := tx.Sweep(now)
		if err != nil {
			return err
		}
		if _, err := tx.SweepEvidence(now, actorAgent); err != nil {
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

// checkpoint brings the latest checkpoint up to the whole log and returns
// its note.
func (a *Agent) checkpoint() ([]byte, error) {
	var note []byte
	err := a.Store.Update(func(tx *store.Tx) error {
		var err error
		note, err = a.appendCheckpoint(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.signed(note)
	return note, nil
}

// appendCheckpoint brings the latest checkpoint up to the whole log as it
// stands in tx (with a checkpoint event only when something happened since
// the last one: store.Tx.SignLog) and returns its note.
func (a *Agent) appendCheckpoint(tx *store.Tx) ([]byte, error) {
	cp, _, err := tx.SignLog(a.Origin(), a.signer, actorAgent)
	return cp.Note, err
}

// compact runs the store's maintenance step after erasures: the erased
// records' data keys are overwritten on disk (store.DB.Compact).
func (a *Agent) compact() error {
	stats, err := a.Store.Compact()
	if err != nil {
		return err
	}
	a.compactDue.Store(false)
	return a.append(&store.Event{Type: store.EventStoreCompacted, Actor: actorAgent,
		Detail: map[string]any{"bytes_before": stats.Before, "bytes_after": stats.After}})
}

// rejectConsent audits a refused consent token and returns the refusal,
// or, when the store cannot record it, a failure (ErrUnavailable): a
// refusal is never answered that the log does not hold. Claims are named
// only when the signature verified (cs is nil otherwise).
func (a *Agent) rejectConsent(cs *consent.Consent, refusal error) error {
	ev := &store.Event{Type: store.EventConsentRejected, Reason: string(consent.ReasonOf(refusal))}
	if cs != nil {
		ev.Visit, ev.Subject, ev.Purposes, ev.Actor = cs.Visit, cs.Subject, cs.Purposes, cs.KeyID
	}
	a.Logger.Info("consent rejected", logKeyReason, ev.Reason)
	if cs == nil && !a.refusals.admit(ev.Type, ev.Reason, a.Now()) {
		return refusal // counted; flushRefusals writes the count
	}
	if err := a.append(ev); err != nil {
		return unavailable(fmt.Errorf("record the refusal of a consent token (%s): %w", ev.Reason, err))
	}
	return refusal
}

// rejectRevoke audits a refused revoke command as rejectConsent does,
// naming what it asked for only when the signature verified (r is nil
// otherwise).
func (a *Agent) rejectRevoke(r *consent.Revoke, refusal error) error {
	ev := &store.Event{Type: store.EventRevokeRejected, Reason: string(consent.ReasonOf(refusal))}
	if r != nil {
		ev.Visit, ev.Subject, ev.Actor = r.Visit, r.Subject, r.KeyID
		ev.Detail = map[string]any{"request": r.JTI}
	}
	a.Logger.Info("revoke rejected", logKeyReason, ev.Reason)
	if r == nil && !a.refusals.admit(ev.Type, ev.Reason, a.Now()) {
		return refusal // counted; flushRefusals writes the count
	}
	if err := a.append(ev); err != nil {
		return unavailable(fmt.Errorf("record the refusal of a revoke command (%s): %w", ev.Reason, err))
	}
	return refusal
}
