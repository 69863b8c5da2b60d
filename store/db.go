package store

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: no such record, event or checkpoint.
	ErrNotFound = errors.New("not found")
	// ErrPurpose: the record is not tagged with that purpose, or the tag has
	// expired.
	ErrPurpose = errors.New("record not tagged for this purpose")
	// ErrReplayed: the token id is already spent and not yet past its time.
	ErrReplayed = errors.New("token id already spent")
	// ErrExists: a record with that id is already stored.
	ErrExists = errors.New("already exists")
	// ErrClosed: the DB is not open.
	ErrClosed = errors.New("store closed")
	// ErrLocked: another process has the file open (bbolt allows one
	// writer process); Open gave up after a second.
	ErrLocked = errors.New("store file in use by another process")
)

// Bucket names. Index keys are built by the functions of keys.go.
var (
	bucketMeta      = []byte("meta")      // metaKey… → value
	bucketRecords   = []byte("records")   // record id → encoded Record
	bucketImages    = []byte("images")    // record id → AES-GCM sealed image
	bucketKeys      = []byte("keys")      // subject → data key sealed by the master key
	bucketBySubject = []byte("bysubject") // prefix(subject) + id → nil
	bucketByVisit   = []byte("byvisit")   // prefix(visit) + id → nil
	bucketByExpiry  = []byte("byexpiry")  // time + id → nil, one per distinct tag expiry
	bucketEvents    = []byte("events")    // seq → event JSON (Merkle leaf)
	bucketNodes     = []byte("nodes")     // level + index → hash of a perfect subtree
	bucketOutbox    = []byte("outbox")    // seq → nil, events not yet acknowledged
	bucketSpent     = []byte("spent")     // jti → time until which it is remembered
	bucketSpentExp  = []byte("spentexp")  // time + jti → nil
	bucketAwaiting  = []byte("awaiting")  // seq of consent.accepted → Awaiting JSON
	bucketReceipts  = []byte("receipts")  // revoke jti → signed receipt, while the jti is spent
	bucketEvidence  = []byte("evidence")  // nested buckets of evidence.go

	allBuckets = [][]byte{bucketMeta, bucketRecords, bucketImages, bucketKeys,
		bucketBySubject, bucketByVisit, bucketByExpiry, bucketEvents, bucketNodes,
		bucketOutbox, bucketSpent, bucketSpentExp, bucketAwaiting, bucketReceipts, bucketEvidence}
)

// Keys of the meta bucket.
var (
	metaVersion    = []byte("version")    // format version, one byte
	metaKeyCheck   = []byte("keycheck")   // a constant sealed by the master key
	metaSize       = []byte("size")       // Merkle tree size = next seq
	metaRecords    = []byte("records")    // number of records
	metaPending    = []byte("pending")    // number of outbox entries
	metaCheckpoint = []byte("checkpoint") // latest signed checkpoint note
)

const formatVersion = 1

// Log attribute keys.
const (
	logKeyPath   = "path"
	logKeyBefore = "before"
	logKeyAfter  = "after"
)

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// DB is the box's bbolt file. Create it with NewDB, set the exported fields,
// then Open it.
type DB struct {
	// MasterKey (32 bytes) wraps the per-subject data keys.
	MasterKey []byte
	// Site and Camera are written into every audit event.
	Site   string
	Camera string
	// Now is the clock of events, tag expiry checks and token id memory.
	Now    func() time.Time
	Logger *slog.Logger

	path string

	// mu is held for reading by every operation on the file and for writing
	// by Compact and Close, which replace or drop bolt.
	mu     sync.RWMutex
	bolt   *bbolt.DB
	master cipher.AEAD
	size   atomic.Uint64 // committed tree size, for Size

	// writeMu serialises write transactions (bbolt allows one writer at a
	// time anyway) so that subscribers hear of commits in commit order.
	writeMu sync.Mutex
	subsMu  sync.Mutex
	subs    []func([]Event)
}

