package fleet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// Reasons a payload is refused (the rejected_total metric, the rejects
// table).
const (
	reasonMalformed    = "malformed"
	reasonUnknownBox   = "unknown-box"
	reasonBadSignature = "bad-signature"
	reasonConflict     = "conflicting-duplicate"
	reasonForkedRoot   = "forked-checkpoint"
)

// recentLeaves is how many of the last verified leaves of a box are kept in
// memory to tell a duplicate from a conflicting one without reading
// PostgreSQL.
const recentLeaves = 256

// maxAhead bounds how far beyond the verified log an event may be: a box
// cannot make the monitor hold more than this many unverified events.
const maxAhead = 1 << 20

// maxPending bounds the signed checkpoints waiting for their events.
const maxPending = 1024

// recentRoots is how many roots of verified checkpoints are kept in memory.
const recentRoots = 32

// worker handles the messages of its boxes, one at a time in arrival
// order, and writes what they change in batches.
type worker struct {
	m     *Monitor
	id    int
	in    chan *message
	boxes map[string]*box
	byID  map[int32]*box
	// unknown remembers, for a while, the boxes without a key.
	unknown  map[string]time.Time
	out      batch
	verified []verifiedRange
}

type verifiedRange struct {
	b        *box
	from, to uint64
}

func newWorker(m *Monitor, id int) *worker {
	return &worker{m: m, id: id, in: make(chan *message, 4096), boxes: map[string]*box{}, byID: map[int32]*box{}, unknown: map[string]time.Time{}}
}

// box is the monitor's state of one box; only its worker touches it.
type box struct {
	id           int32
	site, camera string
	origin       string
	verifier     note.Verifier

	// Events [0, verified) are verified; rng is their compact range.
	verified uint64
	rng      *compact.Range
	// held are the events received with seq >= verified; contig is the
	// first seq from verified on that is not held; seen is 1 + the largest
	// seq received.
	held   map[uint64]*heldEvent
	contig uint64
	seen   uint64
	// pending are signed checkpoints beyond contig, by size.
	pending []*checkpointNote
	roots   map[uint64][]byte
	recent  [recentLeaves]recentLeaf

	checkpoint     []byte // the latest verified note, as received
	checkpointSize uint64
	checkpointAt   time.Time // when the last valid checkpoint arrived
	interval       time.Duration
	available      string
	availableAt    time.Time
	lastFork       time.Time
	gapSince       time.Time

	replay    *audit.Replay
	replayErr error
}

type heldEvent struct {
	leaf    []byte
	ev      *store.Event
	arrived time.Time
}

type recentLeaf struct {
	seq  uint64
	leaf []byte
}

// checkpointNote is a checkpoint whose signature verified.
type checkpointNote struct {
	note    []byte
	size    uint64
	root    []byte
	topic   bool // from …/checkpoint (else from a checkpoint event)
	arrived time.Time
	sha     string
}

func (w *worker) run() {
	tick := time.NewTicker(w.m.Tick)
	defer tick.Stop()
	var msgs []*message
	for {
		select {
		case <-w.m.ctx.Done():
			return
		case <-tick.C:
			w.tick()
		case msg := <-w.in:
			msgs = append(msgs[:0], msg)
		drain:
			for len(msgs) < batchMax {
				select {
				case msg := <-w.in:
					msgs = append(msgs, msg)
				default:
					break drain
				}
			}
			for _, msg := range msgs {
				w.handle(msg)
			}
		}
		if err := w.commit(); err != nil {
			return // stopped: the messages stay unacknowledged
		}
		for _, msg := range msgs {
			msg.msg.Ack()
		}
		msgs = msgs[:0]
	}
}

