package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Selector names the records of one subject or of one visit: exactly one of
// the fields is set.
type Selector struct {
	Subject string
	Visit   string
}

func (s Selector) String() string {
	if s.Subject != "" {
		return "subject " + s.Subject
	}
	return "visit " + s.Visit
}

func (s Selector) validate() error {
	if (s.Subject == "") == (s.Visit == "") {
		return errors.New("selector: want exactly one of subject or visit")
	}
	return nil
}

// PutRecord stores rec and its image, sealed with a new data key of its own
// (AES-256-GCM, the record id as additional data). The key is wrapped by the
// master key and kept in the key file, never in the store file. An empty
// rec.Camera is set to the DB's camera. The id must be new.
func (tx *Tx) PutRecord(rec *Record, image []byte) error {
	if rec.Camera == "" {
		rec.Camera = tx.db.Camera
	}
	if err := tx.putRecord(rec, image); err != nil {
		return fmt.Errorf("put record %s: %w", rec.ID, err)
	}
	return nil
}

func (tx *Tx) putRecord(rec *Record, image []byte) error {
	if err := rec.validate(); err != nil {
		return err
	}
	if len(image) == 0 {
		return errors.New("empty image")
	}
	if tx.bucket(bucketRecords).Get([]byte(rec.ID)) != nil {
		return ErrExists
	}
	if err := tx.putImage(rec, image); err != nil {
		return err
	}
	if err := tx.writeRecord(nil, rec); err != nil {
		return err
	}
	return addUint64(tx.bucket(bucketMeta), metaRecords, 1)
}

// putImage seals image under a new data key for the record and stores it.
func (tx *Tx) putImage(rec *Record, image []byte) error {
	aead, err := newAEAD(tx.newDataKey(rec.ID))
	if err != nil {
		return err
	}
	return tx.putCrop(rec, aead.Seal(nil, nil, image, []byte(rec.ID)))
}

// writeRecord stores rec and brings the index entries from those of old
// (nil for a new record) to its own.
func (tx *Tx) writeRecord(old, rec *Record) error {
	if err := tx.bucket(bucketRecords).Put([]byte(rec.ID), encodeRecord(rec)); err != nil {
		return err
	}
	return tx.reindex(old, rec)
}

// entry is a key in a bucket.
type entry struct{ bucket, key []byte }

// indexEntries are the index keys of a record: by subject, by visit, and one
// by expiry for each distinct tag expiry.
func indexEntries(r *Record) []entry {
	if r == nil {
		return nil
	}
	es := []entry{
		{bucketBySubject, nameIDKey(r.Subject, r.ID)},
		{bucketByVisit, nameIDKey(r.Visit, r.ID)},
	}
	for _, t := range r.Purposes {
		e := entry{bucketByExpiry, timeIDKey(t.Expires, r.ID)}
		if !slices.ContainsFunc(es, e.equal) {
			es = append(es, e)
		}
	}
	return es
}

func (e entry) equal(f entry) bool {
	return bytes.Equal(e.bucket, f.bucket) && bytes.Equal(e.key, f.key)
}

// reindex replaces the index entries of old with those of rec; either may be
// nil.
func (tx *Tx) reindex(old, rec *Record) error {
	newEntries := indexEntries(rec)
	for _, e := range indexEntries(old) {
		if !slices.ContainsFunc(newEntries, e.equal) {
			if err := tx.bucket(e.bucket).Delete(e.key); err != nil {
				return err
			}
		}
	}
	for _, e := range newEntries {
		if err := tx.bucket(e.bucket).Put(e.key, nil); err != nil {
			return err
		}
	}
	return nil
}

// Record returns the record with that id, without its image.
func (tx *Tx) Record(id string) (*Record, error) {
	v := tx.bucket(bucketRecords).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("record %s: %w", id, ErrNotFound)
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", id, err)
	}
	return r, nil
}

