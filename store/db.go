package store

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// Bucket names of the store file. Index keys are built by the functions of
// keys.go; the key file has buckets of its own (keyfile.go).
var (
	bucketMeta      = []byte("meta")      // metaKey… → value
	bucketRecords   = []byte("records")   // record id → encoded Record
	bucketCrops     = []byte("crops")     // cropKey(record, chunk) → chunk of the sealed image (crops.go)
	bucketBySubject = []byte("bysubject") // prefix(subject) + id → nil
	bucketByVisit   = []byte("byvisit")   // prefix(visit) + id → nil
	bucketByExpiry  = []byte("byexpiry")  // time + id → nil, one per distinct tag expiry
	bucketEvents    = []byte("events")    // seq → event JSON (Merkle leaf), those not in a block yet (logstore.go)
	bucketBlocks    = []byte("blocks")    // seq → a compressed block of events from seq
	bucketNodes     = []byte("nodes")     // level + index → hash of a perfect subtree of 16 leaves or more
	bucketOutbox    = []byte("outbox")    // seq → nil, events not yet acknowledged
	bucketSpent     = []byte("spent")     // jti → time until which it is remembered
	bucketSpentExp  = []byte("spentexp")  // time + jti → nil
	bucketAwaiting  = []byte("awaiting")  // seq of consent.accepted → Awaiting JSON
	bucketReceipts  = []byte("receipts")  // revoke jti → signed receipt, while the jti is spent
	bucketEvidence  = []byte("evidence")  // nested buckets of evidence.go

	allBuckets = [][]byte{bucketMeta, bucketRecords, bucketCrops, bucketBlocks,
		bucketBySubject, bucketByVisit, bucketByExpiry, bucketEvents, bucketNodes,
		bucketOutbox, bucketSpent, bucketSpentExp, bucketAwaiting, bucketReceipts, bucketEvidence}

	// appendBuckets have keys that mostly grow (sequences and times): their
	// pages are filled before they split, not half-filled.
	appendBuckets = [][]byte{bucketCrops, bucketByExpiry, bucketEvents, bucketBlocks,
		bucketNodes, bucketOutbox, bucketSpentExp, bucketAwaiting}
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

// formatVersion is the format of the store file this code writes. Version 1
// (commit c2970df and before) kept per-subject data keys in the file; Open
// migrates it (migrate.go).
const formatVersion = 2

// pageSize is the page size of new files, fixed so that two chunks of a
// crop fill a page on every platform.
const pageSize = 4096

// allocSize is how much a file grows at a time (bbolt's default is 16 MB,
// which would be a tenth of a year's store).
const allocSize = 1 << 20

// Log attribute keys.
const (
	logKeyPath     = "path"
	logKeyBefore   = "before"
	logKeyAfter    = "after"
	logKeyCount    = "count"
	logKeyWiped    = "wiped_bytes"
	logKeyStalled  = "stalled"
	logKeyError    = "error"
	logKeyRecord   = "record"
	logKeyDuration = "duration"
)

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// DB is the box's store: the store file (records, sealed crops, audit log,
// outbox, spent token ids) and, beside it, the small key file of the
// records' data keys. Create it with NewDB, set the exported fields, then
// Open it.
type DB struct {
	// MasterKey (32 bytes) wraps the per-record data keys.
	MasterKey []byte
	// Site and Camera are written into every audit event.
	Site   string
	Camera string
	// Now is the clock of events, tag expiry checks and token id memory.
	Now    func() time.Time
	Logger *slog.Logger

	path string

	// mu is held for reading by every operation on the files and for
	// writing by Open, Close and the part of Compact that overwrites freed
	// pages of the key file.
	mu sync.RWMutex
	// writeMu serializes Update, which writes both files: a record's data
	// key commits before the record, and goes after the record goes; and
	// the subscribers hear of commits in commit order.
	writeMu sync.Mutex
	bolt    *bbolt.DB // the store file
	keys    *bbolt.DB // the key file
	master  cipher.AEAD
	size    atomic.Uint64 // committed tree size, for Size
	noSync  bool          // skip fsync (tests that build big stores)
	// hook, when set (by tests), is called between the steps of a write
	// that spans both files, with the name of the step just done.
	hook func(step string)

	subsMu sync.Mutex
	subs   []func([]Event)
}

// Steps of a write that spans both files, for the hook.
const (
	stepKeysCommitted = "keys-committed" // a capture's data keys are in the key file, its record is not yet
	stepRecordsGone   = "records-gone"   // an erasure has committed, its data keys are still in the key file
	stepKeysDeleted   = "keys-deleted"   // and deleted, their pages not yet overwritten
	stepPagesWiped    = "pages-wiped"    // Compact overwrote them, not yet synced
	stepMigrated      = "migrated"       // a migration's last transaction has committed, the file is not yet wiped
)

func (db *DB) step(name string) {
	if db.hook != nil {
		db.hook(name)
	}
}

// NewDB returns a DB for the store file at path with default Now and
// Logger. The key file is KeysPath, beside it.
func NewDB(path string) *DB {
	return &DB{
		path:   path,
		Now:    time.Now,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// Path is the store file's path.
func (db *DB) Path() string { return db.path }

// KeysPath is the key file's path: the store file's, with the extension
// .keys instead of .db (consentcam.db, consentcam.keys).
func (db *DB) KeysPath() string { return strings.TrimSuffix(db.path, ".db") + ".keys" }

// Open validates the fields, opens (or creates) both files, checks that the
// master key is the one they were created with, migrates a store of an
// older format, and finishes what a crash interrupted: a data key whose
// record never committed, or whose record was deleted, is removed and the
// key file's freed pages overwritten.
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
	err = guard(db.path, db.open)
	if err != nil {
		db.closeFiles()
		var d *DamageError
		if errors.As(err, &d) {
			return fmt.Errorf("open store: %w", err)
		}
		return fmt.Errorf("open store %s: %w", db.path, err)
	}
	return nil
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

// open opens both files and brings them to a consistent state of the
// current format. db.mu must be held for writing.
func (db *DB) open() error {
	// Damaged files are refused before anything is written to either.
	storeExists, storeRecords, err := db.precheck(db.path)
	if err != nil {
		return err
	}
	keysExist, _, err := db.precheck(db.KeysPath())
	if err != nil {
		return err
	}
	if storeExists && !keysExist && storeRecords > 0 {
		return &DamageError{db.KeysPath(), fmt.Sprintf("the key file is missing, and the store holds %d records: restore both files from one backup", storeRecords)}
	}
	version, err := db.openBolt()
	if err != nil {
		return err
	}
	if db.keys, err = db.openFile(db.KeysPath()); err != nil {
		return err
	}
	if err := db.keys.Update(db.initKeyFile); err != nil {
		return fmt.Errorf("key file %s: %w", db.KeysPath(), err)
	}
	if version == 1 {
		if err := db.migrate(); err != nil {
			return err
		}
	}
	if err := db.finishMigration(); err != nil {
		return err
	}
	_, missing, err := db.removeOrphanKeys()
	if err != nil {
		return err
	}
	if missing > 0 {
		db.Logger.Error("records without a data key: their crops cannot be read", logKeyCount, missing)
	}
	_, f, err := db.wipeKeyFile(nil)
	if err = errors.Join(err, syncClose(f)); err != nil {
		return err
	}
	return db.loadSize()
}

// openFile opens a bbolt file of the store, refusing one that is empty or
// cut short.
func (db *DB) openFile(path string) (*bbolt.DB, error) {
	b, err := db.boltOpen(path, false)
	if err != nil {
		return nil, err
	}
	b.AllocSize = allocSize
	return b, nil
}

// precheck reads an existing file of the store read-only, and refuses it
// when it is empty, not a store file, or cut short (its meta pages come
// first: no page beyond them is read before its size is known to hold them
// all), when a page reachable from its roots cannot be read (the bulk of
// crops and sealed blocks aside), or, for the store file, when its log
// fails verifyLog's check. It returns whether the file exists, and the
// number of records (of a store file of the current format). Nothing is
// written to a file before it passes.
func (db *DB) precheck(path string) (exists bool, records int, err error) {
	if exists, err = checkExisting(path); err != nil || !exists {
		return exists, 0, err
	}
	b, err := db.boltOpen(path, true)
	if err != nil {
		return true, 0, err
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	if err := checkSize(b); err != nil {
		return true, 0, err
	}
	err = b.View(func(btx *bbolt.Tx) error {
		// The bulk of a store, the crops and the sealed blocks of the log,
		// is read by Verify only: reading it at every start would take
		// seconds on a year's store (docs/RELIABILITY.md).
		if err := walk(path, btx, bucketCrops, bucketBlocks); err != nil {
			return err
		}
		meta := btx.Bucket(bucketMeta)
		if path != db.path || meta == nil {
			return nil
		}
		if v := meta.Get(metaVersion); len(v) != 1 || v[0] != formatVersion {
			return nil // an older format: checked once migrated
		}
		records = int(getUint64(meta, metaRecords))
		return db.verifyLog(btx)
	})
	return true, records, err
}

// boltOpen opens a bbolt file of the store.
func (db *DB) boltOpen(path string, readOnly bool) (*bbolt.DB, error) {
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, PageSize: pageSize, NoSync: db.noSync, ReadOnly: readOnly})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	case errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) || errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, &DamageError{path, "not a store file, or its meta pages are damaged: " + err.Error()}
	}
	return b, err
}