// commit writes the batch, trying again until PostgreSQL takes it, then
// publishes what changed.
func (w *worker) commit() error {
	if !w.out.empty() {
		for attempt := 0; ; attempt++ {
			start := time.Now()
			err := w.out.commit(w.m.ctx, w.m.pool)
			if err == nil {
				w.m.metrics.commitTime.Observe(time.Since(start).Seconds())
				break
			}
			if w.m.ctx.Err() != nil {
				return errStopped
			}
			w.m.metrics.commitFails.Inc()
			w.m.Logger.Error("write to postgres; trying again", "error", err, "attempt", attempt+1)
			select {
			case <-time.After(min(time.Duration(1<<min(attempt, 5))*100*time.Millisecond, 5*time.Second)):
			case <-w.m.ctx.Done():
				return errStopped
			}
		}
	}
	for id := range w.out.updates {
		if b := w.byID[id]; b != nil {
			w.m.publish(b)
		}
	}
	w.out.reset()
	for _, v := range w.verified {
		w.m.publish(v.b)
		if w.m.OnVerified != nil {
			w.m.OnVerified(v.b.site, v.b.camera, v.from, v.to)
		}
	}
	w.verified = w.verified[:0]
	return nil
}

func payloadSHA(p []byte) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

// reject records a refused payload: a row, a metric, and an alarm of kind
// (none when kind is "").
func (w *worker) reject(msg *message, reason, kind, key, format string, args ...any) {
	sha := payloadSHA(msg.payload)
	now := w.m.Now()
	w.m.metrics.rejected.WithLabelValues(reason).Inc()
	w.out.rejects = append(w.out.rejects, rejectRow{site: msg.site, camera: msg.camera, topic: msg.topic, reason: reason,
		sha: sha, size: len(msg.payload), at: now})
	if kind != "" {
		w.m.alarms.raise(&w.out, now, msg.site, msg.camera, kind, key, sha, format, args...)
	}
}

func (w *worker) handle(msg *message) {
	w.m.metrics.received.WithLabelValues(msg.kind).Inc()
	if msg.kind == "bridge" {
		w.bridge(msg)
		return
	}
	if !namePattern.MatchString(msg.site) || !namePattern.MatchString(msg.camera) || !slices.Contains(topicKinds, msg.kind) {
		w.m.metrics.rejected.WithLabelValues(reasonMalformed).Inc()
		w.m.Logger.Warn("message on a topic that names no box", "topic", msg.topic, "payload_sha256", payloadSHA(msg.payload))
		return
	}
	b := w.box(msg)
	if b == nil {
		return
	}
	switch msg.kind {
	case "audit":
		w.event(b, msg)
	case "checkpoint":
		w.checkpointMessage(b, msg)
	case "available":
		w.available(b, msg)
	case "notice":
		w.notice(b, msg)
	}
}

// box returns the state of the message's box, creating it for a box with
// a key; for one without, it refuses the message and returns nil.
func (w *worker) box(msg *message) *box {
	k := msg.site + "/" + msg.camera
	if b := w.boxes[k]; b != nil {
		return b
	}
	now := w.m.Now()
	if t, ok := w.unknown[k]; !ok || now.Sub(t) > 10*time.Second {
		pub, err := w.m.deviceKey(msg.site, msg.camera)
		if err == nil {
			b, err := w.newBox(msg.site, msg.camera, pub)
			if err == nil {
				delete(w.unknown, k)
				w.add(b)
				return b
			}
			w.m.Logger.Error("add box", "site", msg.site, "camera", msg.camera, "error", err)
		}
		w.unknown[k] = now
	}
	w.reject(msg, reasonUnknownBox, AlarmUnknownBox, "", "%s from a box with no device key in %s/%s/%s.pub",
		msg.kind, w.m.Config.Boxes.KeysDir, msg.site, msg.camera)
	return nil
}

func (w *worker) newBox(site, camera string, pub ed25519.PublicKey) (*box, error) {
	id, err := insertBox(w.m.ctx, w.m.pool, site, camera)
	if err != nil {
		return nil, err
	}
	return w.initBox(boxRow{id: id, site: site, camera: camera}, pub)
}

