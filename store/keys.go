package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"

	"go.etcd.io/bbolt"
)

// NewID returns a new random record id: 32 lowercase hex digits.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b[:])
}

// newAEAD returns AES-256-GCM with a random nonce prepended to each sealed
// message.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func decodeUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func getUint64(b *bbolt.Bucket, key []byte) uint64 { return decodeUint64(b.Get(key)) }

// addUint64 adds delta to the counter at key.
func addUint64(b *bbolt.Bucket, key []byte, delta int) error {
	return b.Put(key, encodeUint64(getUint64(b, key)+uint64(delta)))
}

// Times in keys are big-endian nanoseconds since 1970, clamped to what an
// int64 of nanoseconds holds, so that byte order is time order.
var (
	minKeyTime = time.Unix(0, 0)
	maxKeyTime = time.Unix(0, 1<<63-1)
)

func timeKey(t time.Time) []byte {
	switch {
	case t.Before(minKeyTime):
		t = minKeyTime
	case t.After(maxKeyTime):
		t = maxKeyTime
	}
	return encodeUint64(uint64(t.UnixNano()))
}

// timeIDKey is the key of a time index: time then id.
func timeIDKey(t time.Time, id string) []byte {
	return append(timeKey(t), id...)
}

// prefix is the key prefix of an index by subject or visit: the name's length
// (two bytes) then the name, so that no name is a prefix of another's keys.
func prefix(name string) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(name)+idMaxLen), uint16(len(name)))
	return append(b, name...)
}

func nameIDKey(name, id string) []byte { return append(prefix(name), id...) }

// scanPrefix returns the ids under name in an index by subject or visit.
func scanPrefix(b *bbolt.Bucket, name string) []string {
	p := prefix(name)
	var ids []string
	c := b.Cursor()
	for k, _ := c.Seek(p); idUnder(k, p); k, _ = c.Next() {
		ids = append(ids, string(k[len(p):]))
	}
	return ids
}

// idUnder reports whether k is the key of an id under prefix p.
func idUnder(k, p []byte) bool { return len(k) > len(p) && bytes.HasPrefix(k, p) }

// has reports whether key is in b. (Get cannot tell a missing key from one
// with an empty value, which is what index entries have.)
func has(b *bbolt.Bucket, key []byte) bool {
	k, _ := b.Cursor().Seek(key)
	return k != nil && bytes.Equal(k, key)
}