// NewDB returns a DB for the file at path with default Now and Logger.
func NewDB(path string) *DB {
	return &DB{
		path:   path,
		Now:    time.Now,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// Path is the file's path.
func (db *DB) Path() string { return db.path }

// Open validates the fields, opens (or creates) the file, and checks that the
// master key is the one the file was created with.
func (db *DB) Open() error {
	if err := db.validate(); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	master, err := newAEAD(db.MasterKey)
	if err != nil {
		return fmt.Errorf("open store: master key: %w", err)
	}

	db.mu.Lock()
	defer db.mu.Unlock()
	if db.bolt != nil {
		return errors.New("open store: already open")
	}
	db.master = master
	if err := os.MkdirAll(filepath.Dir(db.path), 0o700); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// A compaction interrupted by a crash leaves its copy behind; it may hold
	// records erased since, so it must go.
	if err := os.Remove(db.compactPath()); err == nil {
		db.Logger.Warn("removed an interrupted compaction", logKeyPath, db.compactPath())
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open store: %w", err)
	}
	return db.openBolt()
}

func (db *DB) validate() error {
	switch {
	case db.path == "":
		return errors.New("no path")
	case len(db.MasterKey) != 32:
		return fmt.Errorf("master key is %d bytes, want 32", len(db.MasterKey))
	case !namePattern.MatchString(db.Site):
		return fmt.Errorf("site %q: want [a-z0-9-]{1,64}", db.Site)
	case !namePattern.MatchString(db.Camera):
		return fmt.Errorf("camera %q: want [a-z0-9-]{1,64}", db.Camera)
	case db.Now == nil:
		return errors.New("no clock (Now)")
	case db.Logger == nil:
		return errors.New("no Logger")
	}
	return nil
}

// openBolt opens the file, creates what is missing and loads the tree size.
// db.mu must be held for writing.
func (db *DB) openBolt() error {
	b, err := bbolt.Open(db.path, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("open store %s: %w", db.path, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("open store %s: %w", db.path, err)
	}
	var size uint64
	err = b.Update(func(btx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := btx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := btx.Bucket(bucketMeta)
		if err := db.checkFormat(meta); err != nil {
			return err
		}
		size = getUint64(meta, metaSize)
		return checkLogEnd(btx.Bucket(bucketEvents), size)
	})
	if err != nil {
		b.Close()
		return fmt.Errorf("open store %s: %w", db.path, err)
	}
	db.bolt = b
	db.size.Store(size)
	return nil
}

const keyCheckText = "consentcam store master key"

// checkFormat stamps a new file with the format version and a key check
// value, and refuses a file of another version or another master key.
func (db *DB) checkFormat(meta *bbolt.Bucket) error {
	v := meta.Get(metaVersion)
	if v == nil {
		if err := meta.Put(metaVersion, []byte{formatVersion}); err != nil {
			return err
		}
		return meta.Put(metaKeyCheck, db.master.Seal(nil, nil, []byte(keyCheckText), metaKeyCheck))
	}
	if len(v) != 1 || v[0] != formatVersion {
		return fmt.Errorf("format version %v, this program reads %d", v, formatVersion)
	}
	if _, err := db.master.Open(nil, nil, meta.Get(metaKeyCheck), metaKeyCheck); err != nil {
		return errors.New("the master key is not the one this store was created with")
	}
	return nil
}

// checkLogEnd makes sure the events bucket ends where the tree does.
func checkLogEnd(events *bbolt.Bucket, size uint64) error {
	k, _ := events.Cursor().Last()
	switch {
	case size == 0 && k == nil:
		return nil
	case size == 0 || k == nil || decodeUint64(k) != size-1:
		return fmt.Errorf("audit log corrupt: tree size %d, last event key %x", size, k)
	}
	return nil
}

// Close closes the file. It waits for transactions in progress.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.bolt == nil {
		return nil
	}
	err := db.bolt.Close()
	db.bolt = nil
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Update runs fn in a read-write transaction: everything fn does, state
// changes and the audit events appended, commits together or not at all
// (fn returning an error rolls it back, and that error is returned). fn must
// not call methods of db. Once the transaction has committed, and before
// Update returns, the subscribers hear of the events appended in it.
func (db *DB) Update(fn func(tx *Tx) error) error {
	return db.run(true, fn)
}

// Subscribe has fn called with the events of every committed transaction
// that appended any, in commit order (so in seq order), from the goroutine
// that committed it. fn must return quickly, must not change the events and
// must not use db: it runs while the transaction's Update has not returned.
func (db *DB) Subscribe(fn func(events []Event)) {
	db.subsMu.Lock()
	defer db.subsMu.Unlock()
	db.subs = append(db.subs, fn)
}

// committed tells the subscribers about the events of a committed
// transaction.
func (db *DB) committed(events []Event) {
	db.subsMu.Lock()
	subs := db.subs
	db.subsMu.Unlock()
	for _, fn := range subs {
		fn(events)
	}
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(tx *Tx) error) error {
	return db.run(false, fn)
}

func (db *DB) run(writable bool, fn func(tx *Tx) error) error {
	return db.boltTx(writable, func(btx *bbolt.Tx) error {
		tx := &Tx{db: db, tx: btx}
		defer tx.wipe()
		return fn(tx)
	})
}

// boltTx runs fn in a bbolt transaction under the read lock of db.mu.
func (db *DB) boltTx(writable bool, fn func(*bbolt.Tx) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.bolt == nil {
		return ErrClosed
	}
	if writable {
		db.writeMu.Lock()
		defer db.writeMu.Unlock()
		return db.bolt.Update(fn)
	}
	return db.bolt.View(fn)
}

// Tx is a transaction of Update or View. It must not be used after fn
// returns.
type Tx struct {
	db       *DB
	tx       *bbolt.Tx
	dataKeys map[string][]byte // unwrapped data keys, wiped when fn returns
	tree     *compact.Range    // the log as it stands in the transaction, loaded on first use
	appended []Event           // the events appended, for the subscribers once it commits
}

func (tx *Tx) bucket(name []byte) *bbolt.Bucket { return tx.tx.Bucket(name) }

// wipe clears the data keys unwrapped during the transaction.
func (tx *Tx) wipe() {
	for _, k := range tx.dataKeys {
		clear(k)
	}
}

// RecordCount is the number of records stored.
func (db *DB) RecordCount() (int, error) { return db.counter(metaRecords) }

// counter reads a counter of the meta bucket.
func (db *DB) counter(key []byte) (int, error) {
	var n uint64
	err := db.boltTx(false, func(btx *bbolt.Tx) error {
		n = getUint64(btx.Bucket(bucketMeta), key)
		return nil
	})
	return int(n), err
}

// CompactStats are the file's sizes in bytes before and after a compaction.
type CompactStats struct {
	Before int64
	After  int64
}

// Compact rewrites the file into a fresh one that replaces it atomically, so
// that no page freed by an erasure survives in any file. Other users of the
// DB wait meanwhile. The sizes it returns go into the store.compacted event.
func (db *DB) Compact() (CompactStats, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.bolt == nil {
		return CompactStats{}, ErrClosed
	}
	var stats CompactStats
	var err error
	if stats.Before, err = fileSize(db.path); err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}
	tmp := db.compactPath()
	if err := copyCompact(tmp, db.bolt); err != nil {
		os.Remove(tmp)
		return stats, fmt.Errorf("compact: %w", err)
	}
	if err := db.replaceWith(tmp); err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}
	if stats.After, err = fileSize(db.path); err != nil {
		return stats, fmt.Errorf("compact: %w", err)
	}
	db.Logger.Info("store compacted", logKeyBefore, stats.Before, logKeyAfter, stats.After)
	return stats, nil
}

// replaceWith closes the file, renames tmp over it and reopens it. Whatever
// fails, the DB is reopened on the file then in place. db.mu must be held for
// writing.
func (db *DB) replaceWith(tmp string) error {
	err := db.bolt.Close()
	db.bolt = nil
	if err == nil {
		err = os.Rename(tmp, db.path)
	}
	if err != nil {
		os.Remove(tmp)
	} else {
		err = syncDir(filepath.Dir(db.path))
	}
	return errors.Join(err, db.openBolt())
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (db *DB) compactPath() string { return db.path + ".compact" }

// compactTxSize bounds the memory of one transaction of the copy.
const compactTxSize = 16 << 20

// copyCompact copies every bucket of src into a new file at path and fsyncs it.
func copyCompact(path string, src *bbolt.DB) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return err
	}
	if err := bbolt.Compact(dst, src, compactTxSize); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
