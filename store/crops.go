package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A record's crop is sealed (AES-256-GCM under the record's own data key,
// with the record id as additional data) and stored in chunks in the crops
// bucket, keyed by the record's capture time, its id and the chunk number.
// Captures come in time order, so their chunks are appended at the end of
// the tree and expire from its start; and a chunk is sized so that two of
// them fill a page. The file then holds the crops with a few percent of
// overhead, where a sealed crop in one value would take whole pages (six
// 4 KiB pages, 24 KiB, for a 20 KiB crop).

// Sizes of bbolt's page layout.
const (
	pageHeaderSize  = 16
	leafElementSize = 16
)

// maxChunks bounds the number of chunks of a crop (a chunk number is two
// bytes): about 120 MiB.
const maxChunks = 1 << 16

// cropPrefix is the key prefix of a record's chunks: capture time, then the
// id's length and the id.
func cropPrefix(r *Record) []byte {
	return append(timeKey(r.CapturedAt), prefix(r.ID)...)
}

func chunkKey(p []byte, i int) []byte {
	return binary.BigEndian.AppendUint16(append(make([]byte, 0, len(p)+2), p...), uint16(i))
}

// isChunk reports whether k is the key of a chunk under prefix p.
func isChunk(k, p []byte) bool { return len(k) == len(p)+2 && bytes.HasPrefix(k, p) }

// chunkSize is how many bytes of a sealed crop go in a chunk whose key is
// keyLen bytes long, so that two chunks, with their element headers, fill a
// page of the given size.
func chunkSize(pageSize, keyLen int) int {
	return (pageSize-pageHeaderSize)/2 - leafElementSize - keyLen
}

// putCrop stores a record's sealed crop in chunks.
func (tx *Tx) putCrop(r *Record, sealed []byte) error {
	p := cropPrefix(r)
	n := chunkSize(tx.tx.DB().Info().PageSize, len(p)+2)
	chunks := (len(sealed) + n - 1) / n
	if chunks > maxChunks {
		return fmt.Errorf("image of %d bytes: too large", len(sealed))
	}
	b := tx.bucket(bucketCrops)
	for i := range chunks {
		if err := b.Put(chunkKey(p, i), sealed[i*n:min(len(sealed), (i+1)*n)]); err != nil {
			return err
		}
	}
	return nil
}

// sealedCrop returns a record's sealed crop, put together from its chunks;
// nil if it has none.
func (tx *Tx) sealedCrop(r *Record) []byte {
	p := cropPrefix(r)
	var sealed []byte
	c := tx.bucket(bucketCrops).Cursor()
	for k, v := c.Seek(p); isChunk(k, p); k, v = c.Next() {
		sealed = append(sealed, v...)
	}
	return sealed
}

// chunkKeys returns the keys of a record's chunks.
func (tx *Tx) chunkKeys(r *Record) [][]byte {
	p := cropPrefix(r)
	var keys [][]byte
	c := tx.bucket(bucketCrops).Cursor()
	for k, _ := c.Seek(p); isChunk(k, p); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// deleteCrop deletes a record's chunks.
func (tx *Tx) deleteCrop(r *Record) error {
	b := tx.bucket(bucketCrops)
	for _, k := range tx.chunkKeys(r) {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