// Records returns the records of a subject or of a visit, by id.
func (tx *Tx) Records(sel Selector) ([]*Record, error) {
	if err := sel.validate(); err != nil {
		return nil, err
	}
	var ids []string
	if sel.Subject != "" {
		ids = scanPrefix(tx.bucket(bucketBySubject), sel.Subject)
	} else {
		ids = scanPrefix(tx.bucket(bucketByVisit), sel.Visit)
	}
	recs := make([]*Record, 0, len(ids))
	for _, id := range ids {
		r, err := tx.Record(id)
		if err != nil {
			return nil, fmt.Errorf("records of %v: %w", sel, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Image returns the decrypted image of a record for a purpose it is still
// tagged with at db.Now(): ErrNotFound, or ErrPurpose when the record is not,
// or no longer, tagged with purpose. Call it in the Update that appends the
// record.accessed event.
func (tx *Tx) Image(id, purpose string) ([]byte, error) {
	r, err := tx.Record(id)
	if err != nil {
		return nil, err
	}
	if t, ok := r.tag(purpose); !ok || !tx.db.Now().Before(t.Expires) {
		return nil, fmt.Errorf("image of record %s for %s: %w", id, purpose, ErrPurpose)
	}
	img, err := tx.openImage(r)
	if err != nil {
		return nil, fmt.Errorf("image of record %s: %w", id, err)
	}
	return img, nil
}

func (tx *Tx) openImage(r *Record) ([]byte, error) {
	sealed := tx.sealedCrop(r)
	if sealed == nil {
		return nil, ErrNotFound
	}
	key, err := tx.dataKey(r.ID)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	img, err := aead.Open(nil, nil, sealed, []byte(r.ID))
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return img, nil
}

// Erase deletes the records of a subject or a visit, their crops, index
// entries and data keys, and returns the records as they were. Append the
// audit events in the same transaction.
func (tx *Tx) Erase(sel Selector) ([]*Record, error) {
	recs, err := tx.Records(sel)
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	for _, r := range recs {
		if err := tx.deleteRecord(r); err != nil {
			return nil, fmt.Errorf("erase %v: %w", sel, err)
		}
	}
	return recs, nil
}

// deleteRecord deletes a record, its crop, its index entries, and (once the
// transaction commits) its data key.
func (tx *Tx) deleteRecord(r *Record) error {
	if err := tx.bucket(bucketRecords).Delete([]byte(r.ID)); err != nil {
		return err
	}
	if err := tx.deleteCrop(r); err != nil {
		return err
	}
	if err := tx.reindex(r, nil); err != nil {
		return err
	}
	tx.dropDataKey(r.ID)
	return addUint64(tx.bucket(bucketMeta), metaRecords, -1)
}

// SweepResult is what a sweep did.
type SweepResult struct {
	// Expired has one entry per record that lost purpose tags.
	Expired []Expiry
	// Forgotten counts the spent token ids forgotten.
	Forgotten int
}

// Expiry is the expiry of some or all of a record's purpose tags.
type Expiry struct {
	Record   *Record  // as it was before the sweep
	Purposes []string // the purposes whose tags expired
	Deleted  bool     // no tag was left: the record and its image are gone
}

// Sweep drops the purpose tags expired at now (Expires <= now), deletes the
// records left without tags, with their data keys, and forgets the spent
// token ids past their time. Its cost is proportional to what expired, not
// to the size of the store.
func (tx *Tx) Sweep(now time.Time) (*SweepResult, error) {
	ids, err := tx.expiredIDs(now)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	res := &SweepResult{}
	for _, id := range ids {
		r, err := tx.Record(id)
		if err != nil {
			return nil, fmt.Errorf("sweep: %w", err)
		}
		kept := *r
		kept.Purposes = nil
		x := Expiry{Record: r}
		for _, t := range r.Purposes {
			if now.Before(t.Expires) {
				kept.Purposes = append(kept.Purposes, t)
			} else {
				x.Purposes = append(x.Purposes, t.Purpose)
			}
		}
		if x.Deleted = len(kept.Purposes) == 0; x.Deleted {
			err = tx.deleteRecord(r)
		} else {
			err = tx.writeRecord(r, &kept)
		}
		if err != nil {
			return nil, fmt.Errorf("sweep: record %s: %w", id, err)
		}
		res.Expired = append(res.Expired, x)
	}
	if res.Forgotten, err = tx.forgetSpent(now); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return res, nil
}

// expiredIDs lists, once each, the records with a tag expired at now.
func (tx *Tx) expiredIDs(now time.Time) ([]string, error) {
	var ids []string
	seen := make(map[string]bool)
	err := tx.scanUntil(bucketByExpiry, now, func(k []byte) {
		if id := string(k[8:]); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	})
	return ids, err
}

// scanUntil calls fn with each key of a time index (time + name) whose time
// is now or earlier, in time order.
func (tx *Tx) scanUntil(bucket []byte, now time.Time, fn func(k []byte)) error {
	end := timeKey(now)
	c := tx.bucket(bucket).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) <= 8 {
			return fmt.Errorf("index %s: bad key %x", bucket, k)
		}
		if bytes.Compare(k[:8], end) > 0 {
			break
		}
		fn(k)
	}
	return nil
}

// Spend remembers a token id until until; ErrReplayed if it is already
// remembered and not past its time (db.Now() before its until).
func (tx *Tx) Spend(jti string, until time.Time) error {
	if err := checkString("jti", jti, nameMaxLen); err != nil {
		return fmt.Errorf("spend: %w", err)
	}
	spent := tx.bucket(bucketSpent)
	if v := spent.Get([]byte(jti)); v != nil {
		if remembered(v, tx.db.Now()) {
			return fmt.Errorf("spend %q: %w", jti, ErrReplayed)
		}
		if err := tx.bucket(bucketSpentExp).Delete(append(bytes.Clone(v), jti...)); err != nil {
			return fmt.Errorf("spend: %w", err)
		}
	}
	k := timeKey(until)
	if err := spent.Put([]byte(jti), k); err != nil {
		return fmt.Errorf("spend: %w", err)
	}
	if err := tx.bucket(bucketSpentExp).Put(append(k, jti...), nil); err != nil {
		return fmt.Errorf("spend: %w", err)
	}
	return nil
}

// forgetSpent deletes the token ids remembered until now or earlier, and
// the receipts kept under them.
func (tx *Tx) forgetSpent(now time.Time) (int, error) {
	var keys [][]byte
	if err := tx.scanUntil(bucketSpentExp, now, func(k []byte) {
		keys = append(keys, bytes.Clone(k))
	}); err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := tx.bucket(bucketSpentExp).Delete(k); err != nil {
			return 0, err
		}
		if err := tx.bucket(bucketSpent).Delete(k[8:]); err != nil {
			return 0, err
		}
		if err := tx.bucket(bucketReceipts).Delete(k[8:]); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// Spent reports whether a token id is remembered and not past its time.
func (db *DB) Spent(jti string) (bool, error) {
	var spent bool
	err := db.View(func(tx *Tx) error {
		spent = remembered(tx.bucket(bucketSpent).Get([]byte(jti)), db.Now())
		return nil
	})
	return spent, err
}

// remembered reports whether a spent token id stored with until (a time key,
// nil for none) is not yet past its time at now.
func remembered(until []byte, now time.Time) bool {
	return until != nil && bytes.Compare(timeKey(now), until) < 0
}
