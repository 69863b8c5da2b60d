// Package audittest makes audit logs and bundles for tests: a Box drives a
// real store.DB as the agent does under docs/SPEC.md (the same events, in
// the same transactions, with evidence signed by test issuer and operator
// keys), on a clock the test controls, and writes the bundle an auditor
// would pull. Tests break one rule at a time through its lower-level
// methods.
package audittest

import (
	"bytes"
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// Names and keys of every test box.
const (
	Site        = "office-07"
	Camera      = "entrance-1"
	IssuerKID   = "kiosk-1"
	OperatorKID = "ops-1"
	// Purposes of the default settings.
	PurposeChannel  = "channel-attribution"
	PurposeSecurity = "entry-security"
)

var (
	DeviceKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
	IssuerKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x17}, ed25519.SeedSize))
	OperatorKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x23}, ed25519.SeedSize))
	masterKey   = bytes.Repeat([]byte{0x5c}, 32)
	// Epoch is where every box's clock starts.
	Epoch = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
)

// DefaultSettings are those of a box with the SPEC's defaults and two
// purposes: channel attribution kept 30 days, entry security 1 day.
func DefaultSettings() audit.Settings {
	return audit.Settings{
		Purposes: map[string]audit.Duration{
			PurposeChannel:  audit.Duration(720 * time.Hour),
			PurposeSecurity: audit.Duration(24 * time.Hour),
		},
		CheckpointInterval: audit.Duration(time.Minute),
		SweepInterval:      audit.Duration(time.Minute),
		ClockSkew:          audit.Duration(30 * time.Second),
		EvidenceRetention:  audit.Duration(3 * 365 * 24 * time.Hour),
		Issuers:            map[string]string{IssuerKID: audit.KeyFingerprint(IssuerKey.Public().(ed25519.PublicKey))},
		Operators:          map[string]string{OperatorKID: audit.KeyFingerprint(OperatorKey.Public().(ed25519.PublicKey))},
	}
}

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Box plays the agent on a real store.
type Box struct {
	TB    testing.TB
	DB    *store.DB
	Clock *Clock
	// Settings are stated in agent.started (unless Unsigned) and in the
	// bundle's manifest.
	Settings audit.Settings
	// Unsigned makes agent.started carry no settings, as an agent older
	// than the contract that added them.
	Unsigned bool
	Notice   consent.Notice
	// Image is what every record stores.
	Image []byte
	// EvidenceKeptFor, when set, is how long evidence is kept instead of
	// Settings.EvidenceRetention (to break rule 1).
	EvidenceKeptFor time.Duration

	started time.Time // of the current run: the tickers count from it
	dirty   bool      // events since the last checkpoint
	tx      *store.Tx // the batch in progress
	expiry  timeHeap  // when tags and evidence expire
	n       int
}

// NewBox opens a store in a temporary directory with the default settings;
// nothing is logged until Start.
func NewBox(tb testing.TB) *Box {
	tb.Helper()
	return NewBoxAt(tb, filepath.Join(tb.TempDir(), "consentcam.db"))
}

// NewBoxAt opens the store at path.
func NewBoxAt(tb testing.TB, path string) *Box {
	tb.Helper()
	b := &Box{TB: tb, Clock: &Clock{t: Epoch}, Settings: DefaultSettings(), Image: []byte("\xff\xd8 a face crop \xff\xd9")}
	b.DB = store.NewDB(path)
	b.DB.MasterKey = masterKey
	b.DB.Site, b.DB.Camera = Site, Camera
	b.DB.Now = b.Clock.Now
	if err := b.DB.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.DB.Close() })
	b.Notice = consent.NewNotice(Site, Camera, 20*time.Second, "")
	b.Notice.Controller = consent.Text{consent.LangChinese: "示例地产有限公司", consent.LangEnglish: "Example Realty Ltd."}
	b.Notice.Contact = consent.Same("privacy@example.com")
	b.Notice.Withdraw = consent.Text{consent.LangChinese: "请到前台办理。", consent.LangEnglish: "Ask the front desk."}
	b.Notice.Alternative = consent.Text{consent.LangChinese: "请到前台登记。", consent.LangEnglish: "Sign in at the front desk instead."}
	return b
}

