package store_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/store"
)

const evidenceRetention = 3 * 365 * 24 * time.Hour

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fakeToken stands for a compact token: the store keeps bytes and never
// parses them.
func fakeToken(jti string) string {
	return "eyJhbGciOiJFZERTQSJ9." + jti + ".c2lnbmF0dXJl"
}

// referencing is the event that references a piece of evidence, as SPEC
// says the agent writes it.
func referencing(kind, jti, token string) *store.Event {
	if kind == store.EvidenceRevoke {
		return &store.Event{Type: store.EventConsentRevoked, Subject: "subj-a", Reason: "withdrawn", Actor: "ops-1",
			Detail: map[string]any{"request": jti, "token_sha256": sha256Hex(token), "erased": 0}}
	}
	return &store.Event{Type: store.EventConsentAccepted, Visit: "visit-" + jti, Subject: "subj-a",
		Purposes: []string{purposeChannel}, Actor: "kiosk-1",
		Detail: map[string]any{"jti": jti, "token_sha256": sha256Hex(token), "minor": false, "guardian": false}}
}

// mustKeep appends the referencing event and keeps the evidence in one
// transaction, as the agent does, and returns the evidence kept.
func mustKeep(tb testing.TB, db *store.DB, clock *Clock, kind, jti string) store.Evidence {
	tb.Helper()
	token := fakeToken(jti)
	var e store.Evidence
	MustUpdate(tb, db, func(tx *store.Tx) error {
		ev := referencing(kind, jti, token)
		if err := tx.Append(ev); err != nil {
			return err
		}
		e = store.Evidence{Seq: ev.Seq, Kind: kind, JTI: jti, Token: token, Expires: clock.Now().Add(evidenceRetention)}
		return tx.PutEvidence(e)
	})
	return e
}

