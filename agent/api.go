package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// Errors of the typed API besides the refusals (*consent.Error) and the
// store's ErrNotFound and ErrPurpose. Callers check them with errors.Is.
var (
	// ErrStopped: the agent is stopping, or not running; nothing was done.
	ErrStopped = errors.New("the agent is stopping")
	// ErrQueueFull: the consent was accepted (and its token spent), but so
	// many visits wait for the camera that it was skipped as queue-full.
	ErrQueueFull = errors.New("too many visits are waiting for the camera; ask for a new token in a minute")
	// ErrUnavailable: the store failed (a full or failing disk), so nothing
	// was done and nothing recorded; the same request can be made again.
	ErrUnavailable = errors.New("the box cannot record anything right now; nothing was done, try again")
)

// unavailable marks a failure of the store as ErrUnavailable, unless it is
// one of the store's answers about the request itself.
func unavailable(err error) error {
	switch {
	case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrPurpose), errors.Is(err, ErrStopped):
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Accepted is an accepted consent token: its claims, the seq of its
// consent.accepted event, and how many visits are before it at the camera
// (0: its window opens now).
type Accepted struct {
	Consent *consent.Consent
	Seq     uint64
	Waiting int
}

// Receipt is a carried-out revoke or withdrawal: the receipt, and its JSON
// signed by the device key.
type Receipt struct {
	consent.Receipt
	Signed []byte
}

// Snapshot is the capture state at one moment: the visit whose window is
// open ("" for none) and those waiting for the camera, in order.
type Snapshot struct {
	Window string
	Queue  []string
}

// Consent verifies a consent token and, when it is valid, queues its visit
// for the camera. A refusal is audited as consent.rejected and returned as
// a *consent.Error carrying the reason. With ErrQueueFull the consent was
// accepted and skipped at once.
func (a *Agent) Consent(ctx context.Context, token []byte) (Accepted, error) {
	cs, err := a.Verifier.VerifyConsent(token)
	if err != nil {
		return Accepted{}, a.rejectConsent(cs, err)
	}
	reply := make(chan consentResult, 1)
	if err := send(ctx, a, a.consents, consentRequest{c: cs, reply: reply}); err != nil {
		return Accepted{}, err
	}
	res := <-reply
	return res.accepted, res.err
}

// Revoke verifies a revoke command and carries it out: the window and the
// queued consents it names are closed, the records erased, all in one
// transaction with its events; it returns the signed receipt. A refusal is
// audited as revoke.rejected and returned as a *consent.Error. A revoke
// carried out before is refused as replayed, and its receipt returned with
// the refusal, to be sent again.
func (a *Agent) Revoke(ctx context.Context, token []byte) (Receipt, error) {
	r, err := a.Verifier.VerifyRevoke(token)
	if err != nil {
		return Receipt{}, a.rejectRevoke(r, err)
	}
	return a.carryOut(ctx, r, false)
}

// Withdraw erases a subject at the visitor's own request (the kiosk's
// withdrawal code), exactly as a revoke command naming the subject would;
// actor and reason go into the audit events. When nothing of the subject is
// left (no record, no window, no queued consent: an earlier withdrawal
// erased it, or nothing was saved), nothing is written, so that sending a
// code again and again cannot fill the log: the receipt then has Erased 0
// and no signature.
func (a *Agent) Withdraw(ctx context.Context, subject, actor, reason string) (Receipt, error) {
	now := a.Now()
	return a.carryOut(ctx, &consent.Revoke{
		Issuer: actor, KeyID: actor, JTI: rand.Text(), Reason: reason, Subject: subject,
		Audience: consent.Audience(a.Site, a.Camera), IssuedAt: now, Expires: now,
	}, true)
}

// carryOut has the control loop carry out a verified revoke; with quiet,
// only if it has something to do.
func (a *Agent) carryOut(ctx context.Context, r *consent.Revoke, quiet bool) (Receipt, error) {
	reply := make(chan revokeResult, 1)
	if err := send(ctx, a, a.revokes, revokeRequest{r: r, quiet: quiet, reply: reply}); err != nil {
		return Receipt{}, err
	}
	res := <-reply
	return res.receipt, res.err
}

// send hands a request to the control loop, unless the agent or ctx ends
// first.
func send[T any](ctx context.Context, a *Agent, ch chan<- T, req T) error {
	select {
	case ch <- req:
		return nil
	case <-a.ctx.Done():
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Decline records that a visitor said no at the kiosk, and nothing else: no
// subject, no visit, no purpose; only the notice in force, the actor, and
// the reason when there is one (consent.ReasonGuardianRequired: a visitor
// under 14 had no guardian to agree). It returns the event's seq.
func (a *Agent) Decline(actor, reason string) (uint64, error) {
	ev := &store.Event{Type: store.EventConsentDeclined, Actor: actor, Reason: reason, Detail: map[string]any{"notice": a.NoticeHash}}
	if err := a.append(ev); err != nil {
		return 0, unavailable(fmt.Errorf("record a refusal at the kiosk: %w", err))
	}
	return ev.Seq, nil
}

// Records lists the records of a subject or a visit, metadata only.
func (a *Agent) Records(sel store.Selector) ([]*store.Record, error) {
	var recs []*store.Record
	err := a.Store.View(func(tx *store.Tx) error {
		var err error
		recs, err = tx.Records(sel)
		return err
	})
	return recs, unavailable(err)
}

// ReadImage returns a record's image for a purpose it is still tagged with,
// and audits the read (record.accessed, by actor) in the same transaction:
// no read without its event. It fails with store.ErrNotFound, or with
// store.ErrPurpose, and then the refused read is audited too
// (access.refused): an attempt to use a face for a purpose the visitor did
// not agree to, or after its retention, is the auditor's business.
func (a *Agent) ReadImage(id, purpose, actor string) ([]byte, error) {
	image, err := a.readImage(id, purpose, actor)
	if !errors.Is(err, store.ErrPurpose) {
		return image, unavailable(err)
	}
	refused := &store.Event{Type: store.EventAccessRefused, Record: id, Purposes: []string{purpose}, Actor: actor,
		Reason: "purpose-not-allowed"}
	aerr := a.Store.Update(func(tx *store.Tx) error {
		if rec, err := tx.Record(id); err == nil {
			refused.Visit, refused.Subject = rec.Visit, rec.Subject
		}
		return tx.Append(refused)
	})
	if aerr != nil {
		return nil, unavailable(fmt.Errorf("record a refused read: %w", aerr))
	}
	return nil, err
}

func (a *Agent) readImage(id, purpose, actor string) ([]byte, error) {
	var image []byte
	ev := &store.Event{Type: store.EventRecordAccessed, Record: id, Purposes: []string{purpose}, Actor: actor}
	err := a.Store.Update(func(tx *store.Tx) error {
		rec, err := tx.Record(id)
		if err != nil {
			return err
		}
		ev.Visit, ev.Subject = rec.Visit, rec.Subject
		if image, err = tx.Image(id, purpose); err != nil {
			return err
		}
		return tx.Append(ev)
	})
	return image, err
}

// Snapshot is the open window and the queue as they are now.
func (a *Agent) Snapshot() Snapshot {
	s := a.state.Load()
	return Snapshot{Window: s.Window, Queue: slices.Clone(s.Queue)}
}
