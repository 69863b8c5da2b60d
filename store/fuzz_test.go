package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/consentcam/consentcam/store"
)

// FuzzDecodeRecord feeds the decoder of stored records arbitrary bytes (seeds
// in testdata/fuzz/FuzzDecodeRecord). It must never panic, and what it
// accepts must be a valid record that survives another encoding unchanged.
func FuzzDecodeRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := store.DecodeRecord(b)
		if err != nil {
			if r != nil {
				t.Fatal("a record returned with an error")
			}
			return
		}
		again, err := store.DecodeRecord(store.EncodeRecord(r))
		if err != nil {
			t.Fatalf("a decoded record does not decode once encoded again: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("record changed by encoding: %+v, then %+v", r, again)
		}
	})
}

// FuzzVerifyLog feeds VerifyLog arbitrary logs and checkpoints, seeded with a
// real log and its checkpoint. It must never panic; it refuses with a
// *LogError or accepts with a report that adds up.
func FuzzVerifyLog(f *testing.F) {
	l := newTestLog(f)
	f.Add(l.join(nil), l.whole)
	f.Add(l.join(nil), l.latest)
	f.Add(l.join(nil), []byte{})
	f.Add(l.join(func(lines [][]byte) [][]byte { return lines[:3] }), l.whole)
	f.Add([]byte("{}\n"), []byte("consentcam/a/b\n0\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, log, checkpoint []byte) {
		if len(checkpoint) == 0 {
			checkpoint = nil
		}
		r, err := store.VerifyLog(bytes.NewReader(log), checkpoint, testDevicePub)
		if err != nil {
			var le *store.LogError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LogError", err)
			}
			return
		}
		if r.Events > 0 && r.LastSeq != r.Events-1 || r.Uncovered > r.Events || len(r.Root) != 32 {
			t.Fatalf("inconsistent report %+v", r)
		}
		if checkpoint != nil && len(r.Checkpoints) == 0 {
			t.Fatal("a checkpoint was given and the report lists none verified")
		}
	})
}

// FuzzDecodeBlock feeds the decoder of stored blocks of events arbitrary
// bytes, seeded with real blocks. It must never panic, and what it accepts
// must be a block of store.EventBlock events that survives another encoding
// unchanged.
func FuzzDecodeBlock(f *testing.F) {
	var evs [][]byte
	for i := range store.EventBlock {
		evs = append(evs, fmt.Appendf(nil, `{"seq":%d,"type":"window.opened"}`, i))
	}
	block, err := store.EncodeBlock(evs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(block)
	f.Add(block[:len(block)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := store.DecodeBlock(b)
		if err != nil {
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(evs) != store.EventBlock {
			t.Fatalf("a block of %d events accepted", len(evs))
		}
		again, err := store.EncodeBlock(evs)
		if err != nil {
			t.Fatal(err)
		}
		evs2, err := store.DecodeBlock(again)
		if err != nil || !slices.EqualFunc(evs, evs2, bytes.Equal) {
			t.Fatalf("block changed by encoding again (%v)", err)
		}
	})
}
