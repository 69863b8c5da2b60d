package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

// Record is one saved face capture, without its image.
type Record struct {
	ID         string    `json:"id"`
	Visit      string    `json:"visit"`
	Subject    string    `json:"subject"`
	Camera     string    `json:"camera"`
	CapturedAt time.Time `json:"captured_at"`
	Box        Box       `json:"box"`      // the face in the frame
	Detector   string    `json:"detector"` // yunet, cascade
	Score      float64   `json:"score"`
	Notice     string    `json:"notice"`   // hash of the notice the visitor was shown
	JTI        string    `json:"jti"`      // id of the consent token
	Purposes   []Tag     `json:"purposes"` // purposes consented to, each with its expiry
}

// Box is a rectangle in pixels.
type Box struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Tag is a purpose a record may be used for, until Expires.
type Tag struct {
	Purpose string    `json:"purpose"`
	Expires time.Time `json:"expires"`
}

// tag returns the record's tag for purpose.
func (r *Record) tag(purpose string) (Tag, bool) {
	i := slices.IndexFunc(r.Purposes, func(t Tag) bool { return t.Purpose == purpose })
	if i < 0 {
		return Tag{}, false
	}
	return r.Purposes[i], true
}

// Limits on record fields, in bytes.
const (
	idMaxLen   = 64  // record id
	nameMaxLen = 256 // visit, subject, jti
	wordMaxLen = 128 // camera, detector, notice hash, purpose
	maxTags    = 64
)

// validate checks what PutRecord stores and what decodeRecord returns.
func (r *Record) validate() error {
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"id", r.ID, idMaxLen},
		{"visit", r.Visit, nameMaxLen},
		{"subject", r.Subject, nameMaxLen},
		{"camera", r.Camera, wordMaxLen},
		{"detector", r.Detector, wordMaxLen},
		{"notice", r.Notice, wordMaxLen},
		{"jti", r.JTI, nameMaxLen},
	} {
		if err := checkString(f.name, f.value, f.max); err != nil {
			return err
		}
	}
	if err := checkTime("captured_at", r.CapturedAt); err != nil {
		return err
	}
	if b := r.Box; b.X < 0 || b.Y < 0 || b.W <= 0 || b.H <= 0 {
		return fmt.Errorf("box %+v: want x, y >= 0 and w, h > 0", b)
	}
	if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) {
		return fmt.Errorf("score %v: want a finite number", r.Score)
	}
	if len(r.Purposes) == 0 || len(r.Purposes) > maxTags {
		return fmt.Errorf("%d purpose tags: want 1 to %d", len(r.Purposes), maxTags)
	}
	for i, t := range r.Purposes {
		if err := checkString("purpose", t.Purpose, wordMaxLen); err != nil {
			return err
		}
		if err := checkTime("purpose "+t.Purpose+" expiry", t.Expires); err != nil {
			return err
		}
		if !t.Expires.After(r.CapturedAt) {
			return fmt.Errorf("purpose %s expires at %v, not after capture at %v", t.Purpose, t.Expires, r.CapturedAt)
		}
		if slices.ContainsFunc(r.Purposes[:i], func(u Tag) bool { return u.Purpose == t.Purpose }) {
			return fmt.Errorf("purpose %s tagged twice", t.Purpose)
		}
	}
	return nil
}

func checkString(name, v string, max int) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is empty", name)
	case len(v) > max:
		return fmt.Errorf("%s is %d bytes, at most %d allowed", name, len(v), max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", name)
	}
	return nil
}

// checkTime accepts the times a key of nanoseconds since 1970 holds.
func checkTime(name string, t time.Time) error {
	if t.Before(minKeyTime) || t.After(maxKeyTime) {
		return fmt.Errorf("%s %v: out of range", name, t)
	}
	return nil
}

// Record encoding, version 1: a version byte, then the fields in the order of
// the struct: strings as uvarint length and bytes, integers as varints, times
// as varint nanoseconds since 1970, the score as 8 bytes of IEEE 754.
const recordVersion = 1

func encodeRecord(r *Record) []byte {
	b := []byte{recordVersion}
	b = appendString(b, r.ID)
	b = appendString(b, r.Visit)
	b = appendString(b, r.Subject)
	b = appendString(b, r.Camera)
	b = binary.AppendVarint(b, r.CapturedAt.UnixNano())
	for _, v := range []int{r.Box.X, r.Box.Y, r.Box.W, r.Box.H} {
		b = binary.AppendVarint(b, int64(v))
	}
	b = appendString(b, r.Detector)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Score))
	b = appendString(b, r.Notice)
	b = appendString(b, r.JTI)
	b = binary.AppendUvarint(b, uint64(len(r.Purposes)))
	for _, t := range r.Purposes {
		b = appendString(b, t.Purpose)
		b = binary.AppendVarint(b, t.Expires.UnixNano())
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errTruncated = errors.New("truncated")

// decodeRecord decodes and validates a stored record. It copies what it
// keeps, so b may be memory of a transaction.
func decodeRecord(b []byte) (*Record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, fmt.Errorf("decode record: unknown version")
	}
	d := decoder{b: b[1:]}
	r := &Record{
		ID:      d.string(),
		Visit:   d.string(),
		Subject: d.string(),
		Camera:  d.string(),
	}
	r.CapturedAt = d.time()
	r.Box = Box{X: d.int(), Y: d.int(), W: d.int(), H: d.int()}
	r.Detector = d.string()
	r.Score = math.Float64frombits(d.uint64())
	r.Notice = d.string()
	r.JTI = d.string()
	n := d.uvarint()
	if n > maxTags {
		return nil, fmt.Errorf("decode record: %d tags", n)
	}
	for range n {
		r.Purposes = append(r.Purposes, Tag{Purpose: d.string(), Expires: d.time()})
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode record: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode record: %d trailing bytes", len(d.b))
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}

// decoder reads the record encoding; after the first error every read
// returns a zero value and err stays set.
type decoder struct {
	b   []byte
	err error
}

// take returns the next n bytes, nil after an error.
func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// decodeVarint reads a varint with read (binary.Uvarint or binary.Varint).
func decodeVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 { return decodeVarint(d, binary.Uvarint) }

func (d *decoder) int() int {
	v := decodeVarint(d, binary.Varint)
	if int64(int(v)) != v {
		d.err = fmt.Errorf("integer %d out of range", v)
		return 0
	}
	return int(v)
}

func (d *decoder) time() time.Time { return time.Unix(0, decodeVarint(d, binary.Varint)).UTC() }

func (d *decoder) uint64() uint64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (d *decoder) string() string { return string(d.take(d.uvarint())) }
