package store_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// testLog is a log of 15 events with checkpoint events at seq 5 and 11, and
// two external checkpoints: the latest stored (size 11) and one of the whole
// log (size 15).
type testLog struct {
	lines     [][]byte
	latest    []byte // size 11
	whole     []byte // size 15
	wholeRoot []byte
}

func newTestLog(tb testing.TB) *testLog {
	tb.Helper()
	db, _ := MustOpenDB(tb)
	MustAppend(tb, db, 5, store.EventWindowOpened)   // 0-4
	MustCheckpoint(tb, db)                           // 5
	MustAppend(tb, db, 5, store.EventWindowClosed)   // 6-10
	latest := MustCheckpoint(tb, db)                 // 11
	MustAppend(tb, db, 3, store.EventCaptureSkipped) // 12-14
	l := &testLog{latest: latest.Note}
	l.lines = bytes.Split(bytes.TrimSuffix(MustLog(tb, db), []byte("\n")), []byte("\n"))
	l.wholeRoot = MustRoot(tb, db, 15)
	l.whole = signCheckpoint(tb, testDeviceKey, testOrigin, 15, l.wholeRoot)
	return l
}

// signCheckpoint makes a checkpoint note without a store.
func signCheckpoint(tb testing.TB, key ed25519.PrivateKey, origin string, size uint64, root []byte) []byte {
	tb.Helper()
	s, err := store.NewCheckpointSigner(origin, key)
	if err != nil {
		tb.Fatal(err)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
	n, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// join makes JSON Lines of lines, with edit applied to a copy of them.
func (l *testLog) join(edit func(lines [][]byte) [][]byte) []byte {
	lines := make([][]byte, len(l.lines))
	for i, b := range l.lines {
		lines[i] = bytes.Clone(b)
	}
	if edit != nil {
		lines = edit(lines)
	}
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

func TestVerifyLog(t *testing.T) {
	l := newTestLog(t)

	t.Run("Good", func(t *testing.T) {
		for _, tc := range []struct {
			name            string
			checkpoint      []byte
			wantCheckpoints []uint64
			wantUncovered   uint64
		}{
			{"EmbeddedOnly", nil, []uint64{5, 11}, 4},
			{"WithLatest", l.latest, []uint64{5, 11, 11}, 4},
			{"WithWhole", l.whole, []uint64{5, 11, 15}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, err := store.VerifyLog(bytes.NewReader(l.join(nil)), tc.checkpoint, testDevicePub)
				if err != nil {
					t.Fatal(err)
				}
				if r.Events != 15 || r.LastSeq != 14 || !bytes.Equal(r.Root, l.wholeRoot) ||
					!slices.Equal(r.Checkpoints, tc.wantCheckpoints) || r.Uncovered != tc.wantUncovered {
					t.Errorf("report %+v, want 15 events, last 14, checkpoints %v, %d uncovered",
						r, tc.wantCheckpoints, tc.wantUncovered)
				}
			})
		}
		t.Run("CRLF", func(t *testing.T) {
			crlf := bytes.ReplaceAll(l.join(nil), []byte("\n"), []byte("\r\n"))
			if _, err := store.VerifyLog(bytes.NewReader(crlf), l.whole, testDevicePub); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("NoFinalNewline", func(t *testing.T) {
			if _, err := store.VerifyLog(bytes.NewReader(bytes.TrimSuffix(l.join(nil), []byte("\n"))), l.whole, testDevicePub); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("Empty", func(t *testing.T) {
			r, err := store.VerifyLog(strings.NewReader(""), nil, testDevicePub)
			if err != nil || r.Events != 0 || !bytes.Equal(r.Root, mth(nil)) {
				t.Fatalf("VerifyLog of nothing: %+v, %v", r, err)
			}
		})
		t.Run("UnsignedTailAltered", func(t *testing.T) {
			// Events after the last checkpoint are signed by nothing: the log
			// verifies, and the report says how many are unsigned.
			altered := l.join(func(lines [][]byte) [][]byte {
				lines[13] = bytes.Replace(lines[13], []byte("event 1"), []byte("event X"), 1)
				return lines
			})
			r, err := store.VerifyLog(bytes.NewReader(altered), nil, testDevicePub)
			if err != nil || r.Uncovered != 4 {
				t.Fatalf("report %+v, %v; want 4 uncovered", r, err)
			}
		})
	})

	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	for _, tc := range []struct {
		name       string
		edit       func(lines [][]byte) [][]byte
		checkpoint []byte
		pub        ed25519.PublicKey
		wantKind   error
		wantLine   int
		wantSeq    uint64
	}{
		{
			name: "AlteredEvent",
			edit: func(lines [][]byte) [][]byte {
				lines[2] = bytes.Replace(lines[2], []byte(`"event 2"`), []byte(`"event 7"`), 1)
				return lines
			},
			wantKind: store.ErrLogRoot, wantLine: 6, wantSeq: 5, // the checkpoint event after it
		},
		{
			name: "AlteredEventAfterEmbeddedCheckpoints",
			edit: func(lines [][]byte) [][]byte {
				lines[13] = bytes.Replace(lines[13], []byte(`"event 1"`), []byte(`"event 7"`), 1)
				return lines
			},
			checkpoint: l.whole,
			wantKind:   store.ErrLogRoot, wantLine: 0, wantSeq: 15,
		},
		{
			name:     "RemovedEvent",
			edit:     func(lines [][]byte) [][]byte { return slices.Delete(lines, 2, 3) },
			wantKind: store.ErrLogSequence, wantLine: 3, wantSeq: 2,
		},
		{
			name:     "DuplicatedEvent",
			edit:     func(lines [][]byte) [][]byte { return slices.Insert(lines, 3, lines[2]) },
			wantKind: store.ErrLogSequence, wantLine: 4, wantSeq: 3,
		},
		{
			name:     "SwappedEvents",
			edit:     func(lines [][]byte) [][]byte { lines[7], lines[8] = lines[8], lines[7]; return lines },
			wantKind: store.ErrLogSequence, wantLine: 8, wantSeq: 7,
		},
		{
			name:       "TruncatedTail",
			edit:       func(lines [][]byte) [][]byte { return lines[:13] },
			checkpoint: l.whole,
			wantKind:   store.ErrLogTruncated, wantLine: 0, wantSeq: 13,
		},
		{
			name:       "TruncatedBeforeLatest",
			edit:       func(lines [][]byte) [][]byte { return lines[:9] },
			checkpoint: l.latest,
			wantKind:   store.ErrLogTruncated, wantLine: 0, wantSeq: 9,
		},
		{
			name:     "NotJSON",
			edit:     func(lines [][]byte) [][]byte { lines[4] = []byte(`{"seq":4,`); return lines },
			wantKind: store.ErrLogMalformed, wantLine: 5, wantSeq: 4,
		},
		{
			name: "NotAsWritten",
			edit: func(lines [][]byte) [][]byte {
				lines[4] = bytes.Replace(lines[4], []byte(`"seq":4,`), []byte(`"seq": 4,`), 1)
				return lines
			},
			wantKind: store.ErrLogMalformed, wantLine: 5, wantSeq: 4,
		},
		{
			name: "UnknownField",
			edit: func(lines [][]byte) [][]byte {
				lines[4] = bytes.Replace(lines[4], []byte(`}`), []byte(`,"image":"/9j/"}`), 1)
				return lines
			},
			wantKind: store.ErrLogMalformed, wantLine: 5, wantSeq: 4,
		},
		{
			name: "UnknownType",
			edit: func(lines [][]byte) [][]byte {
				lines[1] = bytes.Replace(lines[1], []byte(`"window.opened"`), []byte(`"window.peeked"`), 1)
				return lines
			},
			wantKind: store.ErrLogMalformed, wantLine: 2, wantSeq: 1,
		},
		{
			name: "OtherCamera",
			edit: func(lines [][]byte) [][]byte {
				lines[1] = bytes.Replace(lines[1], []byte(`"entrance-1"`), []byte(`"entrance-2"`), 1)
				return lines
			},
			wantKind: store.ErrLogMalformed, wantLine: 2, wantSeq: 1,
		},
		{
			name:     "BlankLine",
			edit:     func(lines [][]byte) [][]byte { return slices.Insert(lines, 1, []byte{}) },
			wantKind: store.ErrLogMalformed, wantLine: 2, wantSeq: 1,
		},
		{
			name:       "CheckpointOfOtherKey",
			checkpoint: signCheckpoint(t, otherKey, testOrigin, 15, l.wholeRoot),
			wantKind:   store.ErrLogCheckpoint, wantLine: 0,
		},
		{
			name:       "CheckpointOfOtherLog",
			checkpoint: signCheckpoint(t, testDeviceKey, store.Origin(testSite, "entrance-2"), 15, l.wholeRoot),
			wantKind:   store.ErrLogCheckpoint, wantLine: 0,
		},
		{
			name:       "CheckpointBodyAltered",
			checkpoint: bytes.Replace(l.whole, []byte("\n15\n"), []byte("\n14\n"), 1),
			wantKind:   store.ErrLogCheckpoint, wantLine: 0,
		},
		{
			name:       "CheckpointNotANote",
			checkpoint: []byte("hello"),
			wantKind:   store.ErrLogCheckpoint, wantLine: 0,
		},
		{
			name:     "EmbeddedCheckpointsOfOtherKey",
			pub:      otherKey.Public().(ed25519.PublicKey),
			wantKind: store.ErrLogCheckpoint, wantLine: 6, wantSeq: 5,
		},
		{
			name: "EmbeddedCheckpointMoved",
			edit: func(lines [][]byte) [][]byte {
				// The checkpoint event of size 5 replayed at seq 11.
				lines[11] = bytes.Replace(lines[5], []byte(`"seq":5,`), []byte(`"seq":11,`), 1)
				return lines
			},
			wantKind: store.ErrLogCheckpoint, wantLine: 12, wantSeq: 11,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := tc.pub
			if pub == nil {
				pub = testDevicePub
			}
			_, err := store.VerifyLog(bytes.NewReader(l.join(tc.edit)), tc.checkpoint, pub)
			t.Log(err)
			var le *store.LogError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LogError", err)
			}
			if !errors.Is(err, tc.wantKind) || le.Line != tc.wantLine || (tc.wantKind != store.ErrLogCheckpoint || tc.wantLine != 0) && le.Seq != tc.wantSeq {
				t.Errorf("err = %v (line %d, seq %d); want %v at line %d, seq %d", err, le.Line, le.Seq, tc.wantKind, tc.wantLine, tc.wantSeq)
			}
		})
	}

	t.Run("BadPublicKey", func(t *testing.T) {
		if _, err := store.VerifyLog(bytes.NewReader(l.join(nil)), nil, []byte("short")); err == nil {
			t.Fatal("accepted a short public key")
		}
	})
	t.Run("LineTooLong", func(t *testing.T) {
		long := append(l.join(nil), bytes.Repeat([]byte("x"), 2<<20)...)
		_, err := store.VerifyLog(bytes.NewReader(long), nil, testDevicePub)
		var le *store.LogError
		if !errors.As(err, &le) || !errors.Is(err, store.ErrLogMalformed) || le.Line != 16 {
			t.Fatalf("err = %v, want a malformed line 16", err)
		}
	})
}
