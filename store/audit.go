package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// Event types (SPEC, "Audit log").
const (
	EventAgentStarted    = "agent.started"
	EventAgentStopped    = "agent.stopped"
	EventNoticePublished = "notice.published"
	EventConsentAccepted = "consent.accepted"
	EventConsentRejected = "consent.rejected"
	EventConsentDeclined = "consent.declined"
	EventWindowOpened    = "window.opened"
	EventWindowClosed    = "window.closed"
	EventCaptureSaved    = "capture.saved"
	EventCaptureSkipped  = "capture.skipped"
	EventRecordAccessed  = "record.accessed"
	EventRecordExpired   = "record.expired"
	EventRecordErased    = "record.erased"
	EventConsentRevoked  = "consent.revoked"
	EventRevokeRejected  = "revoke.rejected"
	EventStoreCompacted  = "store.compacted"
	EventSourceFailed    = "source.failed"
	EventSourceRecovered = "source.recovered"
	EventCheckpoint      = "checkpoint"
	// A witness stopped cosigning checkpoints, or cosigns again
	// (docs/WITNESS.md).
	EventWitnessFailed    = "witness.failed"
	EventWitnessRecovered = "witness.recovered"
	// EventAccessRefused: an image read refused because the record is not
	// (or no longer) tagged with the purpose named.
	EventAccessRefused = "access.refused"
	// EventEvidenceExpired: consent or revoke evidence deleted after consent.evidence_retention.
	EventEvidenceExpired = "evidence.expired"
	// EventFilingThreshold: the distinct subjects whose face data is stored
	// reached a filing threshold for the first time (the 2025
	// face-recognition measures, art. 15).
	EventFilingThreshold = "filing.threshold"
)

// The thresholds of filing.threshold: a processor storing the face data of
// 100,000 people files with the provincial cyberspace administration within
// 30 working days (measures art. 15); 80,000 is the time to prepare.
const (
	FilingWarnThreshold = 80_000
	FilingThreshold     = 100_000
)

// eventTypes lists every event type, in the order of SPEC.
var eventTypes = []string{
	EventAgentStarted, EventAgentStopped, EventNoticePublished,
	EventConsentAccepted, EventConsentRejected, EventConsentDeclined,
	EventWindowOpened, EventWindowClosed, EventCaptureSaved, EventCaptureSkipped,
	EventRecordAccessed, EventRecordExpired, EventRecordErased,
	EventConsentRevoked, EventRevokeRejected, EventStoreCompacted,
	EventSourceFailed, EventSourceRecovered, EventCheckpoint,
	EventWitnessFailed, EventWitnessRecovered, EventAccessRefused, EventEvidenceExpired,
	EventFilingThreshold,
}

