package consent

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gowebpki/jcs"
)

// Receipt is the box's signed answer to a revoke command: what it erased and
// where in the audit log that is recorded.
type Receipt struct {
	Request    string    `json:"request"`           // the revoke command's jti
	Subject    string    `json:"subject,omitempty"` // exactly one of Subject and Visit
	Visit      string    `json:"visit,omitempty"`
	Erased     int       `json:"erased"`     // records erased
	Seq        uint64    `json:"seq"`        // audit event recording the erasure
	Checkpoint string    `json:"checkpoint"` // the signed checkpoint covering that event
	Time       time.Time `json:"time"`       // RFC 3339, UTC
}

func (r *Receipt) validate() error {
	switch {
	case r.Request == "":
		return errors.New("receipt: request is empty")
	case (r.Subject == "") == (r.Visit == ""):
		return errors.New("receipt: exactly one of subject and visit must be set")
	case r.Erased < 0:
		return errors.New("receipt: erased is negative")
	case r.Time.IsZero():
		return errors.New("receipt: time is not set")
	}
	return nil
}

// SignReceipt returns the receipt as a JSON object with a "signature" member:
// the standard base64 Ed25519 signature, by the device key, of the RFC 8785
// canonical form of the object without "signature". The whole object is in
// canonical form too.
func SignReceipt(key ed25519.PrivateKey, r Receipt) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("receipt: not an Ed25519 private key")
	}
	r.Time = r.Time.UTC()
	if err := r.validate(); err != nil {
		return nil, err
	}
	unsigned, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	sig := ed25519.Sign(key, mustCanonical(unsigned))
	signed, err := json.Marshal(struct {
		Receipt
		Signature string `json:"signature"`
	}{r, base64.StdEncoding.EncodeToString(sig)})
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return mustCanonical(signed), nil
}

// VerifyReceipt checks a receipt's signature against the device's public key
// and returns what it says.
func VerifyReceipt(pub ed25519.PublicKey, data []byte) (*Receipt, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("receipt: not an Ed25519 public key")
	}
	m, err := object(data)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	var sig64 string
	if err := json.Unmarshal(m["signature"], &sig64); err != nil || sig64 == "" {
		return nil, errors.New("receipt: no signature")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(sig64)
	if err != nil {
		return nil, fmt.Errorf("receipt: signature: %w", err)
	}
	delete(m, "signature")
	unsigned, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	canon, err := jcs.Transform(unsigned)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if !ed25519.Verify(pub, canon, sig) {
		return nil, errors.New("receipt: the signature does not verify with the device key")
	}
	var r Receipt
	if err := json.Unmarshal(canon, &r); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