// Now is the box's time.
func (b *Box) Now() time.Time { return b.Clock.Now() }

// Update runs fn in the batch in progress, or in a transaction of its own.
// Every event appended through it counts for the next checkpoint.
func (b *Box) Update(fn func(tx *store.Tx) error) {
	b.TB.Helper()
	b.dirty = true
	if b.tx != nil {
		if err := fn(b.tx); err != nil {
			b.TB.Fatal(err)
		}
		return
	}
	if err := b.DB.Update(fn); err != nil {
		b.TB.Fatal(err)
	}
}

// Batch runs fn with every transaction of the box inside one, for speed:
// the log is the same, bar what one transaction means for rule 5 (keep a
// revoke inside one Update).
func (b *Box) Batch(fn func()) {
	b.TB.Helper()
	if b.tx != nil {
		fn()
		return
	}
	err := b.DB.Update(func(tx *store.Tx) error {
		b.tx = tx
		defer func() { b.tx = nil }()
		fn()
		return nil
	})
	if err != nil {
		b.TB.Fatal(err)
	}
}

// Append appends events in one transaction.
func (b *Box) Append(evs ...*store.Event) {
	b.TB.Helper()
	b.Update(func(tx *store.Tx) error {
		for _, ev := range evs {
			if err := tx.Append(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// Start logs agent.started with the settings, publishes the notice (whose
// purposes, when it has none, are those of the settings), sweeps and makes
// a checkpoint, as the agent does when it starts.
func (b *Box) Start() {
	b.TB.Helper()
	detail := map[string]any{"version": "test", "detector": "yunet"}
	if !b.Unsigned {
		for k, v := range audit.SettingsDetail(&b.Settings) {
			detail[k] = v
		}
	}
	if len(b.Notice.Purposes) == 0 {
		// The notice announces the retention the settings keep.
		for _, p := range slices.Sorted(maps.Keys(b.Settings.Purposes)) {
			b.Notice.Purposes = append(b.Notice.Purposes, consent.NewPurpose(p, consent.Same("the purpose "+p), time.Duration(b.Settings.Purposes[p])))
		}
	}
	notice := b.Notice.JSON()
	b.Update(func(tx *store.Tx) error {
		if err := tx.Append(&store.Event{Type: store.EventAgentStarted, Actor: "agent", Detail: detail}); err != nil {
			return err
		}
		if err := tx.Append(&store.Event{Type: store.EventNoticePublished, Actor: "agent", Detail: map[string]any{"hash": b.Notice.Hash()}}); err != nil {
			return err
		}
		return tx.PutNotice(b.Notice.Hash(), notice)
	})
	b.started = b.Now()
	b.Sweep()
	b.Checkpoint()
}

// Stop logs agent.stopped and the last checkpoint.
func (b *Box) Stop() {
	b.TB.Helper()
	b.Append(&store.Event{Type: store.EventAgentStopped, Actor: "agent"})
	b.Checkpoint()
}

// Checkpoint signs the log and appends the checkpoint event.
func (b *Box) Checkpoint() {
	b.TB.Helper()
	s, err := store.NewCheckpointSigner(store.Origin(Site, Camera), DeviceKey)
	if err != nil {
		b.TB.Fatal(err)
	}
	b.Update(func(tx *store.Tx) error {
		cp, err := tx.Checkpoint(store.Origin(Site, Camera), s)
		if err != nil {
			return err
		}
		ev := cp.Event()
		ev.Actor = "agent"
		return tx.Append(ev)
	})
	b.dirty = false
}

// Sweep drops expired tags and evidence, with their events, as the agent's
// sweep does.
func (b *Box) Sweep() {
	b.TB.Helper()
	now := b.Now()
	dirty := b.dirty
	var events bool
	b.Update(func(tx *store.Tx) error {
		res, err := tx.Sweep(now)
		if err != nil {
			return err
		}
		for _, x := range res.Expired {
			err := tx.Append(&store.Event{Type: store.EventRecordExpired, Record: x.Record.ID, Visit: x.Record.Visit,
				Subject: x.Record.Subject, Purposes: x.Purposes, Actor: "agent", Detail: map[string]any{"deleted": x.Deleted}})
			if err != nil {
				return err
			}
		}
		n, err := tx.SweepEvidence(now, "agent")
		events = len(res.Expired) > 0 || n > 0
		return err
	})
	if !events {
		b.dirty = dirty // an empty sweep logs nothing
	}
	for len(b.expiry) > 0 && !b.expiry[0].After(now) {
		heap.Pop(&b.expiry)
	}
}

// Advance moves the clock by d as time passes on a running agent: at each
// tick of the sweep after a tag expired the sweep runs, and at each tick of
// the checkpoint interval that follows events a checkpoint is made (idle
// minutes are skipped: they would only add checkpoints).
func (b *Box) Advance(d time.Duration) {
	b.TB.Helper()
	b.AdvanceWith(d, true, true)
}

// AdvanceWith is Advance with the sweep or the checkpoints left out, to
// break rules 4 and 7.
func (b *Box) AdvanceWith(d time.Duration, sweep, checkpoints bool) {
	b.TB.Helper()
	target := b.Now().Add(d)
	cpEvery := time.Duration(b.Settings.CheckpointInterval)
	swEvery := time.Duration(b.Settings.SweepInterval)
	for {
		next := target.Add(time.Nanosecond)
		if checkpoints && b.dirty {
			next = minTime(next, tick(b.started, cpEvery, b.Now()))
		}
		if sweep && len(b.expiry) > 0 {
			due := b.firstExpiry().Add(-time.Nanosecond)
			if due.Before(b.Now()) {
				due = b.Now()
			}
			next = minTime(next, tick(b.started, swEvery, due))
		}
		if next.After(target) {
			break
		}
		b.Clock.Set(next)
		if sweep && next.Equal(tick(b.started, swEvery, next.Add(-time.Nanosecond))) && len(b.expiry) > 0 && !b.firstExpiry().After(next) {
			b.Sweep()
		}
		if checkpoints && b.dirty && next.Equal(tick(b.started, cpEvery, next.Add(-time.Nanosecond))) {
			b.Checkpoint()
		}
	}
	b.Clock.Set(target)
}

// tick is the first tick of a ticker started at start with period every
// that comes after t.
func tick(start time.Time, every time.Duration, t time.Time) time.Time {
	if t.Before(start) {
		return start.Add(every)
	}
	n := t.Sub(start)/every + 1
	return start.Add(n * every)
}

// firstExpiry is the earliest expiry of a tag or evidence still kept.
func (b *Box) firstExpiry() time.Time { return b.expiry[0] }

type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *timeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Visitor is a consent the box accepted.
type Visitor struct {
	consent.Consent
	Token string
	Seq   uint64 // of consent.accepted
	// Record is the id of the face saved, if any.
	Record string
}

// ConsentOption changes a consent before it is signed.
type ConsentOption func(*consent.Consent)

// Purposes sets the purposes agreed to.
func Purposes(p ...string) ConsentOption { return func(c *consent.Consent) { c.Purposes = p } }

// Minor marks the visitor a minor, with or without a guardian.
func Minor(guardian bool) ConsentOption {
	return func(c *consent.Consent) { c.Minor, c.Guardian = true, guardian }
}

// Subject sets the subject.
func Subject(s string) ConsentOption { return func(c *consent.Consent) { c.Subject = s } }

// NewConsent returns the claims of a new visitor's consent, valid for 10
// minutes from now, to channel attribution.
func (b *Box) NewConsent(opts ...ConsentOption) consent.Consent {
	b.n++
	now := b.Now().Truncate(time.Second)
	c := consent.Consent{
		Issuer: "kiosk", KeyID: IssuerKID, Subject: fmt.Sprintf("subj-%d", b.n), JTI: fmt.Sprintf("jti-%d", b.n),
		Visit: fmt.Sprintf("visit-%d", b.n), Audience: consent.Audience(Site, Camera),
		Purposes: []string{PurposeChannel}, Notice: b.Notice.Hash(),
		IssuedAt: now, NotBefore: now, Expires: now.Add(10 * time.Minute),
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Sign signs a consent with the test issuer key.
func (b *Box) Sign(c consent.Consent) string {
	b.TB.Helper()
	tok, err := consent.SignConsent(IssuerKey, IssuerKID, c)
	if err != nil {
		b.TB.Fatal(err)
	}
	return tok
}

// Accept logs consent.accepted for a new consent and keeps its token as
// evidence, in one transaction.
func (b *Box) Accept(opts ...ConsentOption) *Visitor {
	b.TB.Helper()
	c := b.NewConsent(opts...)
	return b.AcceptToken(c, b.Sign(c))
}

// AcceptToken logs consent.accepted for the claims c and keeps token as its
// evidence (which need not be c's, to break rule 1).
func (b *Box) AcceptToken(c consent.Consent, token string) *Visitor {
	b.TB.Helper()
	v := &Visitor{Consent: c, Token: token}
	ev := AcceptedEvent(c, token)
	b.Update(func(tx *store.Tx) error {
		if err := tx.Append(ev); err != nil {
			return err
		}
		return tx.PutEvidence(store.Evidence{Seq: ev.Seq, Kind: store.EvidenceConsent, JTI: c.JTI, Token: token,
			Expires: ev.Time.Add(b.evidenceRetention())})
	})
	heap.Push(&b.expiry, ev.Time.Add(b.evidenceRetention()))
	v.Seq = ev.Seq
	return v
}

func (b *Box) evidenceRetention() time.Duration {
	if b.EvidenceKeptFor > 0 {
		return b.EvidenceKeptFor
	}
	return time.Duration(b.Settings.EvidenceRetention)
}

// AcceptedEvent is the consent.accepted event of SPEC for a token.
func AcceptedEvent(c consent.Consent, token string) *store.Event {
	return &store.Event{Type: store.EventConsentAccepted, Visit: c.Visit, Subject: c.Subject, Purposes: c.Purposes, Actor: c.KeyID,
		Detail: map[string]any{
			"notice": c.Notice, "expires": c.Expires.UTC().Format(time.RFC3339),
			"jti": c.JTI, "token_sha256": SHA256(token), "minor": c.Minor, "guardian": c.Guardian,
		}}
}

// SHA256 is the lowercase hex SHA-256 of a token.
func SHA256(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (v *Visitor) event(typ string) *store.Event {
	return &store.Event{Type: typ, Visit: v.Visit, Subject: v.Subject, Purposes: v.Purposes, Actor: v.KeyID}
}

// Open logs window.opened for the visitor.
func (b *Box) Open(v *Visitor) {
	b.TB.Helper()
	ev := v.event(store.EventWindowOpened)
	ev.Detail = map[string]any{"window": "20s"}
	b.Append(ev)
}

// Save stores the visitor's face, tagged with the purposes agreed, and
// closes the window, in one transaction.
func (b *Box) Save(v *Visitor) {
	b.TB.Helper()
	b.save(v, true)
}

// SaveInWindow is Save without closing the window, to save a second face.
func (b *Box) SaveInWindow(v *Visitor) {
	b.TB.Helper()
	b.save(v, false)
}

func (b *Box) save(v *Visitor, close bool) {
	now := b.Now().UTC()
	rec := &store.Record{
		ID: store.NewID(), Visit: v.Visit, Subject: v.Subject, CapturedAt: now,
		Box: store.Box{X: 10, Y: 10, W: 80, H: 100}, Detector: "yunet", Score: 0.9,
		Notice: v.Notice, JTI: v.JTI,
	}
	expires := map[string]any{}
	for _, p := range v.Purposes {
		exp := now.Add(time.Duration(b.Settings.Purposes[p]))
		rec.Purposes = append(rec.Purposes, store.Tag{Purpose: p, Expires: exp})
		expires[p] = exp.Format(time.RFC3339)
		heap.Push(&b.expiry, exp)
	}
	saved := v.event(store.EventCaptureSaved)
	saved.Record = rec.ID
	saved.Detail = map[string]any{"detector": "yunet", "score": 0.9, "box": []int{10, 10, 80, 100}, "expires": expires}
	closed := v.event(store.EventWindowClosed)
	closed.Reason, closed.Record = "saved", rec.ID
	b.Update(func(tx *store.Tx) error {
		if err := tx.PutRecord(rec, b.Image); err != nil {
			return err
		}
		if err := tx.Append(saved); err != nil {
			return err
		}
		if !close {
			return nil
		}
		return tx.Append(closed)
	})
	v.Record = rec.ID
}

// Skip ends the visitor's window without a face.
func (b *Box) Skip(v *Visitor, reason string) {
	b.TB.Helper()
	skipped, closed := v.event(store.EventCaptureSkipped), v.event(store.EventWindowClosed)
	skipped.Reason, closed.Reason = reason, reason
	b.Append(skipped, closed)
}

// Visit is a visitor who agrees, stands in front of the camera for a few
// seconds and is saved.
func (b *Box) Visit(opts ...ConsentOption) *Visitor {
	b.TB.Helper()
	var v *Visitor
	b.Batch(func() {
		v = b.Accept(opts...)
		b.Clock.Set(b.Now().Add(time.Second))
		b.Open(v)
		b.Clock.Set(b.Now().Add(3 * time.Second))
		b.Save(v)
	})
	return v
}

// Decline logs a visitor's refusal at the kiosk.
func (b *Box) Decline() {
	b.TB.Helper()
	b.Append(&store.Event{Type: store.EventConsentDeclined, Actor: IssuerKID, Detail: map[string]any{"notice": b.Notice.Hash()}})
}

// Read reads a record's image for a purpose, as the operator's endpoint
// does, and logs record.accessed in the same transaction.
func (b *Box) Read(v *Visitor, purpose string) {
	b.TB.Helper()
	b.Update(func(tx *store.Tx) error {
		if _, err := tx.Image(v.Record, purpose); err != nil {
			return err
		}
		return tx.Append(&store.Event{Type: store.EventRecordAccessed, Record: v.Record, Visit: v.Visit, Subject: v.Subject,
			Purposes: []string{purpose}, Actor: "operator"})
	})
}

// RevokeCommand signs a revoke command of a subject or (when subject is
// empty) a visit.
func (b *Box) RevokeCommand(subject, visit, reason string) (consent.Revoke, string) {
	b.TB.Helper()
	b.n++
	now := b.Now().Truncate(time.Second)
	r := consent.Revoke{Issuer: "front-desk", KeyID: OperatorKID, JTI: fmt.Sprintf("req-%d", b.n), Reason: reason,
		Subject: subject, Visit: visit, Audience: consent.Audience(Site, ""), IssuedAt: now, Expires: now.Add(5 * time.Minute)}
	tok, err := consent.SignRevoke(OperatorKey, OperatorKID, r)
	if err != nil {
		b.TB.Fatal(err)
	}
	return r, tok
}

// Revoke carries out a revoke of a subject or a visit as the agent does: in
// one transaction, the records erased, consent.revoked, and the command
// kept as evidence; then a checkpoint. It returns the seq of
// consent.revoked.
func (b *Box) Revoke(subject, visit, reason string) uint64 {
	b.TB.Helper()
	r, tok := b.RevokeCommand(subject, visit, reason)
	return b.RevokeWith(r, tok, func(tx *store.Tx) ([]*store.Record, error) {
		return tx.Erase(store.Selector{Subject: subject, Visit: visit})
	})
}

// RevokeWith is Revoke with the erasure and the command given.
func (b *Box) RevokeWith(r consent.Revoke, token string, erase func(tx *store.Tx) ([]*store.Record, error)) uint64 {
	b.TB.Helper()
	revoked := &store.Event{Type: store.EventConsentRevoked, Subject: r.Subject, Visit: r.Visit, Reason: r.Reason, Actor: r.KeyID}
	b.Update(func(tx *store.Tx) error {
		erased, err := erase(tx)
		if err != nil {
			return err
		}
		for _, rec := range erased {
			ps := make([]string, len(rec.Purposes))
			for i, t := range rec.Purposes {
				ps[i] = t.Purpose
			}
			err := tx.Append(&store.Event{Type: store.EventRecordErased, Record: rec.ID, Visit: rec.Visit, Subject: rec.Subject,
				Purposes: ps, Reason: r.Reason, Actor: r.KeyID})
			if err != nil {
				return err
			}
		}
		revoked.Detail = map[string]any{"request": r.JTI, "erased": len(erased), "token_sha256": SHA256(token)}
		if err := tx.Append(revoked); err != nil {
			return err
		}
		return tx.PutEvidence(store.Evidence{Seq: revoked.Seq, Kind: store.EvidenceRevoke, JTI: r.JTI, Token: token,
			Expires: revoked.Time.Add(b.evidenceRetention())})
	})
	heap.Push(&b.expiry, revoked.Time.Add(b.evidenceRetention()))
	b.Checkpoint()
	return revoked.Seq
}

// Withdraw carries out a visitor's withdrawal at the kiosk, as the agent
// does: the subject's records erased and consent.revoked by the visitor, in
// one transaction, with no command to keep; then a checkpoint.
func (b *Box) Withdraw(subject string) uint64 {
	b.TB.Helper()
	b.n++
	revoked := &store.Event{Type: store.EventConsentRevoked, Subject: subject, Reason: "withdrawn by the visitor at the kiosk",
		Actor: audit.ActorVisitor}
	b.Update(func(tx *store.Tx) error {
		erased, err := tx.Erase(store.Selector{Subject: subject})
		if err != nil {
			return err
		}
		for _, rec := range erased {
			err := tx.Append(&store.Event{Type: store.EventRecordErased, Record: rec.ID, Visit: rec.Visit, Subject: rec.Subject,
				Purposes: []string{rec.Purposes[0].Purpose}, Reason: revoked.Reason, Actor: revoked.Actor})
			if err != nil {
				return err
			}
		}
		revoked.Detail = map[string]any{"request": fmt.Sprintf("withdrawal-%d", b.n), "erased": len(erased)}
		return tx.Append(revoked)
	})
	b.Checkpoint()
	return revoked.Seq
}

// Contents returns what a bundle of the box holds now.
func (b *Box) Contents() *audit.Contents {
	b.TB.Helper()
	evs, err := b.DB.Events(0, 1<<31)
	if err != nil {
		b.TB.Fatal(err)
	}
	var log bytes.Buffer
	for _, e := range evs {
		log.Write(e)
		log.WriteByte('\n')
	}
	cp, err := b.DB.LatestCheckpoint()
	if err != nil {
		b.TB.Fatal(err)
	}
	evidence, err := b.DB.Evidence(0, 1<<31)
	if err != nil {
		b.TB.Fatal(err)
	}
	notices, err := b.DB.Notices()
	if err != nil {
		b.TB.Fatal(err)
	}
	settings := b.Settings
	return &audit.Contents{
		Site: Site, Camera: Camera, Source: "audittest", Made: b.Now(), Tolerance: audit.DefaultTolerance,
		Settings: &settings, Log: log.Bytes(), Checkpoint: cp, Evidence: evidence, Notices: notices,
		Device:    DeviceKey.Public().(ed25519.PublicKey),
		Issuers:   map[string]ed25519.PublicKey{IssuerKID: IssuerKey.Public().(ed25519.PublicKey)},
		Operators: map[string]ed25519.PublicKey{OperatorKID: OperatorKey.Public().(ed25519.PublicKey)},
	}
}

// WriteBundle writes the box's bundle into a new temporary directory and
// returns its path.
func (b *Box) WriteBundle() string {
	b.TB.Helper()
	dir := filepath.Join(b.TB.TempDir(), "bundle")
	if _, err := audit.Write(dir, b.Contents()); err != nil {
		b.TB.Fatal(err)
	}
	return dir
}

// PeriodBox is a box whose log has known counts in the period from 3 to 5
// March 2026 (UTC), and events before and after it that the period must
// not count: the case of `consentcam report processing` (docs/PROCESSING.md
// shows its record). In the period: 6 visitors asked, 4 agreed (3 to
// channel-attribution, 2 to entry-security; 1 a minor with a guardian), 2
// declined (1 a minor with no guardian); 3 faces saved, 1 consent skipped
// (multiple-faces); 1 record erased by a revoke, 1 at the end of its
// retention; 1 image read, 1 refused. At its end 3 records of 3 people are
// kept.
func PeriodBox(tb testing.TB) (b *Box, from, to time.Time) {
	tb.Helper()
	b = NewBox(tb)
	b.Notice.Purposes = []consent.Purpose{
		consent.NewPurpose(PurposeChannel, consent.Text{consent.LangChinese: "了解您是通过哪个销售渠道来的", consent.LangEnglish: "Tell which sales channel brought you"}, 720*time.Hour),
		consent.NewPurpose(PurposeSecurity, consent.Text{consent.LangChinese: "保障入口安全", consent.LangEnglish: "Keep the entrance safe"}, 24*time.Hour),
	}
	b.Notice.Compliance = &consent.Compliance{PIAReference: "PIA-2025-014", PIADate: "2025-05-20",
		DPOContact: consent.Text{consent.LangChinese: "个人信息保护负责人 dpo@example.com", consent.LangEnglish: "Data protection officer, dpo@example.com"}}
	from, to = time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)

	// Before the period (from 2 March, 08:00).
	b.Start()
	v1 := b.Visit()
	v2 := b.Visit()
	b.Decline()
	b.Advance(25 * time.Hour) // 3 March, 09:00

	// In the period.
	b.Visit(Purposes(PurposeChannel, PurposeSecurity)) // its entry-security tag expires, the record stays
	b.Visit(Minor(true))
	b.Decline()
	b.Append(&store.Event{Type: store.EventConsentDeclined, Actor: IssuerKID, Reason: string(consent.ReasonGuardianRequired),
		Detail: map[string]any{"notice": b.Notice.Hash()}})
	nf := b.Accept()
	b.Open(nf)
	b.Skip(nf, "multiple-faces")
	b.Visit(Purposes(PurposeSecurity)) // erased at the end of its retention, in the period
	b.Read(v1, PurposeChannel)
	b.Append(&store.Event{Type: store.EventAccessRefused, Record: v1.Record, Visit: v1.Visit, Subject: v1.Subject,
		Purposes: []string{PurposeSecurity}, Reason: "purpose-not-allowed", Actor: "operator"})
	b.Revoke(v2.Subject, "", "visitor withdrew")
	b.Advance(26 * time.Hour) // 4 March, 11:00

	// After the period.
	b.Advance(14 * time.Hour) // 5 March, 01:00
	b.Visit()
	b.Decline()
	b.Stop()
	return b, from, to
}
