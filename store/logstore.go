package store

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"go.etcd.io/bbolt"
)

// How the log is kept, so that the file grows with what happened and not
// much more. Events are appended one by one to bucketEvents (seq → JSON);
// when a block of eventBlock events is complete, the transaction that
// completes it compresses the block (DEFLATE) into bucketBlocks under the
// seq of its first event and deletes the single events. Merkle hashes of
// perfect subtrees are stored from level nodeMinLevel up (subtrees of 16
// leaves or more); a smaller one is hashed again from at most 15 events when
// a proof or the compact range of the tree's end needs it.
const (
	eventBlock   = 64
	nodeMinLevel = 4
)

// putEvent stores the event seq and, when it completes a block, seals the
// block.
func (tx *Tx) putEvent(seq uint64, leaf []byte) error {
	if err := tx.bucket(bucketEvents).Put(encodeUint64(seq), leaf); err != nil {
		return err
	}
	if (seq+1)%eventBlock != 0 {
		return nil
	}
	return sealBlock(tx.tx, seq+1-eventBlock)
}

// sealBlock compresses the single events first to first+eventBlock-1 into
// a block and deletes them.
func sealBlock(btx *bbolt.Tx, first uint64) error {
	events := btx.Bucket(bucketEvents)
	evs := make([][]byte, 0, eventBlock)
	keys := make([][]byte, 0, eventBlock)
	c := events.Cursor()
	seq := first
	for k, v := c.Seek(encodeUint64(first)); k != nil && seq < first+eventBlock; k, v = c.Next() {
		if decodeUint64(k) != seq {
			return fmt.Errorf("seal events from %d: found %x where %d was expected", first, k, seq)
		}
		evs = append(evs, v)
		keys = append(keys, k)
		seq++
	}
	if seq != first+eventBlock {
		return fmt.Errorf("seal events from %d: only %d of them", first, seq-first)
	}
	block, err := encodeBlock(evs)
	if err != nil {
		return err
	}
	if err := btx.Bucket(bucketBlocks).Put(encodeUint64(first), block); err != nil {
		return err
	}
	for _, k := range keys {
		if err := events.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// encodeBlock compresses events, each as its length (uvarint) and its
// bytes.
func encodeBlock(evs [][]byte) ([]byte, error) {
	var raw []byte
	for _, ev := range evs {
		raw = binary.AppendUvarint(raw, uint64(len(ev)))
		raw = append(raw, ev...)
	}
	var block bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(w)
	w.Reset(&block)
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return block.Bytes(), nil
}

// flateWriters keeps DEFLATE writers, whose state takes more time to
// allocate than a block takes to compress. BestSpeed compresses a block of
// events about 6 times (BestCompression 6.6 times, seven times slower).
var flateWriters = sync.Pool{New: func() any {
	w, err := flate.NewWriter(nil, flate.BestSpeed)
	if err != nil {
		panic(err) // only for a bad level
	}
	return w
}}

// decodeBlock returns the events of a sealed block: eventBlock of them, or
// an error.
func decodeBlock(block []byte) ([][]byte, error) {
	raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(block)))
	if err != nil {
		return nil, fmt.Errorf("event block: %w", err)
	}
	evs := make([][]byte, 0, eventBlock)
	for len(raw) > 0 {
		n, k := binary.Uvarint(raw)
		if k <= 0 || n > uint64(len(raw)-k) {
			return nil, errors.New("event block: truncated")
		}
		evs = append(evs, raw[k:k+int(n)])
		raw = raw[k+int(n):]
	}
	if len(evs) != eventBlock {
		return nil, fmt.Errorf("event block of %d events", len(evs))
	}
	return evs, nil
}

// logReader reads events in a transaction, keeping the last block it
// decoded.
type logReader struct {
	btx   *bbolt.Tx
	first uint64   // seq of block's first event
	block [][]byte // the events of the last block decoded, nil if none
}

func newLogReader(btx *bbolt.Tx) *logReader { return &logReader{btx: btx} }

