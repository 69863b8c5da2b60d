package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// Evidence kinds (SPEC, "Evidence").
const (
	// EvidenceConsent is a consent token, referenced by consent.accepted.
	EvidenceConsent = "consent"
	// EvidenceRevoke is a revoke command, referenced by consent.revoked.
	EvidenceRevoke = "revoke"
)

// Evidence is a consent token or a revoke command kept as received, as proof
// of the lawful basis of a capture or of who ordered an erasure. Its JSON is
// a line of what the auditor endpoint serves and of a bundle's
// evidence.jsonl. It holds a pseudonymous subject id and no biometric data,
// so it outlives the records it allowed, until Expires.
type Evidence struct {
	// Seq is the seq of the event that references it: consent.accepted
	// (detail.jti) or consent.revoked (detail.request).
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"`
	JTI  string `json:"jti"`
	// Token is the compact token exactly as received (without the
	// surrounding whitespace the verifier ignores); the event's
	// detail.token_sha256 is the hex SHA-256 of these bytes.
	Token string `json:"token"`
	// Expires is when the sweep deletes it, with an evidence.expired event.
	Expires time.Time `json:"expires"`
}

// maxEvidenceToken bounds a kept token; the verifier refuses those over
// 8 KiB before this matters.
const maxEvidenceToken = 16 << 10

// Buckets nested in bucketEvidence, created on first use.
var (
	evidenceByJTI  = []byte("byjti")   // jti → encoded Evidence
	evidenceBySeq  = []byte("byseq")   // seq → jti
	evidenceByExp  = []byte("byexp")   // time + jti → nil
	evidenceNotice = []byte("notices") // notice hash → notice JSON
)

// evidenceBucket returns a bucket nested in bucketEvidence: nil when it does
// not exist yet and the transaction is read-only.
func (tx *Tx) evidenceBucket(name []byte) (*bbolt.Bucket, error) {
	return evidenceBucket(tx.tx, name)
}

func evidenceBucket(btx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	top := btx.Bucket(bucketEvidence)
	if top == nil {
		return nil, errors.New("no evidence bucket")
	}
	if b := top.Bucket(name); b != nil || !btx.Writable() {
		return b, nil
	}
	return top.CreateBucket(name)
}

// PutEvidence keeps a consent token or a revoke command. Call it in the
// transaction that appended the event referencing it, after that event: the
// event at e.Seq must be a consent.accepted (kind consent) whose detail.jti
// is e.JTI, or a consent.revoked (kind revoke) whose detail.request is e.JTI,
// and its detail.token_sha256 must be the SHA-256 of e.Token. ErrExists if
// evidence with that jti or seq is already kept.
func (tx *Tx) PutEvidence(e Evidence) error {
	if err := tx.putEvidence(e); err != nil {
		return fmt.Errorf("put evidence %q: %w", e.JTI, err)
	}
	return nil
}

func (tx *Tx) putEvidence(e Evidence) error {
	if err := e.validate(); err != nil {
		return err
	}
	if err := tx.checkReference(e); err != nil {
		return err
	}
	byJTI, err := tx.evidenceBucket(evidenceByJTI)
	if err != nil {
		return err
	}
	bySeq, err := tx.evidenceBucket(evidenceBySeq)
	if err != nil {
		return err
	}
	byExp, err := tx.evidenceBucket(evidenceByExp)
	if err != nil {
		return err
	}
	seq := encodeUint64(e.Seq)
	if byJTI.Get([]byte(e.JTI)) != nil || bySeq.Get(seq) != nil {
		return ErrExists
	}
	if err := byJTI.Put([]byte(e.JTI), encodeEvidence(&e)); err != nil {
		return err
	}
	if err := bySeq.Put(seq, []byte(e.JTI)); err != nil {
		return err
	}
	return byExp.Put(append(timeKey(e.Expires), e.JTI...), nil)
}

func (e *Evidence) validate() error {
	if e.Kind != EvidenceConsent && e.Kind != EvidenceRevoke {
		return fmt.Errorf("kind %q: want %s or %s", e.Kind, EvidenceConsent, EvidenceRevoke)
	}
	if err := checkString("jti", e.JTI, nameMaxLen); err != nil {
		return err
	}
	if err := checkString("token", e.Token, maxEvidenceToken); err != nil {
		return err
	}
	return checkTime("expires", e.Expires)
}

// checkReference makes sure the event at e.Seq, already in the log of this
// transaction, references e as SPEC says.
func (tx *Tx) checkReference(e Evidence) error {
	v, err := newLogReader(tx.tx).event(e.Seq)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("no event at seq %d", e.Seq)
	}
	if err != nil {
		return err
	}
	ev, err := decodeEvent(v)
	if err != nil {
		return fmt.Errorf("event %d: %w", e.Seq, err)
	}
	return ev.references(e)
}