func (w *worker) initBox(r boxRow, pub ed25519.PublicKey) (*box, error) {
	origin := store.Origin(r.site, r.camera)
	v, err := store.NewCheckpointVerifier(origin, pub)
	if err != nil {
		return nil, err
	}
	b := &box{id: r.id, site: r.site, camera: r.camera, origin: origin, verifier: v,
		verified: r.verified, contig: r.verified, seen: r.verified, held: map[uint64]*heldEvent{}, roots: map[uint64][]byte{},
		checkpoint: r.checkpoint, checkpointSize: r.checkpointSize, interval: w.m.Config.Boxes.CheckpointInterval,
		available: r.available, availableAt: r.availableAt.UTC(),
		replay: audit.NewReplay(audit.ReplayOptions{Site: r.site, Camera: r.camera, Tolerance: w.m.Config.Boxes.Tolerance})}
	if r.checkpoint != nil {
		b.checkpointAt = r.checkpointAt.UTC()
	}
	hashes := make([][]byte, 0, len(r.rangeHashes)/32)
	for h := range slices.Chunk(r.rangeHashes, 32) {
		hashes = append(hashes, h)
	}
	if b.rng, err = rangeFactory.NewRange(0, r.verified, hashes); err != nil {
		return nil, fmt.Errorf("compact range of %d events: %w", r.verified, err)
	}
	return b, nil
}