// event returns event seq's JSON; ErrNotFound if there is none. The bytes
// are valid only during the transaction.
func (r *logReader) event(seq uint64) ([]byte, error) {
	if v := r.btx.Bucket(bucketEvents).Get(encodeUint64(seq)); v != nil {
		return v, nil
	}
	first := seq - seq%eventBlock
	if r.block == nil || r.first != first {
		v := r.btx.Bucket(bucketBlocks).Get(encodeUint64(first))
		if v == nil {
			return nil, fmt.Errorf("event %d: %w", seq, ErrNotFound)
		}
		evs, err := decodeBlock(v)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", seq, err)
		}
		r.first, r.block = first, evs
	}
	return r.block[seq-first], nil
}

// each calls fn with every event from seq from to the end of the log (size
// events), in order, until fn returns false. The bytes are valid only
// during the transaction.
func (r *logReader) each(from, size uint64, fn func(seq uint64, ev []byte) bool) error {
	for seq := from; seq < size; seq++ {
		ev, err := r.event(seq)
		if err != nil {
			return err
		}
		if !fn(seq, ev) {
			return nil
		}
	}
	return nil
}

// checkLogEnd makes sure the log ends where the tree does: blocks up to the
// last whole one, single events after it.
func checkLogEnd(btx *bbolt.Tx, size uint64) error {
	lastSingle, _ := btx.Bucket(bucketEvents).Cursor().Last()
	lastBlock, _ := btx.Bucket(bucketBlocks).Cursor().Last()
	sealed := size - size%eventBlock
	var wantSingle, wantBlock []byte
	if size%eventBlock != 0 {
		wantSingle = encodeUint64(size - 1)
	}
	if sealed > 0 {
		wantBlock = encodeUint64(sealed - eventBlock)
	}
	if !bytes.Equal(lastSingle, wantSingle) || !bytes.Equal(lastBlock, wantBlock) {
		return fmt.Errorf("audit log corrupt: tree size %d, last event key %x, last block key %x", size, lastSingle, lastBlock)
	}
	return nil
}

func nodeKey(id compact.NodeID) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(id.Level)}, id.Index)
}

// putNode stores the hash of a perfect subtree if it is of a level kept.
func putNode(nodes *bbolt.Bucket, id compact.NodeID, hash []byte) error {
	if id.Level < nodeMinLevel {
		return nil
	}
	return nodes.Put(nodeKey(id), hash)
}

// storedNodes is the number of hashes stored for a tree of size leaves.
func storedNodes(size uint64) int {
	n := 0
	for s := size >> nodeMinLevel; s > 0; s >>= 1 {
		n += int(s)
	}
	return n
}

// readNodes returns the hashes of perfect subtrees: stored, or hashed from
// their leaves.
func readNodes(btx *bbolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	nodes := btx.Bucket(bucketNodes)
	r := newLogReader(btx)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Level < nodeMinLevel {
			h, err := r.subtreeHash(id)
			if err != nil {
				return nil, fmt.Errorf("merkle node level %d index %d: %w", id.Level, id.Index, err)
			}
			hashes[i] = h
			continue
		}
		h := nodes.Get(nodeKey(id))
		if len(h) != sha256.Size {
			return nil, fmt.Errorf("merkle node level %d index %d missing", id.Level, id.Index)
		}
		hashes[i] = slices.Clone(h)
	}
	return hashes, nil
}

// subtreeHash hashes a perfect subtree from its leaves.
func (r *logReader) subtreeHash(id compact.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	tree := rangeFactory.NewEmptyRange(begin)
	for seq := begin; seq < end; seq++ {
		ev, err := r.event(seq)
		if err != nil {
			return nil, err
		}
		if err := tree.Append(hasher.HashLeaf(ev), nil); err != nil {
			return nil, err
		}
	}
	// A range that is a perfect subtree is that one node.
	if h := tree.Hashes(); len(h) == 1 {
		return h[0], nil
	}
	return nil, fmt.Errorf("leaves %d to %d are not a perfect subtree", begin, end)
}

// readRange returns the compact range [0, size).
func readRange(btx *bbolt.Tx, size uint64) (*compact.Range, error) {
	hashes, err := readNodes(btx, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	return rangeFactory.NewRange(0, size, hashes)
}