// references reports, as an error, how ev fails to reference e.
func (ev *Event) references(e Evidence) error {
	typ, field := EventConsentAccepted, "jti"
	if e.Kind == EvidenceRevoke {
		typ, field = EventConsentRevoked, "request"
	}
	sum := sha256.Sum256([]byte(e.Token))
	jti, _ := ev.Detail[field].(string)
	hash, _ := ev.Detail["token_sha256"].(string)
	switch {
	case ev.Type != typ:
		return fmt.Errorf("event %d is a %s, evidence of kind %s belongs to a %s", ev.Seq, ev.Type, e.Kind, typ)
	case jti != e.JTI:
		return fmt.Errorf("event %d names %s %q, not %q", ev.Seq, field, jti, e.JTI)
	case hash != hex.EncodeToString(sum[:]):
		return fmt.Errorf("event %d: detail.token_sha256 %q is not the SHA-256 of the token", ev.Seq, hash)
	}
	return nil
}

// Evidence encoding, version 1: a version byte, the seq as uvarint, the kind,
// jti and token as uvarint length and bytes, the expiry as varint nanoseconds
// since 1970.
const evidenceVersion = 1

func encodeEvidence(e *Evidence) []byte {
	b := binary.AppendUvarint([]byte{evidenceVersion}, e.Seq)
	b = appendString(b, e.Kind)
	b = appendString(b, e.JTI)
	b = appendString(b, e.Token)
	return binary.AppendVarint(b, e.Expires.UnixNano())
}

func decodeEvidence(b []byte) (*Evidence, error) {
	if len(b) == 0 || b[0] != evidenceVersion {
		return nil, errors.New("decode evidence: unknown version")
	}
	d := decoder{b: b[1:]}
	e := &Evidence{Seq: d.uvarint(), Kind: d.string(), JTI: d.string(), Token: d.string(), Expires: d.time()}
	switch {
	case d.err != nil:
		return nil, fmt.Errorf("decode evidence: %w", d.err)
	case len(d.b) != 0:
		return nil, fmt.Errorf("decode evidence: %d trailing bytes", len(d.b))
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("decode evidence: %w", err)
	}
	return e, nil
}

// SweepEvidence deletes the evidence whose time is up (Expires <= now) and,
// for each, appends an evidence.expired event by actor (detail: jti, kind,
// and the seq of the event that referenced it) in the same transaction. It
// returns how many it deleted; its cost is proportional to that number.
func (tx *Tx) SweepEvidence(now time.Time, actor string) (int, error) {
	n, err := tx.sweepEvidence(now, actor)
	if err != nil {
		return 0, fmt.Errorf("sweep evidence: %w", err)
	}
	return n, nil
}

func (tx *Tx) sweepEvidence(now time.Time, actor string) (int, error) {
	byExp, err := tx.evidenceBucket(evidenceByExp)
	if err != nil {
		return 0, err
	}
	var keys [][]byte
	end := timeKey(now)
	c := byExp.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:min(8, len(k))], end) <= 0; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	byJTI, err := tx.evidenceBucket(evidenceByJTI)
	if err != nil {
		return 0, err
	}
	bySeq, err := tx.evidenceBucket(evidenceBySeq)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if len(k) <= 8 {
			return 0, fmt.Errorf("evidence expiry index: bad key %x", k)
		}
		jti := k[8:]
		e, err := decodeEvidence(byJTI.Get(jti))
		if err != nil {
			return 0, fmt.Errorf("evidence %q: %w", jti, err)
		}
		for _, del := range []struct {
			b *bbolt.Bucket
			k []byte
		}{{byExp, k}, {byJTI, jti}, {bySeq, encodeUint64(e.Seq)}} {
			if err := del.b.Delete(del.k); err != nil {
				return 0, err
			}
		}
		err = tx.Append(&Event{Type: EventEvidenceExpired, Actor: actor,
			Detail: map[string]any{"jti": e.JTI, "kind": e.Kind, "seq": e.Seq}})
		if err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// Evidence returns up to limit pieces of evidence kept, those referenced by