// openBolt opens the store file, creates what is missing, and returns its
// format version. db.mu must be held for writing.
func (db *DB) openBolt() (byte, error) {
	b, err := db.openFile(db.path)
	if err != nil {
		return 0, err
	}
	db.bolt = b
	var version byte
	err = b.Update(func(btx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := btx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		var err error
		version, err = db.checkFormat(btx.Bucket(bucketMeta), formatVersion, 1)
		return err
	})
	return version, err
}

// loadSize checks that the events bucket ends where the tree does and
// loads the tree size.
func (db *DB) loadSize() error {
	return db.bolt.View(func(btx *bbolt.Tx) error {
		size := getUint64(btx.Bucket(bucketMeta), metaSize)
		if err := checkLogEnd(btx, size); err != nil {
			return err
		}
		db.size.Store(size)
		return nil
	})
}

const keyCheckText = "consentcam store master key"

// checkFormat stamps a new file with version and a key check value, and
// refuses a file of a version outside [oldest, version] or of another master
// key. It returns the file's version.
func (db *DB) checkFormat(meta *bbolt.Bucket, version, oldest byte) (byte, error) {
	v := meta.Get(metaVersion)
	if v == nil {
		if err := meta.Put(metaVersion, []byte{version}); err != nil {
			return 0, err
		}
		return version, meta.Put(metaKeyCheck, db.master.Seal(nil, nil, []byte(keyCheckText), metaKeyCheck))
	}
	if len(v) != 1 || v[0] < oldest || v[0] > version {
		return 0, fmt.Errorf("format version %v, this program reads %d to %d", v, oldest, version)
	}
	if _, err := db.master.Open(nil, nil, meta.Get(metaKeyCheck), metaKeyCheck); err != nil {
		return 0, errors.New("the master key is not the one this store was created with")
	}
	return v[0], nil
}

