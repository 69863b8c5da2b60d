package store

import (
	"bytes"
	"errors"
	"os"

	"go.etcd.io/bbolt"
)

// fileImage is the content of a bbolt file as of a committed transaction.
type fileImage struct {
	data []byte
	txid int // the transaction it shows
}

// readImage reads a whole bbolt file beside its users. If a transaction
// commits meanwhile, the image shows neither state; wipeFreePages then
// does not use it.
func readImage(b *bbolt.DB) (*fileImage, error) {
	tx, err := b.Begin(false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	data, err := os.ReadFile(b.Path())
	if err != nil {
		return nil, err
	}
	return &fileImage{data: data, txid: tx.ID()}, nil
}

// wipeFreePages overwrites with zeros, in place, the freed pages of a bbolt
// file that are not all zeros yet: bbolt never overwrites a page it frees
// until it reuses it. No transaction of b may be open, so that every page
// freed by a committed transaction is free for good. img, when not nil and
// no transaction has committed since it was read, tells which pages are
// zeros already; otherwise the free pages are read one by one. It returns
// the bytes written and the file they were written through, open for the
// caller to sync and close (nil when nothing was written).
func wipeFreePages(b *bbolt.DB, img *fileImage) (int64, *os.File, error) {
	// A write transaction first releases the pages freed by the
	// transactions before it; it allocates nothing and is rolled back.
	tx, err := b.Begin(true)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	if img != nil && tx.ID() != img.txid+1 {
		img = nil // something committed since
	}
	size := b.Info().PageSize
	f, err := os.OpenFile(b.Path(), os.O_RDWR, 0)
	if err != nil {
		return 0, nil, err
	}
	page := make([]byte, size)
	zeros := make([]byte, size)
	var written int64
	for id := 2; ; id++ {
		info, err := tx.Page(id)
		if err != nil {
			f.Close()
			return 0, nil, err
		}
		if info == nil {
			break // past the last page in use
		}
		if info.Type != "free" {
			continue
		}
		off := int64(id) * int64(size)
		if img != nil && off+int64(size) <= int64(len(img.data)) {
			page = img.data[off : off+int64(size)]
		} else if _, err := f.ReadAt(page, off); err != nil {
			f.Close()
			return 0, nil, err
		}
		if bytes.Equal(page, zeros) {
			continue
		}
		if _, err := f.WriteAt(zeros, off); err != nil {
			f.Close()
			return 0, nil, err
		}
		written += int64(size)
	}
	if written == 0 {
		return 0, nil, f.Close()
	}
	return written, f, nil
}

// syncClose syncs and closes a file wipeFreePages wrote through, if any.
func syncClose(f *os.File) error {
	if f == nil {
		return nil
	}
	err := f.Sync()
	return errors.Join(err, f.Close())
}
