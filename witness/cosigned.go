package witness

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrQuorum: a checkpoint carries fewer valid cosignatures by the trusted
// witnesses than the quorum.
var ErrQuorum = errors.New("not enough cosignatures")

// Cosigned is what VerifyCosigned found on a checkpoint.
type Cosigned struct {
	Origin string
	Size   uint64
	// Witnesses are the valid cosignatures by the trusted witnesses, in the
	// order the witnesses were given.
	Witnesses []Cosignature
	// Missing names the trusted witnesses that did not cosign.
	Missing []string
	// Others are the signature lines by keys that are neither the log's nor
	// a trusted witness's: cosignatures nobody asked to trust.
	Others []note.Signature
}

// Summary says how many of the trusted witnesses cosigned, which, and
// when: "cosigned by 1 of 2 trusted witnesses (NAME at TIME)".
func (c *Cosigned) Summary() string {
	by := make([]string, len(c.Witnesses))
	for i, w := range c.Witnesses {
		by[i] = w.Name + " at " + w.Time.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("cosigned by %d of %d trusted witnesses (%s)", len(c.Witnesses), len(c.Witnesses)+len(c.Missing), strings.Join(by, ", "))
}

// Cosignature is a verified cosignature.
type Cosignature struct {
	Name    string // the witness's key name
	KeyHash uint32
	Time    time.Time // when the witness cosigned, as it says
}

// VerifyCosigned checks that a checkpoint note is signed by the log (the key
// name of logVerifier is the origin) and counts its cosignatures by the
// trusted witnesses. It fails when a signature line claiming the log's or a
// trusted witness's key does not verify, and with ErrQuorum when fewer than
// quorum (0: all the witnesses) witnesses cosigned; the *Cosigned it returns
// then says who did and who did not.
func VerifyCosigned(checkpoint []byte, logVerifier note.Verifier, witnesses []note.Verifier, quorum int) (*Cosigned, error) {
	if quorum == 0 {
		quorum = len(witnesses)
	}
	if quorum < 1 || quorum > len(witnesses) {
		return nil, fmt.Errorf("verify cosignatures: quorum %d of %d witnesses", quorum, len(witnesses))
	}
	cp, _, n, err := log.ParseCheckpoint(checkpoint, logVerifier.Name(), logVerifier, witnesses...)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c := &Cosigned{Origin: cp.Origin, Size: cp.Size, Others: n.UnverifiedSigs}
	for _, v := range witnesses {
		found := false
		for _, s := range n.Sigs {
			if s.Name == v.Name() && s.Hash == v.KeyHash() {
				t, _ := fnote.CoSigV1Timestamp(s)
				c.Witnesses = append(c.Witnesses, Cosignature{Name: s.Name, KeyHash: s.Hash, Time: t.UTC()})
				found = true
				break
			}
		}
		if !found {
			c.Missing = append(c.Missing, v.Name())
		}
	}
	if len(c.Witnesses) < quorum {
		msg := fmt.Sprintf("%d of the %d needed", len(c.Witnesses), quorum)
		if len(c.Missing) > 0 {
			msg += "; not cosigned by " + strings.Join(c.Missing, ", ")
		}
		if len(c.Others) > 0 {
			var others []string
			for _, s := range c.Others {
				others = append(others, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			msg += "; signed by keys not trusted: " + strings.Join(others, ", ")
		}
		return c, fmt.Errorf("%w: %s", ErrQuorum, msg)
	}
	return c, nil
}