// Close closes the files. It waits for transactions in progress.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.bolt == nil {
		return nil
	}
	if err := db.closeFiles(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// closeFiles closes what is open. db.mu must be held for writing.
func (db *DB) closeFiles() error {
	var errs []error
	for _, b := range []**bbolt.DB{&db.keys, &db.bolt} {
		if *b != nil {
			errs = append(errs, (*b).Close())
			*b = nil
		}
	}
	return errors.Join(errs...)
}

// Update runs fn in a read-write transaction: everything fn does, state
// changes and the audit events appended, commits together or not at all
// (fn returning an error rolls it back, and that error is returned). fn must
// not call methods of db. A transaction that changed nothing writes nothing.
// Once the transaction has committed, and before Update returns, the
// subscribers hear of the events appended in it.
//
// The data keys of records put in fn are committed to the key file just
// before the store file commits, so a record never exists without its key;
// those of records deleted in fn are deleted from the key file as soon as it
// has committed (Compact then overwrites the pages that held them).
func (db *DB) Update(fn func(tx *Tx) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.bolt == nil {
		return ErrClosed
	}
	return db.update(fn)
}

// errNoChange rolls back a transaction that changed nothing.
var errNoChange = errors.New("no change")

// update is Update with db.mu held.
func (db *DB) update(fn func(tx *Tx) error) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx := &Tx{db: db}
	defer tx.wipe()
	err := db.bolt.Update(func(btx *bbolt.Tx) error {
		tx.tx = btx
		for _, name := range appendBuckets {
			btx.Bucket(name).FillPercent = 1
		}
		if err := fn(tx); err != nil {
			return err
		}
		// bbolt materializes a node for every page it changes: none means
		// nothing to commit, and a commit would still write two pages.
		if stats := btx.Stats(); stats.GetNodeCount() == 0 {
			return errNoChange
		}
		if len(tx.keys.added) == 0 {
			return nil
		}
		if err := tx.commitKeys(); err != nil {
			return err
		}
		db.step(stepKeysCommitted)
		return nil
	})
	switch {
	case errors.Is(err, errNoChange):
		return nil
	case err != nil:
		tx.forgetKeys()
		return err
	}
	if len(tx.keys.deleted) > 0 {
		db.step(stepRecordsGone)
		db.deleteKeys(tx.keys.deleted, "of deleted records")
		db.step(stepKeysDeleted)
	}
	return nil
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
	return db.boltTx(false, func(btx *bbolt.Tx) error {
		tx := &Tx{db: db, tx: btx}
		defer tx.wipe()
		return fn(tx)
	})
}

// boltTx runs fn in a bbolt transaction of the store file under the read
// lock of db.mu.
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
	keys     keyTx          // what the transaction does with the key file
	tree     *compact.Range // the log as it stands in the transaction, loaded on first use
	appended []Event        // the events appended, for the subscribers once it commits
}

func (tx *Tx) bucket(name []byte) *bbolt.Bucket { return tx.tx.Bucket(name) }

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

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (db *DB) compactPath() string { return db.path + ".compact" }

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