// Event is one audit event. Its JSON, as Append stores it, is a leaf of the
// Merkle log and the payload published. It never holds an image, a token or
// key material.
type Event struct {
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	Site     string         `json:"site"`
	Camera   string         `json:"camera"`
	Visit    string         `json:"visit,omitempty"`
	Subject  string         `json:"subject,omitempty"`
	Record   string         `json:"record,omitempty"`
	Purposes []string       `json:"purposes,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Actor    string         `json:"actor,omitempty"`
	Detail   map[string]any `json:"detail,omitempty"`
}

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// Append sets ev's Seq (the next one, without gaps), Time (db.Now() in UTC,
// to the millisecond), Site and Camera, stores its JSON as leaf Seq of the
// Merkle log and queues it in the outbox. If the transaction does not
// commit, neither does the event (and ev's Seq means nothing).
func (tx *Tx) Append(ev *Event) error {
	if err := tx.append(ev); err != nil {
		return fmt.Errorf("append %s event: %w", ev.Type, err)
	}
	if tx.appended == nil {
		tx.tx.OnCommit(func() { tx.db.committed(tx.appended) })
	}
	tx.appended = append(tx.appended, *ev)
	return nil
}

// Appended returns the events appended in the transaction so far.
func (tx *Tx) Appended() []Event { return slices.Clone(tx.appended) }

func (tx *Tx) append(ev *Event) error {
	if !slices.Contains(eventTypes, ev.Type) {
		return errors.New("unknown type")
	}
	tree, err := tx.loadTree()
	if err != nil {
		return err
	}
	seq := tree.End()
	if ev.Type == EventCheckpoint {
		if err := checkCheckpointEvent(ev, tree); err != nil {
			return err
		}
	}
	ev.Seq = seq
	ev.Time = tx.db.Now().UTC().Truncate(time.Millisecond)
	ev.Site = tx.db.Site
	ev.Camera = tx.db.Camera
	leaf, err := eventJSON(ev)
	if err != nil {
		return err
	}
	if err := tx.putEvent(seq, leaf); err != nil {
		return err
	}
	nodes := tx.bucket(bucketNodes)
	var putErr error
	if err := tree.Append(hasher.HashLeaf(leaf), func(id compact.NodeID, hash []byte) {
		if putErr == nil {
			putErr = putNode(nodes, id, hash)
		}
	}); err != nil {
		return err
	}
	if putErr != nil {
		return putErr
	}
	meta := tx.bucket(bucketMeta)
	if err := meta.Put(metaSize, encodeUint64(tree.End())); err != nil {
		return err
	}
	if err := tx.bucket(bucketOutbox).Put(encodeUint64(seq), nil); err != nil {
		return err
	}
	return addUint64(meta, metaPending, 1)
}

// eventJSON returns ev's JSON in the one form VerifyLog accepts, that of an
// Event whose detail holds nothing but JSON values: encoding ev, decoding it
// and encoding it again sorts the keys of structs in the detail, as those of
// maps are, and leaves numbers as written.
func eventJSON(ev *Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	norm, err := decodeEvent(b)
	if err != nil {
		return nil, err
	}
	return json.Marshal(norm)
}

// decodeEvent decodes one event, numbers in the detail kept as written.
func decodeEvent(b []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return nil, err
	}
	if dec.InputOffset() != int64(len(b)) {
		return nil, errors.New("data after the event")
	}
	return &ev, nil
}

// loadTree returns the compact range of the whole log as it stands in the
// transaction, read from the stored nodes on first use. Once the transaction
// commits, the DB's size follows it.
func (tx *Tx) loadTree() (*compact.Range, error) {
	if tx.tree != nil {
		return tx.tree, nil
	}
	r, err := readRange(tx.tx, getUint64(tx.bucket(bucketMeta), metaSize))
	if err != nil {
		return nil, err
	}
	tx.tree = r
	if tx.tx.Writable() {
		tx.tx.OnCommit(func() { tx.db.advanceSize(r.End()) })
	}
	return r, nil
}

// advanceSize sets the committed size to n. Write transactions are
// serialised and their commit handlers run in commit order.
func (db *DB) advanceSize(n uint64) { db.size.Store(n) }

// rootOf returns the root hash of a compact range starting at 0.
func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// Size is the number of events committed: the Merkle tree size and the next
// seq.
func (db *DB) Size() uint64 { return db.size.Load() }

// Events returns the stored JSON of up to limit events with seq >= from, in
// seq order.
func (db *DB) Events(from uint64, limit int) ([][]byte, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("events: limit %d, want > 0", limit)
	}
	var evs [][]byte
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		size := getUint64(btx.Bucket(bucketMeta), metaSize)
		return newLogReader(btx).each(from, size, func(_ uint64, ev []byte) bool {
			evs = append(evs, slices.Clone(ev))
			return len(evs) < limit
		})
	})
	return evs, err
}

// readTree runs fn in a read transaction once it made sure the log has at
// least size events.
func (db *DB) readTree(size uint64, fn func(btx *bbolt.Tx) error) error {
	return db.boltTx(false, func(btx *bbolt.Tx) error {
		if n := getUint64(btx.Bucket(bucketMeta), metaSize); size > n {
			return fmt.Errorf("size %d, the log has %d events", size, n)
		}
		return fn(btx)
	})
}

// Root returns the root hash of the tree of the first size events.
func (db *DB) Root(size uint64) ([]byte, error) {
	var root []byte
	err := db.readTree(size, func(btx *bbolt.Tx) error {
		r, err := readRange(btx, size)
		if err == nil {
			root, err = rootOf(r)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("root of size %d: %w", size, err)
	}
	return root, nil
}

// InclusionProof returns the RFC 6962 proof that event seq is in the tree of
// size events.
func (db *DB) InclusionProof(seq, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(seq, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return db.proofHashes("inclusion proof", size, nodes)
}

// ConsistencyProof returns the RFC 6962 proof that the tree of size from is
// a prefix of the tree of size to.
func (db *DB) ConsistencyProof(from, to uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return db.proofHashes("consistency proof", to, nodes)
}

// proofHashes returns the hashes of a proof's nodes in the tree of size
// events.
func (db *DB) proofHashes(what string, size uint64, nodes proof.Nodes) ([][]byte, error) {
	var hashes [][]byte
	err := db.readTree(size, func(btx *bbolt.Tx) error {
		h, err := readNodes(btx, nodes.IDs)
		if err == nil {
			hashes, err = nodes.Rehash(h, hasher.HashChildren)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return hashes, nil
}

// Checkpoint is a signed statement of the tree: a C2SP tlog-checkpoint note.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	Note   []byte // the signed note
}

// Origin is the checkpoint origin of a camera's log (SPEC, "Audit log").
func Origin(site, camera string) string { return "consentcam/" + site + "/" + camera }

// Checkpoint signs the tree as it stands in the transaction and keeps the
// note as the latest checkpoint. The signer's key name must be origin
// (NewCheckpointSigner). Append c.Event() after it so that the log carries
// its checkpoints; SignLog does both, and only when something happened.
func (tx *Tx) Checkpoint(origin string, s note.Signer) (Checkpoint, error) {
	c, err := tx.checkpoint(origin, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	return c, nil
}

func (tx *Tx) checkpoint(origin string, s note.Signer) (Checkpoint, error) {
	if origin == "" || strings.Contains(origin, "\n") {
		return Checkpoint{}, fmt.Errorf("bad origin %q", origin)
	}
	if s.Name() != origin {
		return Checkpoint{}, fmt.Errorf("signer %q is not named after origin %q", s.Name(), origin)
	}
	tree, err := tx.loadTree()
	if err != nil {
		return Checkpoint{}, err
	}
	c := Checkpoint{Origin: origin, Size: tree.End()}
	if c.Root, err = rootOf(tree); err != nil {
		return Checkpoint{}, err
	}
	if c.Note, err = note.Sign(&note.Note{Text: checkpointBody(origin, c.Size, c.Root)}, s); err != nil {
		return Checkpoint{}, fmt.Errorf("sign: %w", err)
	}
	// Ed25519 signatures are deterministic: the same tree signed again
	// gives the same note, which need not be written again.
	meta := tx.bucket(bucketMeta)
	if bytes.Equal(meta.Get(metaCheckpoint), c.Note) {
		return c, nil
	}
	return c, meta.Put(metaCheckpoint, c.Note)
}

// SignLog makes the latest checkpoint cover the whole log, as the agent
// does every audit.checkpoint_interval, after a revoke and at shutdown
// (SPEC, "Audit log"). When the latest checkpoint, signed by s, covers
// every event already, it returns it and changes nothing, so that the
// transaction writes nothing. Otherwise, when the log's last event is not a
// checkpoint event (something happened since the last one), it signs the
// tree, appends the checkpoint event carrying that note, with actor as its
// Actor, and signs the tree again, that event included; when it is, it only
// signs the tree. It returns the latest checkpoint, which covers every
// event, and the event appended (nil when none was).
func (tx *Tx) SignLog(origin string, s note.Signer, actor string) (Checkpoint, *Event, error) {
	latest := tx.bucket(bucketMeta).Get(metaCheckpoint)
	if c, ok := ownCheckpoint(latest, s); ok && c.Origin == origin && c.Size == getUint64(tx.bucket(bucketMeta), metaSize) {
		return c, nil, nil // nothing happened: nothing to sign or write
	}
	due, err := tx.checkpointDue()
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("sign log: %w", err)
	}
	var ev *Event
	if due {
		c, err := tx.Checkpoint(origin, s)
		if err != nil {
			return Checkpoint{}, nil, err
		}
		ev = c.Event()
		ev.Actor = actor
		if err := tx.Append(ev); err != nil {
			return Checkpoint{}, nil, err
		}
	}
	c, err := tx.Checkpoint(origin, s)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	return c, ev, nil
}

// ownCheckpoint parses a checkpoint note this store signed with s: its
// body, once it made sure that s's key signed it (by name and key hash,
// without checking the signature, which it made).
func ownCheckpoint(msg []byte, s note.Signer) (Checkpoint, bool) {
	text, sigs, ok := strings.Cut(string(msg), "\n\n")
	lines := strings.Split(text, "\n")
	if !ok || len(lines) < 3 {
		return Checkpoint{}, false
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Checkpoint{}, false
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return Checkpoint{}, false
	}
	for line := range strings.Lines(sigs) {
		name, sig, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "— "), " ")
		b, err := base64.StdEncoding.DecodeString(sig)
		if name == s.Name() && err == nil && len(b) > 4 && binary.BigEndian.Uint32(b) == s.KeyHash() {
			return Checkpoint{Origin: lines[0], Size: size, Root: root, Note: slices.Clone(msg)}, true
		}
	}
	return Checkpoint{}, false
}

// checkpointDue reports whether the log's last event is not a checkpoint
// event.
func (tx *Tx) checkpointDue() (bool, error) {
	tree, err := tx.loadTree()
	if err != nil || tree.End() == 0 {
		return false, err
	}
	b, err := newLogReader(tx.tx).event(tree.End() - 1)
	if err != nil {
		return false, err
	}
	last, err := decodeEvent(b)
	if err != nil {
		return false, fmt.Errorf("event %d: %w", tree.End()-1, err)
	}
	return last.Type != EventCheckpoint, nil
}

// Event returns the checkpoint event that carries c in the log: detail
// {"size": c.Size, "root": base64 of c.Root, "note": c.Note}.
func (c Checkpoint) Event() *Event {
	return &Event{Type: EventCheckpoint, Detail: map[string]any{
		"size": c.Size,
		"root": base64.StdEncoding.EncodeToString(c.Root),
		"note": string(c.Note),
	}}
}

// checkCheckpointEvent makes sure a checkpoint event carries, as
// Checkpoint.Event builds it, a checkpoint of the tree it follows: what
// VerifyLog demands.
func checkCheckpointEvent(ev *Event, tree *compact.Range) error {
	root, err := rootOf(tree)
	if err != nil {
		return err
	}
	size, _ := ev.Detail["size"].(uint64)
	root64, _ := ev.Detail["root"].(string)
	_, hasNote := ev.Detail["note"].(string)
	if len(ev.Detail) != 3 || !hasNote || size != tree.End() || root64 != base64.StdEncoding.EncodeToString(root) {
		return errors.New("a checkpoint event must carry a checkpoint of the tree before it (Checkpoint.Event)")
	}
	return nil
}

func checkpointBody(origin string, size uint64, root []byte) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root) + "\n"
}

// LatestCheckpoint returns the note of the latest checkpoint, ErrNotFound if
// none was made.
func (db *DB) LatestCheckpoint() ([]byte, error) {
	var n []byte
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		n = slices.Clone(btx.Bucket(bucketMeta).Get(metaCheckpoint))
		return nil
	})
	if err == nil && n == nil {
		err = fmt.Errorf("latest checkpoint: %w", ErrNotFound)
	}
	return n, err
}

// NewCheckpointSigner returns the note signer of checkpoints for origin: key
// name origin, algorithm Ed25519, as golang.org/x/mod/sumdb/note encodes it.
func NewCheckpointSigner(origin string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("checkpoint signer: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer: %w", err)
	}
	// A verifier key is name+hash+base64(alg, public key); the signer key is
	// PRIVATE+KEY+name+hash+base64(alg, seed).
	name, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, key.Seed()...))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer %q: %w", origin, err)
	}
	return s, nil
}

// algEd25519 is the algorithm byte of an Ed25519 note key.
const algEd25519 = 1

// NewCheckpointVerifier returns the note verifier of checkpoints for origin
// signed by the key of pub.
func NewCheckpointVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier %q: %w", origin, err)
	}
	return v, nil
}

// parsedCheckpoint is the body of a checkpoint note.
type parsedCheckpoint struct {
	origin string
	size   uint64
	root   []byte
}

// openCheckpoint verifies a checkpoint note's signature by pub under the key
// name of its origin line and parses its body.
func openCheckpoint(msg []byte, pub ed25519.PublicKey) (*parsedCheckpoint, error) {
	origin, _, ok := strings.Cut(string(msg), "\n")
	if !ok || origin == "" {
		return nil, errors.New("no origin line")
	}
	v, err := NewCheckpointVerifier(origin, pub)
	if err != nil {
		return nil, err
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, fmt.Errorf("not signed by the given key for origin %q", origin)
		}
		return nil, err
	}
	// origin, size, root, then optional extension lines.
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, errors.New("body has fewer than 3 lines")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return nil, fmt.Errorf("bad size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return nil, fmt.Errorf("bad root hash %q", lines[2])
	}
	return &parsedCheckpoint{origin: origin, size: size, root: root}, nil
}