// events of seq >= from, in seq order.
func (db *DB) Evidence(from uint64, limit int) ([]Evidence, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("evidence: limit %d, want > 0", limit)
	}
	var es []Evidence
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		bySeq, err := evidenceBucket(btx, evidenceBySeq)
		if err != nil || bySeq == nil {
			return err
		}
		byJTI, err := evidenceBucket(btx, evidenceByJTI)
		if err != nil {
			return err
		}
		c := bySeq.Cursor()
		for k, jti := c.Seek(encodeUint64(from)); k != nil && len(es) < limit; k, jti = c.Next() {
			e, err := decodeEvidence(byJTI.Get(jti))
			if err != nil {
				return fmt.Errorf("evidence %q: %w", jti, err)
			}
			es = append(es, *e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	return es, nil
}

// EvidenceByJTI returns the evidence kept with that token id, ErrNotFound if
// none is (never kept, or expired).
func (db *DB) EvidenceByJTI(jti string) (Evidence, error) {
	var e *Evidence
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		byJTI, err := evidenceBucket(btx, evidenceByJTI)
		if err != nil || byJTI == nil {
			return err
		}
		if v := byJTI.Get([]byte(jti)); v != nil {
			e, err = decodeEvidence(v)
		}
		return err
	})
	switch {
	case err != nil:
		return Evidence{}, fmt.Errorf("evidence %q: %w", jti, err)
	case e == nil:
		return Evidence{}, fmt.Errorf("evidence %q: %w", jti, ErrNotFound)
	}
	return *e, nil
}

// PutNotice keeps a published notice by its hash, for ever (a notice holds
// no personal data). notice is the notice JSON as published, whose "hash"
// member must be hash. Keeping the same notice again does nothing; another
// notice under a kept hash is an error.
func (tx *Tx) PutNotice(hash string, notice []byte) error {
	if err := tx.putNotice(hash, notice); err != nil {
		return fmt.Errorf("put notice %s: %w", hash, err)
	}
	return nil
}

func (tx *Tx) putNotice(hash string, notice []byte) error {
	if err := checkString("hash", hash, wordMaxLen); err != nil {
		return err
	}
	var n struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(notice, &n); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if n.Hash != hash {
		return fmt.Errorf("the notice says hash %q", n.Hash)
	}
	b, err := tx.evidenceBucket(evidenceNotice)
	if err != nil {
		return err
	}
	switch old := b.Get([]byte(hash)); {
	case old == nil:
		return b.Put([]byte(hash), notice)
	case !bytes.Equal(old, notice):
		return errors.New("another notice is kept under this hash")
	}
	return nil
}

// Notices returns every notice kept, ordered by hash.
func (db *DB) Notices() ([][]byte, error) {
	var ns [][]byte
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		b, err := evidenceBucket(btx, evidenceNotice)
		if err != nil || b == nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			ns = append(ns, slices.Clone(v))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("notices: %w", err)
	}
	return ns, nil
}

// Notice returns the notice kept under hash, ErrNotFound if none is.
func (db *DB) Notice(hash string) ([]byte, error) {
	var n []byte
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		b, err := evidenceBucket(btx, evidenceNotice)
		if err == nil && b != nil {
			n = slices.Clone(b.Get([]byte(hash)))
		}
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("notice %s: %w", hash, err)
	case n == nil:
		return nil, fmt.Errorf("notice %s: %w", hash, ErrNotFound)
	}
	return n, nil
}

// checkEvidence verifies that the evidence indexes agree with one another
// and that each piece is referenced by its event.
func (tx *Tx) checkEvidence() []error {
	var errs []error
	byJTI, _ := tx.evidenceBucket(evidenceByJTI)
	bySeq, _ := tx.evidenceBucket(evidenceBySeq)
	byExp, _ := tx.evidenceBucket(evidenceByExp)
	if byJTI == nil || bySeq == nil || byExp == nil {
		return nil // nothing was ever kept (Check runs in a write transaction, which creates them)
	}
	n := 0
	err := byJTI.ForEach(func(k, v []byte) error {
		n++
		e, err := decodeEvidence(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("evidence %q: %w", k, err))
			return nil
		}
		switch {
		case e.JTI != string(k):
			errs = append(errs, fmt.Errorf("evidence %q: says jti %q", k, e.JTI))
		case !bytes.Equal(bySeq.Get(encodeUint64(e.Seq)), k):
			errs = append(errs, fmt.Errorf("evidence %q: seq %d not indexed", k, e.Seq))
		case !has(byExp, append(timeKey(e.Expires), k...)):
			errs = append(errs, fmt.Errorf("evidence %q: not in the expiry index", k))
		}
		if err := tx.checkReference(*e); err != nil {
			errs = append(errs, fmt.Errorf("evidence %q: %w", k, err))
		}
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	for _, b := range []*bbolt.Bucket{bySeq, byExp} {
		if got := b.Stats().KeyN; got != n {
			errs = append(errs, fmt.Errorf("evidence index has %d entries, want %d", got, n))
		}
	}
	return errs
}