// restore rebuilds a box from PostgreSQL at start: its held events, its
// notices and its verified log through the rules.
func (w *worker) restore(ctx context.Context, r boxRow, pub ed25519.PublicKey) (*box, error) {
	b, err := w.initBox(r, pub)
	if err != nil {
		return nil, err
	}
	rows, err := w.m.pool.Query(ctx, "SELECT body FROM notices WHERE box = $1", b.id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			rows.Close()
			return nil, err
		}
		b.replay.Notice(body)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var discard batch
	err = eventsFrom(ctx, w.m.pool, b.id, 0, 1<<62, func(seq uint64, body []byte) error {
		ev, err := parseEvent(body)
		if err != nil {
			return fmt.Errorf("stored event %d: %w", seq, err)
		}
		if seq < b.verified {
			w.judge(&discard, b, ev, true)
			b.remember(seq, hasher.HashLeaf(body))
			return nil
		}
		b.hold(seq, &heldEvent{leaf: hasher.HashLeaf(body), ev: ev, arrived: w.m.Now()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (w *worker) add(b *box) {
	w.boxes[b.site+"/"+b.camera] = b
	w.byID[b.id] = b
	w.m.publish(b)
}

func (b *box) remember(seq uint64, leaf []byte) {
	b.recent[seq%recentLeaves] = recentLeaf{seq: seq, leaf: leaf}
}

func (b *box) hold(seq uint64, h *heldEvent) {
	b.held[seq] = h
	b.seen = max(b.seen, seq+1)
	for b.held[b.contig] != nil {
		b.contig++
	}
}

// parseEvent decodes an event and checks that it is exactly as the agent
// writes it (store.Event's fields, in order, nothing else), of a known type,
// in UTC.
func parseEvent(p []byte) (*store.Event, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var ev store.Event
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("not an event: %v", err)
	}
	switch {
	case !slices.Contains(eventTypes, ev.Type):
		return nil, fmt.Errorf("unknown event type %q", ev.Type)
	case !namePattern.MatchString(ev.Site) || !namePattern.MatchString(ev.Camera):
		return nil, fmt.Errorf("bad site/camera %q/%q", ev.Site, ev.Camera)
	case ev.Time.IsZero() || ev.Time.Location() != time.UTC:
		return nil, errors.New("no time in UTC")
	}
	canonical, err := json.Marshal(&ev)
	if err != nil || !bytes.Equal(canonical, p) {
		return nil, errors.New("not in the form consentcam writes (fields, order, escaping or spacing differ)")
	}
	return &ev, nil
}

// eventTypes are the event types of docs/SPEC.md ("Audit log").
var eventTypes = []string{
	store.EventAgentStarted, store.EventAgentStopped, store.EventNoticePublished,
	store.EventConsentAccepted, store.EventConsentRejected, store.EventConsentDeclined,
	store.EventWindowOpened, store.EventWindowClosed, store.EventCaptureSaved, store.EventCaptureSkipped,
	store.EventRecordAccessed, store.EventRecordExpired, store.EventRecordErased,
	store.EventConsentRevoked, store.EventRevokeRejected, store.EventStoreCompacted,
	store.EventSourceFailed, store.EventSourceRecovered, store.EventCheckpoint,
	store.EventWitnessFailed, store.EventWitnessRecovered, store.EventAccessRefused, store.EventEvidenceExpired,
}

// event takes one …/audit message.
func (w *worker) event(b *box, msg *message) {
	ev, err := parseEvent(msg.payload)
	if err == nil && (ev.Site != b.site || ev.Camera != b.camera) {
		err = fmt.Errorf("an event of %s/%s on the topic of %s/%s", ev.Site, ev.Camera, b.site, b.camera)
	}
	if err != nil {
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "…/audit: %v", err)
		return
	}
	if ev.Seq >= b.verified+maxAhead {
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "…/audit: seq %d is more than %d beyond the %d events verified", ev.Seq, maxAhead, b.verified)
		return
	}
	leaf := hasher.HashLeaf(msg.payload)
	if ev.Seq < b.verified {
		w.duplicate(b, msg, ev.Seq, leaf)
		return
	}
	if h := b.held[ev.Seq]; h != nil {
		if !bytes.Equal(h.leaf, leaf) {
			w.conflict(b, msg, ev.Seq)
		}
		return
	}
	b.hold(ev.Seq, &heldEvent{leaf: leaf, ev: ev, arrived: msg.arrived})
	w.out.event(b.id, ev.Seq, msg.payload)
	if ev.Type == store.EventCheckpoint {
		if n, _ := ev.Detail["note"].(string); n != "" {
			w.checkpoint(b, msg, []byte(n), false)
		}
	}
	w.advance(b)
}

// duplicate compares an event received again with the verified one.
func (w *worker) duplicate(b *box, msg *message, seq uint64, leaf []byte) {
	if r := b.recent[seq%recentLeaves]; r.leaf != nil && r.seq == seq {
		if !bytes.Equal(r.leaf, leaf) {
			w.conflict(b, msg, seq)
		}
		return
	}
	body, err := eventBody(w.m.ctx, w.m.pool, b.id, seq)
	if err != nil {
		w.m.Logger.Error("read a mirrored event to compare a duplicate", "site", b.site, "camera", b.camera, "seq", seq, "error", err)
		return
	}
	if body == nil || !bytes.Equal(hasher.HashLeaf(body), leaf) {
		w.conflict(b, msg, seq)
	}
}

// conflict is a seq received again with other bytes: the box forked.
func (w *worker) conflict(b *box, msg *message, seq uint64) {
	b.lastFork = w.m.Now()
	w.reject(msg, reasonConflict, AlarmFork, "", "seq %d published again with other bytes: the box's log forked (a restored state file, or a second box with its key)", seq)
}

// checkpointMessage takes one …/checkpoint message.
func (w *worker) checkpointMessage(b *box, msg *message) {
	w.checkpoint(b, msg, msg.payload, true)
	w.advance(b)
}

// checkpoint verifies a checkpoint note's signature and compares its root
// with the mirror's at its size, now or once the events it covers arrive.
func (w *worker) checkpoint(b *box, msg *message, raw []byte, topic bool) {
	n, err := note.Open(raw, note.VerifierList(b.verifier))
	if err != nil {
		w.reject(msg, reasonBadSignature, AlarmBadSignature, "", "checkpoint of size %s not signed by the box's device key: %v", noteSize(raw), err)
		return
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	var size uint64
	var root []byte
	if len(lines) >= 3 {
		size, err = strconv.ParseUint(lines[1], 10, 64)
		if err == nil {
			root, err = base64.StdEncoding.DecodeString(lines[2])
		}
	}
	if len(lines) < 3 || lines[0] != b.origin || err != nil || len(root) != sha256.Size {
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "a signed note that is not a checkpoint of %s", b.origin)
		return
	}
	now := w.m.Now()
	b.checkpointAt = now
	w.m.metrics.checkpoint.WithLabelValues(b.site, b.camera).Set(float64(now.UnixMilli()) / 1000)
	w.m.alarms.clear(&w.out, now, b.site, b.camera, AlarmSilence, "")
	c := &checkpointNote{note: raw, size: size, root: root, topic: topic, arrived: msg.arrived, sha: payloadSHA(raw)}
	if size > b.verified {
		for _, p := range b.pending {
			if p.size == size && !bytes.Equal(p.root, root) {
				w.forkedRoot(b, msg, c, p.root)
				return
			}
		}
		b.pending = append(b.pending, c)
		slices.SortStableFunc(b.pending, func(x, y *checkpointNote) int { return cmpUint(x.size, y.size) })
		if len(b.pending) > maxPending {
			b.pending = b.pending[:maxPending] // the smallest are verified first
		}
		return
	}
	want, err := w.rootAt(b, size)
	if err != nil {
		w.m.Logger.Error("root of the mirror", "site", b.site, "camera", b.camera, "size", size, "error", err)
		return
	}
	if !bytes.Equal(want, root) {
		w.forkedRoot(b, msg, c, want)
		return
	}
	w.served(b, c)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// noteSize is the size line of a note, for messages about one that does
// not verify.
func noteSize(raw []byte) string {
	lines := strings.SplitN(string(raw), "\n", 3)
	if len(lines) < 2 || len(lines[1]) > 20 {
		return "?"
	}
	return strconv.Quote(lines[1])
}

func (w *worker) forkedRoot(b *box, msg *message, c *checkpointNote, want []byte) {
	b.lastFork = w.m.Now()
	sha := c.sha
	w.m.metrics.rejected.WithLabelValues(reasonForkedRoot).Inc()
	w.out.rejects = append(w.out.rejects, rejectRow{site: b.site, camera: b.camera, topic: msg.topic, reason: reasonForkedRoot,
		sha: sha, size: len(c.note), at: b.lastFork})
	w.m.alarms.raise(&w.out, b.lastFork, b.site, b.camera, AlarmFork, "", sha,
		"signed checkpoint of size %d has root %s; the mirror's events hash to %s: the box's log forked",
		c.size, base64.StdEncoding.EncodeToString(c.root), base64.StdEncoding.EncodeToString(want))
}

// rootAt is the root of the mirror's first size events, size <= verified.
func (w *worker) rootAt(b *box, size uint64) ([]byte, error) {
	if size == b.verified {
		return rootOf(b.rng)
	}
	if r := b.roots[size]; r != nil {
		return r, nil
	}
	r, err := checkpointRoot(w.m.ctx, w.m.pool, b.id, size)
	if err != nil || r != nil {
		return r, err
	}
	// A size no checkpoint verified before: hash the mirror's events.
	w.m.Logger.Info("hashing the mirror for a checkpoint of a size not seen before", "site", b.site, "camera", b.camera, "size", size)
	rng := rangeFactory.NewEmptyRange(0)
	err = eventsFrom(w.m.ctx, w.m.pool, b.id, 0, size, func(_ uint64, body []byte) error {
		return rng.Append(hasher.HashLeaf(body), nil)
	})
	if err != nil {
		return nil, err
	}
	if rng.End() != size {
		return nil, fmt.Errorf("the mirror has %d events below %d", rng.End(), size)
	}
	return rootOf(rng)
}

func cloneRange(r *compact.Range) (*compact.Range, error) {
	return rangeFactory.NewRange(r.Begin(), r.End(), slices.Clone(r.Hashes()))
}

func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// served makes a verified checkpoint the one served, when it is the newest.
func (w *worker) served(b *box, c *checkpointNote) {
	if c.size < b.checkpointSize || (c.size == b.checkpointSize && !c.topic && b.checkpoint != nil) || c.size > b.verified {
		return
	}
	b.checkpoint, b.checkpointSize = c.note, c.size
	u := w.out.update(b.id)
	u.checkpoint, u.checkpointSize, u.checkpointAt = c.note, c.size, c.arrived
}

// advance verifies the pending checkpoints that the events received now
// cover, in order of size.
func (w *worker) advance(b *box) {
	for len(b.pending) > 0 && b.pending[0].size <= b.contig {
		c := b.pending[0]
		b.pending = b.pending[1:]
		if c.size <= b.verified {
			want, err := w.rootAt(b, c.size)
			if err == nil && !bytes.Equal(want, c.root) {
				w.forkedRoot(b, &message{topic: "checkpoint"}, c, want)
			} else if err == nil {
				w.served(b, c)
			}
			continue
		}
		rng, err := cloneRange(b.rng)
		if err != nil {
			w.m.Logger.Error("compact range", "error", err)
			return
		}
		for seq := b.verified; seq < c.size; seq++ {
			if err := rng.Append(b.held[seq].leaf, nil); err != nil {
				w.m.Logger.Error("compact range", "error", err)
				return
			}
		}
		root, err := rootOf(rng)
		if err != nil {
			w.m.Logger.Error("compact range", "error", err)
			return
		}
		if !bytes.Equal(root, c.root) {
			w.forkedRoot(b, &message{topic: b.topicOf(c)}, c, root)
			continue
		}
		w.verify(b, c, rng, root)
	}
}

func (b *box) topicOf(c *checkpointNote) string {
	if c.topic {
		return "checkpoint"
	}
	return "audit"
}

// verify moves the events a checkpoint covers from held to verified: they
// are judged by the rules, and served.
func (w *worker) verify(b *box, c *checkpointNote, rng *compact.Range, root []byte) {
	now := w.m.Now()
	from := b.verified
	for seq := from; seq < c.size; seq++ {
		h := b.held[seq]
		delete(b.held, seq)
		b.remember(seq, h.leaf)
		w.m.metrics.delay.Observe(now.Sub(h.arrived).Seconds())
		w.judge(&w.out, b, h.ev, false)
	}
	w.m.metrics.verified.Add(float64(c.size - from))
	b.rng, b.verified = rng, c.size
	if len(b.roots) >= recentRoots {
		clear(b.roots)
	}
	b.roots[c.size] = root
	u := w.out.update(b.id)
	v := c.size
	u.verified = &v
	var hashes []byte
	for _, h := range rng.Hashes() {
		hashes = append(hashes, h...)
	}
	u.rangeHashes = hashes
	w.out.cps = append(w.out.cps, checkpointRow{box: b.id, size: c.size, root: root, note: c.note, at: c.arrived})
	w.served(b, c)
	w.m.metrics.size.WithLabelValues(b.site, b.camera).Set(float64(c.size))
	if c.arrived.After(b.lastFork) {
		w.m.alarms.clear(&w.out, now, b.site, b.camera, AlarmFork, "")
	}
	w.verified = append(w.verified, verifiedRange{b, from, c.size})
}

// judge runs a verified event through the rules and the box's own alarms
// (its checkpoint interval, its witnesses). quiet is for the replay at
// start: no alarm raised again.
func (w *worker) judge(out *batch, b *box, ev *store.Event, quiet bool) {
	now := w.m.Now()
	switch ev.Type {
	case store.EventAgentStarted:
		if s, err := audit.StartedSettings(ev); err == nil && s != nil && s.CheckpointInterval > 0 {
			b.interval = time.Duration(s.CheckpointInterval)
		}
	case store.EventWitnessFailed:
		name, _ := ev.Detail["witness"].(string)
		msg, _ := ev.Detail["error"].(string)
		if !quiet {
			w.m.alarms.raise(out, now, b.site, b.camera, AlarmWitness, name, "", "seq %d: witness %s failed (%s): %s", ev.Seq, name, ev.Reason, msg)
		}
	case store.EventWitnessRecovered:
		name, _ := ev.Detail["witness"].(string)
		if !quiet {
			w.m.alarms.clear(out, now, b.site, b.camera, AlarmWitness, name)
		}
	}
	if b.replayErr != nil {
		return
	}
	findings, err := b.replay.Add(ev)
	if err != nil {
		b.replayErr = err
		if !quiet {
			w.m.alarms.raise(out, now, b.site, b.camera, AlarmRule, "log", "", "the rules cannot judge the log from seq %d on: %v", ev.Seq, err)
		}
		return
	}
	for _, f := range findings {
		w.m.metrics.violations.WithLabelValues(b.site, b.camera, strconv.Itoa(f.Rule)).Inc()
		if !quiet {
			w.m.alarms.raise(out, now, b.site, b.camera, AlarmRule, "rule "+strconv.Itoa(f.Rule), "", "%s", f.String())
		}
	}
}

// available takes one …/available message.
func (w *worker) available(b *box, msg *message) {
	s := string(msg.payload)
	now := w.m.Now()
	switch s {
	case "online", "stopped":
		w.m.alarms.clear(&w.out, now, b.site, b.camera, AlarmOffline, "")
	case "offline":
		w.m.alarms.raise(&w.out, now, b.site, b.camera, AlarmOffline, "", "", "the broker published the box's last will: it went away without stopping")
	default:
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "…/available: %q is not online, stopped or offline", truncate(s, 32))
		return
	}
	if s == "online" && b.available != "online" {
		b.checkpointAt = now // silence counts from its return
	}
	b.available, b.availableAt = s, now
	online := 0.0
	if s == "online" {
		online = 1
	}
	w.m.metrics.online.WithLabelValues(b.site, b.camera).Set(online)
	u := w.out.update(b.id)
	u.available, u.availableAt = s, now
}

// notice takes one …/notice message.
func (w *worker) notice(b *box, msg *message) {
	hash, err := b.replay.Notice(msg.payload)
	if err != nil {
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "…/notice: %v", err)
		return
	}
	w.out.notices = append(w.out.notices, noticeRow{box: b.id, hash: hash, body: msg.payload})
}

// bridge takes a site broker's bridge notification: 1 connected, 0 not.
func (w *worker) bridge(msg *message) {
	if !namePattern.MatchString(msg.site) {
		return
	}
	now := w.m.Now()
	switch string(msg.payload) {
	case "1":
		w.m.alarms.clear(&w.out, now, msg.site, "", AlarmSiteOffline, "")
	case "0":
		w.m.alarms.raise(&w.out, now, msg.site, "", AlarmSiteOffline, "", "", "the site broker's bridge to the central broker is down")
	default:
		w.reject(msg, reasonMalformed, AlarmBadInput, "", "bridge notification %q is not 0 or 1", truncate(string(msg.payload), 32))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// tick raises and clears the alarms that time decides: gaps, silences and
// those held after their last occurrence.
func (w *worker) tick() {
	now := w.m.Now()
	cfg := w.m.Config.Alarms
	for _, b := range w.boxes {
		gap := b.seen > b.contig || (len(b.pending) > 0 && b.pending[len(b.pending)-1].size > b.contig)
		switch {
		case !gap:
			b.gapSince = time.Time{}
			w.m.alarms.clear(&w.out, now, b.site, b.camera, AlarmGap, "")
		case b.gapSince.IsZero():
			b.gapSince = now
		case now.Sub(b.gapSince) > cfg.GapAfter:
			if _, raised := w.m.alarms.has(b.site, b.camera, AlarmGap, ""); !raised {
				upto := b.seen
				if len(b.pending) > 0 {
					upto = max(upto, b.pending[len(b.pending)-1].size)
				}
				w.m.alarms.raise(&w.out, now, b.site, b.camera, AlarmGap, "", "",
					"seq %d missing since %s, while events or a checkpoint up to seq %d arrived", b.contig,
					b.gapSince.UTC().Format(time.RFC3339), upto-1)
			}
		}
		ref := b.checkpointAt
		if ref.IsZero() {
			ref = w.m.start
		}
		limit := time.Duration(cfg.SilenceIntervals) * b.interval
		if b.available != "offline" && b.available != "stopped" && now.Sub(ref) > limit {
			if _, raised := w.m.alarms.has(b.site, b.camera, AlarmSilence, ""); !raised {
				w.m.alarms.raise(&w.out, now, b.site, b.camera, AlarmSilence, "", "",
					"no checkpoint for %v (%d intervals of %v)", now.Sub(ref).Round(time.Second), cfg.SilenceIntervals, b.interval)
			}
		}
	}
	w.m.alarms.expire(&w.out, now, cfg.Hold, func(site, camera string) bool { return w.m.shardOf(site, camera) == w })
}