func TestEvidenceKeptAndRead(t *testing.T) {
	db, clock := MustOpenDB(t)
	MustAppend(t, db, 2, store.EventSourceFailed)
	var kept []store.Evidence
	for i := range 5 {
		kind := store.EvidenceConsent
		if i == 3 {
			kind = store.EvidenceRevoke
		}
		kept = append(kept, mustKeep(t, db, clock, kind, fmt.Sprintf("jti-%d", i)))
		clock.Advance(time.Minute)
	}
	db = MustReopen(t, db, clock)

	t.Run("by seq range, in seq order", func(t *testing.T) {
		all, err := db.Evidence(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !equalEvidence(all, kept) {
			t.Fatalf("got %+v, want %+v", all, kept)
		}
		page, err := db.Evidence(kept[2].Seq, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !equalEvidence(page, kept[2:4]) {
			t.Errorf("from seq %d, 2: got %+v, want %+v", kept[2].Seq, page, kept[2:4])
		}
		if rest, err := db.Evidence(kept[4].Seq+1, 10); err != nil || len(rest) != 0 {
			t.Errorf("after the last: %v, %v", rest, err)
		}
		if _, err := db.Evidence(0, 0); err == nil {
			t.Error("limit 0 accepted")
		}
	})
	t.Run("by jti", func(t *testing.T) {
		got, err := db.EvidenceByJTI("jti-3")
		if err != nil {
			t.Fatal(err)
		}
		if !equalEvidence([]store.Evidence{got}, kept[3:4]) {
			t.Errorf("got %+v, want %+v", got, kept[3])
		}
		if _, err := db.EvidenceByJTI("jti-none"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown jti: %v, want ErrNotFound", err)
		}
	})
	t.Run("the JSON line", func(t *testing.T) {
		b, err := json.Marshal(kept[0])
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"seq":%d,"kind":"consent","jti":"jti-0","token":%q,"expires":%q}`,
			kept[0].Seq, kept[0].Token, kept[0].Expires.Format(time.RFC3339Nano))
		if string(b) != want {
			t.Errorf("got %s\nwant %s", b, want)
		}
	})
	t.Run("survives compaction", func(t *testing.T) {
		if _, err := db.Compact(); err != nil {
			t.Fatal(err)
		}
		all, err := db.Evidence(0, 100)
		if err != nil || !equalEvidence(all, kept) {
			t.Fatalf("after compaction: %+v, %v", all, err)
		}
	})
}

func equalEvidence(a, b []store.Evidence) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || a[i].Kind != b[i].Kind || a[i].JTI != b[i].JTI || a[i].Token != b[i].Token || !a[i].Expires.Equal(b[i].Expires) {
			return false
		}
	}
	return true
}

// TestPutEvidenceRefused: evidence must be referenced by its event, exactly;
// a refusal rolls the whole transaction back.
func TestPutEvidenceRefused(t *testing.T) {
	db, clock := MustOpenDB(t)
	mustKeep(t, db, clock, store.EvidenceConsent, "jti-kept")
	token := fakeToken("jti-new")
	until := clock.Now().Add(evidenceRetention)
	for _, tc := range []struct {
		name string
		ev   *store.Event // appended first; nil: none
		e    func(seq uint64) store.Evidence
		want string
	}{
		{"no event at that seq", nil,
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq + 5, Kind: "consent", JTI: "jti-new", Token: token, Expires: until}
			},
			"no event at seq"},
		{"an event of another type", &store.Event{Type: store.EventWindowOpened, Visit: "v"},
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "consent", JTI: "jti-new", Token: token, Expires: until}
			},
			"is a window.opened"},
		{"a consent as revoke evidence", referencing("consent", "jti-new", token),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "revoke", JTI: "jti-new", Token: token, Expires: until}
			},
			"belongs to a consent.revoked"},
		{"another jti", referencing("consent", "jti-other", token),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "consent", JTI: "jti-new", Token: token, Expires: until}
			},
			`names jti "jti-other"`},
		{"another token", referencing("consent", "jti-new", token+"x"),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "consent", JTI: "jti-new", Token: token, Expires: until}
			},
			"not the SHA-256 of the token"},
		{"unknown kind", referencing("consent", "jti-new", token),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "receipt", JTI: "jti-new", Token: token, Expires: until}
			},
			`kind "receipt"`},
		{"empty token", referencing("consent", "jti-new", ""),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "consent", JTI: "jti-new", Expires: until}
			},
			"token is empty"},
		{"a jti already kept", referencing("consent", "jti-kept", token),
			func(seq uint64) store.Evidence {
				return store.Evidence{Seq: seq, Kind: "consent", JTI: "jti-kept", Token: token, Expires: until}
			},
			store.ErrExists.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := db.Size()
			err := db.Update(func(tx *store.Tx) error {
				seq := size
				if tc.ev != nil {
					if err := tx.Append(tc.ev); err != nil {
						return err
					}
					seq = tc.ev.Seq
				}
				return tx.PutEvidence(tc.e(seq))
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if db.Size() != size {
				t.Errorf("the log grew from %d to %d events", size, db.Size())
			}
			if _, err := db.EvidenceByJTI("jti-new"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("evidence kept anyway: %v", err)
			}
		})
	}
	t.Run("a seq already referenced", func(t *testing.T) {
		kept, err := db.EvidenceByJTI("jti-kept")
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *store.Tx) error {
			return tx.PutEvidence(store.Evidence{Seq: kept.Seq, Kind: "consent", JTI: "jti-kept", Token: kept.Token, Expires: until})
		})
		if !errors.Is(err, store.ErrExists) {
			t.Errorf("got %v, want ErrExists", err)
		}
	})
}

// TestSweepEvidence: evidence goes when its time is up, each piece with an
// evidence.expired event in the same transaction, and not before.
func TestSweepEvidence(t *testing.T) {
	db, clock := MustOpenDB(t)
	first := mustKeep(t, db, clock, store.EvidenceConsent, "jti-first")
	clock.Advance(time.Hour)
	second := mustKeep(t, db, clock, store.EvidenceRevoke, "jti-second")

	sweep := func(now time.Time) (n int, events []store.Event) {
		t.Helper()
		before := db.Size()
		MustUpdate(t, db, func(tx *store.Tx) error {
			var err error
			n, err = tx.SweepEvidence(now, "agent")
			return err
		})
		for _, line := range mustLines(t, db, db.Size())[before:] {
			var ev store.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		return n, events
	}

	if n, evs := sweep(first.Expires.Add(-time.Nanosecond)); n != 0 || len(evs) != 0 {
		t.Fatalf("before its time: %d deleted, events %+v", n, evs)
	}
	n, evs := sweep(first.Expires)
	if n != 1 || len(evs) != 1 {
		t.Fatalf("at its time: %d deleted, %d events, want 1 and 1", n, len(evs))
	}
	ev := evs[0]
	if ev.Type != store.EventEvidenceExpired || ev.Actor != "agent" || ev.Detail["jti"] != "jti-first" ||
		ev.Detail["kind"] != "consent" || ev.Detail["seq"] != float64(first.Seq) {
		t.Errorf("event %+v", ev)
	}
	if _, err := db.EvidenceByJTI("jti-first"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired evidence still readable: %v", err)
	}
	if left, err := db.Evidence(0, 10); err != nil || !equalEvidence(left, []store.Evidence{second}) {
		t.Errorf("left: %+v, %v", left, err)
	}
	db = MustReopen(t, db, clock)
	if n, _ := sweep(second.Expires.Add(time.Hour)); n != 1 {
		t.Errorf("the second: %d deleted", n)
	}
	if left, err := db.Evidence(0, 10); err != nil || len(left) != 0 {
		t.Errorf("left: %+v, %v", left, err)
	}
}

// mustLines returns the first n events of the log.
func mustLines(tb testing.TB, db *store.DB, n uint64) [][]byte {
	tb.Helper()
	lines := bytes.Split(bytes.TrimSuffix(MustLog(tb, db), []byte("\n")), []byte("\n"))
	if n == 0 {
		return nil
	}
	return lines[:n]
}

func TestNotices(t *testing.T) {
	db, clock := MustOpenDB(t)
	a := []byte(`{"controller":"Example Realty Ltd.","hash":"aaaa"}`)
	b := []byte(`{"controller":"Example Realty Ltd. (new address)","hash":"bbbb"}`)
	MustUpdate(t, db, func(tx *store.Tx) error { return tx.PutNotice("bbbb", b) })
	MustUpdate(t, db, func(tx *store.Tx) error { return tx.PutNotice("aaaa", a) })
	MustUpdate(t, db, func(tx *store.Tx) error { return tx.PutNotice("aaaa", a) }) // again: nothing to do
	for _, tc := range []struct {
		name, hash string
		notice     []byte
		want       string
	}{
		{"another notice under a kept hash", "aaaa", []byte(`{"controller":"Someone else","hash":"aaaa"}`), "another notice"},
		{"a hash the notice does not say", "cccc", a, `says hash "aaaa"`},
		{"not JSON", "cccc", []byte("notice"), "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.Update(func(tx *store.Tx) error { return tx.PutNotice(tc.hash, tc.notice) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	db = MustReopen(t, db, clock)
	all, err := db.Notices()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || !bytes.Equal(all[0], a) || !bytes.Equal(all[1], b) {
		t.Errorf("notices: %q", all)
	}
	if got, err := db.Notice("bbbb"); err != nil || !bytes.Equal(got, b) {
		t.Errorf("notice bbbb: %q, %v", got, err)
	}
	if _, err := db.Notice("cccc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown hash: %v", err)
	}
}

// TestEvidenceEmptyStore: a store that never kept evidence reads as empty.
func TestEvidenceEmptyStore(t *testing.T) {
	db, _ := MustOpenDB(t)
	if es, err := db.Evidence(0, 10); err != nil || len(es) != 0 {
		t.Errorf("evidence: %v, %v", es, err)
	}
	if ns, err := db.Notices(); err != nil || len(ns) != 0 {
		t.Errorf("notices: %v, %v", ns, err)
	}
	if _, err := db.EvidenceByJTI("x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("by jti: %v", err)
	}
}

// Evidence refers to its event in the same transaction even when that
// event completes a block of the log (events are compressed 64 at a time).
func TestEvidenceAtBlockEnd(t *testing.T) {
	db, _ := MustOpenDB(t)
	for range 63 {
		if err := db.Update(func(tx *store.Tx) error { return tx.Append(&store.Event{Type: store.EventSourceRecovered}) }); err != nil {
			t.Fatal(err)
		}
	}
	token := fakeToken("j-64")
	err := db.Update(func(tx *store.Tx) error {
		ev := referencing(store.EvidenceConsent, "j-64", token)
		if err := tx.Append(ev); err != nil {
			return err
		}
		if ev.Seq != 63 {
			t.Fatalf("test set-up: seq %d, want 63, the last of the first block", ev.Seq)
		}
		return tx.PutEvidence(store.Evidence{Seq: ev.Seq, Kind: store.EvidenceConsent, JTI: "j-64", Token: token, Expires: ev.Time.Add(time.Hour)})
	})
	if err != nil {
		t.Fatalf("evidence of the event that completes a block: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Error(err)
	}
}
