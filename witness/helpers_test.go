package witness_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

const (
	testSite   = "office-07"
	testCamera = "entrance-1"
)

var (
	testOrigin    = store.Origin(testSite, testCamera)
	testMasterKey = bytes.Repeat([]byte{0x5c}, 32)
	// testDeviceKey signs the checkpoints of every test log.
	testDeviceKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
)

// logVKey is the note verifier key of the test log, as the witnesses are
// configured with it.
func logVKey(tb testing.TB) string {
	tb.Helper()
	vkey, err := note.NewEd25519VerifierKey(testOrigin, testDeviceKey.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return vkey
}

func logVerifier(tb testing.TB) note.Verifier {
	tb.Helper()
	v, err := store.NewCheckpointVerifier(testOrigin, testDeviceKey.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// box is a camera box's audit log: a real store file, signed by the test
// device key.
type box struct {
	tb     testing.TB
	path   string
	db     *store.DB
	signer note.Signer
	next   int // numbers the events appended, so that two logs differ
}

// openBox opens (or creates) the store at path. It is closed when the test
// ends.
func openBox(tb testing.TB, path string) *box {
	tb.Helper()
	s, err := store.NewCheckpointSigner(testOrigin, testDeviceKey)
	if err != nil {
		tb.Fatal(err)
	}
	b := &box{tb: tb, path: path, signer: s}
	b.open()
	tb.Cleanup(b.close)
	return b
}

func newBox(tb testing.TB) *box {
	tb.Helper()
	return openBox(tb, filepath.Join(tb.TempDir(), "consentcam.db"))
}

func (b *box) open() {
	b.tb.Helper()
	db := store.NewDB(b.path)
	db.MasterKey, db.Site, db.Camera = testMasterKey, testSite, testCamera
	if err := db.Open(); err != nil {
		b.tb.Fatal(err)
	}
	b.db = db
}

func (b *box) close() {
	if b.db != nil {
		b.db.Close()
		b.db = nil
	}
}

// copyTo closes the store, copies its file to dst (a backup), and opens it
// again.
func (b *box) copyTo(dst string) {
	b.tb.Helper()
	b.close()
	copyFile(b.tb, b.path, dst)
	b.open()
}

// restore replaces the store file by src (a backup restore) and opens it.
func (b *box) restore(src string) {
	b.tb.Helper()
	b.close()
	copyFile(b.tb, src, b.path)
	b.open()
}

func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// checkpoint appends n events of a visitor declining, then signs a
// checkpoint as the agent does (the checkpoint event follows it in the
// log), and returns its note.
func (b *box) checkpoint(n int) []byte {
	b.tb.Helper()
	var cp store.Checkpoint
	err := b.db.Update(func(tx *store.Tx) error {
		for range n {
			b.next++
			if err := tx.Append(&store.Event{Type: store.EventConsentDeclined, Visit: fmt.Sprintf("visit-%d-%s", b.next, rand.Text()[:6])}); err != nil {
				return err
			}
		}
		var err error
		if cp, err = tx.Checkpoint(testOrigin, b.signer); err != nil {
			return err
		}
		return tx.Append(cp.Event())
	})
	if err != nil {
		b.tb.Fatal(err)
	}
	return cp.Note
}

// The agent hands its store to the client.
var _ witness.Prover = (*store.DB)(nil)

// ConsistencyProof is that of the store open now (restore replaces it).
func (b *box) ConsistencyProof(from, to uint64) ([][]byte, error) {
	return b.db.ConsistencyProof(from, to)
}

// client returns a client of the box's log for the witnesses, with the
// given quorum.
func (b *box) client(quorum int, ws ...*testenv.Omniwitness) *witness.Client {
	b.tb.Helper()
	var cfg []witness.Config
	for _, w := range ws {
		cfg = append(cfg, witness.Config{Name: w.Name, URL: w.URL(), Key: w.VKey})
	}
	return b.clientOf(quorum, cfg...)
}

// clientOf returns a client of the box's log for witnesses so configured.
func (b *box) clientOf(quorum int, cfg ...witness.Config) *witness.Client {
	b.tb.Helper()
	c, err := witness.NewClient(logVerifier(b.tb), b, cfg, quorum)
	if err != nil {
		b.tb.Fatal(err)
	}
	return c
}

// startWitness starts an omniwitness that follows the test log.
func startWitness(tb testing.TB, name string) *testenv.Omniwitness {
	tb.Helper()
	return testenv.StartOmniwitness(tb, name, testenv.WitnessedLog{Origin: testOrigin, VKey: logVKey(tb)})
}

func verifiers(tb testing.TB, ws ...*testenv.Omniwitness) []note.Verifier {
	tb.Helper()
	var vs []note.Verifier
	for _, w := range ws {
		v, err := witness.NewVerifier(w.VKey)
		if err != nil {
			tb.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// mustVKey returns the vkey of a new witness key named name, which no
// witness here holds.
func mustVKey(tb testing.TB, name string) string {
	tb.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	return vkey
}
