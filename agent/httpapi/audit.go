package httpapi

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/consentcam/consentcam/consent"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Limits of the audit endpoint.
const (
	defaultAuditLimit = 1000
	maxAuditLimit     = 10000
)

// uintParam parses an optional unsigned query parameter.
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("%s must be a non-negative integer (got %q)", name, s)
	}
	return v, nil
}

// handleAudit serves events with seq > after (all when after is absent) as
// JSON Lines, exactly as stored and published.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) error {
	from := uint64(0)
	if r.URL.Query().Has("after") {
		after, err := uintParam(r, "after", 0)
		if err != nil {
			return err
		}
		if after == math.MaxUint64 {
			return badRequest("after must be below %d", uint64(math.MaxUint64))
		}
		from = after + 1
	}
	limit, err := uintParam(r, "limit", defaultAuditLimit)
	if err != nil || limit == 0 || limit > maxAuditLimit {
		return badRequest("limit must be 1 to %d", maxAuditLimit)
	}
	events, err := s.Log.Events(from, int(limit))
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	w.Header().Set("Content-Type", "application/jsonl")
	for _, ev := range events {
		w.Write(ev)
		w.Write([]byte{'\n'})
	}
	return nil
}

func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) error {
	cp, err := s.Core.Checkpoint()
	if err != nil {
		return fmt.Errorf("read the latest checkpoint: %w", err)
	}
	if len(cp) == 0 {
		return &Error{Status: http.StatusServiceUnavailable, Reason: ReasonNoCheckpoint, Msg: "no checkpoint yet"}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(cp)
	return nil
}

func b64(hashes [][]byte) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

// InclusionProof is the answer of /v1/audit/proof/inclusion: the audit path
// of leaf seq in the tree of size, with the tree's root (all base64).
type InclusionProof struct {
	Seq      uint64   `json:"seq"`
	Size     uint64   `json:"size"`
	LeafHash string   `json:"leaf_hash"`
	Hashes   []string `json:"hashes"`
	Root     string   `json:"root"`
}

func (s *Server) handleInclusion(w http.ResponseWriter, r *http.Request) error {
	n := s.Log.Size()
	if !r.URL.Query().Has("seq") {
		return badRequest("seq (and optionally size) are needed")
	}
	seq, err1 := uintParam(r, "seq", 0)
	size, err2 := uintParam(r, "size", n)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if seq >= size || size > n {
		return badRequest("need seq < size <= %d", n)
	}
	hashes, err := s.Log.InclusionProof(seq, size)
	if err != nil {
		return fmt.Errorf("inclusion proof: %w", err)
	}
	root, err := s.Log.Root(size)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	events, err := s.Log.Events(seq, 1)
	if err != nil {
		return fmt.Errorf("read event %d: %w", seq, err)
	}
	if len(events) != 1 {
		return fmt.Errorf("read event %d: not in the log of size %d", seq, n)
	}
	writeJSON(w, http.StatusOK, InclusionProof{
		Seq: seq, Size: size,
		LeafHash: base64.StdEncoding.EncodeToString(rfc6962.DefaultHasher.HashLeaf(events[0])),
		Hashes:   b64(hashes),
		Root:     base64.StdEncoding.EncodeToString(root),
	})
	return nil
}

// ConsistencyProof is the answer of /v1/audit/proof/consistency.
type ConsistencyProof struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	Hashes   []string `json:"hashes"`
	FromRoot string   `json:"from_root"`
	ToRoot   string   `json:"to_root"`
}

func (s *Server) handleConsistency(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if !q.Has("from") || !q.Has("to") {
		return badRequest("from and to are needed")
	}
	from, err1 := uintParam(r, "from", 0)
	to, err2 := uintParam(r, "to", 0)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if n := s.Log.Size(); from < 1 || from > to || to > n {
		return badRequest("need 1 <= from <= to <= %d", n)
	}
	hashes, err := s.Log.ConsistencyProof(from, to)
	if err != nil {
		return fmt.Errorf("consistency proof: %w", err)
	}
	fromRoot, err1 := s.Log.Root(from)
	toRoot, err2 := s.Log.Root(to)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	writeJSON(w, http.StatusOK, ConsistencyProof{
		From: from, To: to, Hashes: b64(hashes),
		FromRoot: base64.StdEncoding.EncodeToString(fromRoot),
		ToRoot:   base64.StdEncoding.EncodeToString(toRoot),
	})
	return nil
}

// AuditKeys are the keys an auditor needs beside the log: the device's,
// and those the box trusts to issue consents and to order erasures.
type AuditKeys struct {
	Device    ed25519.PublicKey
	Issuers   map[string]ed25519.PublicKey // kid → key
	Operators map[string]ed25519.PublicKey
}

// handleEvidence serves the evidence of the events after SEQ (JSON Lines,
// in seq order), or the one kept for a jti.
func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Has("jti") {
		e, err := s.Log.EvidenceByJTI(q.Get("jti"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, e)
		return nil
	}
	from := uint64(0)
	if q.Has("after") {
		after, err := uintParam(r, "after", 0)
		if err != nil {
			return err
		}
		if after == math.MaxUint64 {
			return badRequest("after must be below %d", uint64(math.MaxUint64))
		}
		from = after + 1
	}
	limit, err := uintParam(r, "limit", defaultAuditLimit)
	if err != nil || limit == 0 || limit > maxAuditLimit {
		return badRequest("limit must be 1 to %d", maxAuditLimit)
	}
	evidence, err := s.Log.Evidence(from, int(limit))
	if err != nil {
		return fmt.Errorf("read evidence: %w", err)
	}
	w.Header().Set("Content-Type", "application/jsonl")
	enc := json.NewEncoder(w)
	for _, e := range evidence {
		enc.Encode(e)
	}
	return nil
}

// handleNotices serves every notice the box published (JSON Lines).
func (s *Server) handleNotices(w http.ResponseWriter, r *http.Request) error {
	notices, err := s.Log.Notices()
	if err != nil {
		return fmt.Errorf("read notices: %w", err)
	}
	w.Header().Set("Content-Type", "application/jsonl")
	for _, n := range notices {
		w.Write(n)
		w.Write([]byte{'\n'})
	}
	return nil
}

// handleKeys serves the keys of AuditKeys as PKIX PEM.
func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request) error {
	pemOf := func(k ed25519.PublicKey) (string, error) {
		b, err := consent.MarshalPublicKey(k)
		return string(b), err
	}
	pems := func(keys map[string]ed25519.PublicKey) (map[string]string, error) {
		out := map[string]string{}
		for kid, k := range keys {
			p, err := pemOf(k)
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", kid, err)
			}
			out[kid] = p
		}
		return out, nil
	}
	device, err := pemOf(s.Keys.Device)
	if err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	issuers, err := pems(s.Keys.Issuers)
	if err != nil {
		return err
	}
	operators, err := pems(s.Keys.Operators)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": device, "issuers": issuers, "operators": operators})
	return nil
}
