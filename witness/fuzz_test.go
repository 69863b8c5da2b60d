package witness_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// FuzzVerifyCosigned feeds VerifyCosigned notes, as found or, with sign,
// as a body the log signed and a witness cosigned, so that the fuzzer
// reaches past the signatures.
func FuzzVerifyCosigned(f *testing.F) {
	logSigner, err := store.NewCheckpointSigner(testOrigin, testDeviceKey)
	if err != nil {
		f.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)), "witness.example/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	cosigner, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		f.Fatal(err)
	}
	wv, err := witness.NewVerifier(vkey)
	if err != nil {
		f.Fatal(err)
	}
	lv := logVerifier(f)
	f.Fuzz(func(t *testing.T, data []byte, sign bool) {
		if sign {
			signed, err := note.Sign(&note.Note{Text: string(data)}, logSigner, cosigner)
			if err != nil {
				return
			}
			data = signed
		}
		cos, err := witness.VerifyCosigned(data, lv, []note.Verifier{wv}, 1)
		switch {
		case err != nil && cos != nil && !errors.Is(err, witness.ErrQuorum):
			t.Fatalf("a result with an error other than ErrQuorum: %v", err)
		case err != nil:
			return
		case len(cos.Witnesses) != 1 || cos.Witnesses[0].Name != "witness.example/fuzz" || len(cos.Missing) != 0:
			t.Fatalf("verified, but %+v", cos)
		case cos.Origin != testOrigin || !bytes.HasPrefix(data, []byte(testOrigin+"\n")):
			t.Fatalf("verified a checkpoint of %q", cos.Origin)
		}
	})
}
