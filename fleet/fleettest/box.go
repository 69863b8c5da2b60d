// Package fleettest plays consentcam boxes for the fleet monitor's tests
// and its load benchmark: each Box has its own device key and writes its
// audit events and checkpoints exactly as a box's store does (the event's
// JSON is its Merkle leaf; a checkpoint is a C2SP tlog-checkpoint note
// signed by the device key, and a checkpoint event carries it), without a
// bbolt file, so that one process can play a thousand boxes.
package fleettest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/consentcam/consentcam/audit"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Box is one simulated box. Its methods are safe for concurrent use.
type Box struct {
	Site, Camera string
	Key          ed25519.PrivateKey
	// Now is the box's clock (time.Now by default).
	Now func() time.Time

	mu     sync.Mutex
	signer note.Signer
	tree   *compact.Range
}

// NewBox returns a box whose device key derives from its name (so that a
// test or a benchmark makes the same keys every run).
func NewBox(site, camera string) *Box {
	seed := sha256.Sum256([]byte("fleettest device key " + site + "/" + camera))
	return NewBoxWithKey(site, camera, ed25519.NewKeyFromSeed(seed[:]))
}

// NewBoxWithKey returns a box with the device key given.
func NewBoxWithKey(site, camera string, key ed25519.PrivateKey) *Box {
	s, err := store.NewCheckpointSigner(store.Origin(site, camera), key)
	if err != nil {
		panic(err)
	}
	return &Box{Site: site, Camera: camera, Key: key, Now: time.Now, signer: s, tree: rangeFactory.NewEmptyRange(0)}
}

// Fork returns a copy of the box as it stands, which goes its own way
// from now on: a box whose state file was restored from a backup.
func (b *Box) Fork() *Box {
	b.mu.Lock()
	defer b.mu.Unlock()
	tree, err := rangeFactory.NewRange(0, b.tree.End(), append([][]byte(nil), b.tree.Hashes()...))
	if err != nil {
		panic(err)
	}
	return &Box{Site: b.Site, Camera: b.Camera, Key: b.Key, Now: b.Now, signer: b.signer, tree: tree}
}

// Public is the box's device public key.
func (b *Box) Public() ed25519.PublicKey { return b.Key.Public().(ed25519.PublicKey) }

// WriteKey writes the box's device public key as DIR/SITE/CAMERA.pub, the
// layout of the monitor's boxes.keys_dir.
func (b *Box) WriteKey(dir string) error {
	pem, err := consent.MarshalPublicKey(b.Public())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, b.Site), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, b.Site, b.Camera+".pub"), pem, 0o644)
}

// Size is the number of events the box has logged.
func (b *Box) Size() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tree.End()
}

// Append logs an event (Seq, Time, Site and Camera are filled in) and
// returns its bytes, as the box publishes them on …/audit.
func (b *Box) Append(ev *store.Event) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.append(ev)
}

func (b *Box) append(ev *store.Event) []byte {
	ev.Seq = b.tree.End()
	ev.Time = b.Now().UTC().Truncate(time.Millisecond)
	ev.Site, ev.Camera = b.Site, b.Camera
	leaf := EventJSON(ev)
	if err := b.tree.Append(rfc6962.DefaultHasher.HashLeaf(leaf), nil); err != nil {
		panic(err)
	}
	return leaf
}

// EventJSON is an event's bytes in the one form the store writes.
func EventJSON(ev *store.Event) []byte {
	first, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.UseNumber()
	var norm store.Event
	if err := dec.Decode(&norm); err != nil {
		panic(err)
	}
	out, err := json.Marshal(&norm)
	if err != nil {
		panic(err)
	}
	return out
}

// Started logs agent.started with settings, as an agent does at start.
func (b *Box) Started(s audit.Settings) []byte {
	d := audit.SettingsDetail(&s)
	d["version"], d["detector"] = "fleettest", "none"
	return b.Append(&store.Event{Type: store.EventAgentStarted, Actor: "agent", Detail: d})
}

// Checkpoint signs the tree as it stands and logs the checkpoint event
// that carries the note; it returns the note (what …/checkpoint carries)
// and the event.
func (b *Box) Checkpoint() (cp, event []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp = b.note()
	size, root := b.tree.End(), b.root()
	event = b.append(&store.Event{Type: store.EventCheckpoint, Detail: map[string]any{
		"size": size, "root": base64.StdEncoding.EncodeToString(root), "note": string(cp),
	}})
	return cp, event
}

// Note signs the tree as it stands, logging nothing (a box re-signs its
// latest checkpoint when its log did not grow).
func (b *Box) Note() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.note()
}

func (b *Box) root() []byte {
	if b.tree.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	r, err := b.tree.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return r
}

func (b *Box) note() []byte {
	text := store.Origin(b.Site, b.Camera) + "\n" + strconv.FormatUint(b.tree.End(), 10) + "\n" +
		base64.StdEncoding.EncodeToString(b.root()) + "\n"
	n, err := note.Sign(&note.Note{Text: text}, b.signer)
	if err != nil {
		panic(err)
	}
	return n
}

// Settings are those a simulated box states: the SPEC's defaults, two
// purposes, and the given checkpoint interval.
func Settings(checkpoint time.Duration) audit.Settings {
	return audit.Settings{
		Purposes: map[string]audit.Duration{
			"channel-attribution": audit.Duration(720 * time.Hour),
			"entry-security":      audit.Duration(24 * time.Hour),
		},
		CheckpointInterval: audit.Duration(checkpoint),
		SweepInterval:      audit.Duration(time.Minute),
		ClockSkew:          audit.Duration(30 * time.Second),
		EvidenceRetention:  audit.Duration(26280 * time.Hour),
	}
}

// Declined is the event of a visitor who said no at the kiosk: the
// commonest event that breaks no rule, whatever came before. n makes each
// one's visit id unique.
func Declined(n uint64) *store.Event {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], n)
	return &store.Event{Type: store.EventConsentDeclined, Visit: fmt.Sprintf("visit-%x", id), Actor: "kiosk-1"}
}
