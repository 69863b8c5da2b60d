package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/transparency-dev/merkle/rfc6962"
)

// HTTPOptions is the HTTP listener and who may use it.
type HTTPOptions struct {
	// Addr is host:port; port 0 picks a free one (see Agent.HTTPAddr).
	Addr string
	// Tokens are the bearer tokens and the role each grants.
	Tokens []BearerToken
}

// BearerToken grants a role to whoever presents Secret.
type BearerToken struct {
	Role   string
	Secret string
}

// Roles of docs/SPEC.md ("HTTP").
const (
	RoleAuditor  = "auditor"
	RoleOperator = "operator"
	RoleKiosk    = "kiosk"
)

// Limits of the audit endpoint.
const (
	defaultAuditLimit = 1000
	maxAuditLimit     = 10000
)

// maxTokenBody is read from a POST: one byte over the 8 KiB a token may
// have, so the verifier can refuse it as too-large.
const maxTokenBody = 8<<10 + 1

func (a *Agent) listenHTTP() error {
	l, err := net.Listen("tcp", a.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	a.listener = l
	a.server = &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return nil
}

func (a *Agent) serveHTTP() {
	if err := ignoreClosed(a.server.Serve(a.listener)); err != nil {
		a.Logger.Error("http server", logKeyError, err)
	}
}

// HTTPAddr is the address the HTTP server listens on (after Open).
func (a *Agent) HTTPAddr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

func (a *Agent) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealth)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/notice", a.handleNotice)

	mux.Handle("GET /v1/audit", a.require(RoleAuditor, a.handleAudit))
	mux.Handle("GET /v1/audit/checkpoint", a.require(RoleAuditor, a.handleCheckpoint))
	mux.Handle("GET /v1/audit/proof/inclusion", a.require(RoleAuditor, a.handleInclusion))
	mux.Handle("GET /v1/audit/proof/consistency", a.require(RoleAuditor, a.handleConsistency))

	mux.Handle("GET /v1/records", a.require(RoleOperator, a.handleRecords))
	mux.Handle("GET /v1/records/{id}/image", a.require(RoleOperator, a.handleImage))

	mux.Handle("POST /v1/visits", a.require(RoleKiosk, a.handleVisit))
	if a.kiosk != nil {
		a.kiosk.routes(mux)
	}
	return mux
}

// httpError is the JSON error body of docs/SPEC.md.
type httpError struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, reason, format string, args ...any) {
	writeJSON(w, status, httpError{Error: fmt.Sprintf(format, args...), Reason: reason})
}

// require lets a request through only with a bearer token of role.
func (a *Agent) require(role string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := a.roleOf(r)
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="consentcam"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a bearer token of role %s is needed", role)
		case got != role:
			writeError(w, http.StatusForbidden, "forbidden", "this needs role %s", role)
		default:
			h(w, r)
		}
	})
}

// roleOf finds the role of the request's bearer token. Every configured
// token is compared, in constant time, over SHA-256 digests so that neither
// the length nor the position of a token leaks.
func (a *Agent) roleOf(r *http.Request) (string, bool) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	role, found := "", 0
	for _, t := range a.HTTP.Tokens {
		want := sha256.Sum256([]byte(t.Secret))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			role, found = t.Role, found+1
		}
	}
	return role, found == 1
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	pending, err := a.Store.PendingCount()
	status, code := "ok", http.StatusOK
	if err != nil {
		status, code = "store unavailable: "+err.Error(), http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{
		"status":         status,
		"mqtt_connected": a.mqtt != nil && a.mqtt.connected(),
		"audit_size":     a.Store.Size(),
		"outbox_pending": pending,
	})
}

func (a *Agent) handleNotice(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(a.Notice)
}

// uintParam parses an optional unsigned query parameter.
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s must be a non-negative integer (got %q)", name, s)
	}
	return v, nil
}

// handleAudit serves events with seq > after (all when after is absent) as
// JSON Lines, exactly as stored and published.
func (a *Agent) handleAudit(w http.ResponseWriter, r *http.Request) {
	from := uint64(0)
	if r.URL.Query().Has("after") {
		after, err := uintParam(r, "after", 0)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad-request", "%v", err)
			return
		}
		from = after + 1
	}
	limit, err := uintParam(r, "limit", defaultAuditLimit)
	if err != nil || limit == 0 || limit > maxAuditLimit {
		writeError(w, http.StatusBadRequest, "bad-request", "limit must be 1 to %d", maxAuditLimit)
		return
	}
	events, err := a.Store.Events(from, int(limit))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "read audit log: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	for _, ev := range events {
		w.Write(ev)
		w.Write([]byte{'\n'})
	}
}

func (a *Agent) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := a.Store.LatestCheckpoint()
	if err != nil || len(cp) == 0 {
		writeError(w, http.StatusServiceUnavailable, "no-checkpoint", "no checkpoint yet: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(cp)
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

func (a *Agent) handleInclusion(w http.ResponseWriter, r *http.Request) {
	n := a.Store.Size()
	seq, err1 := uintParam(r, "seq", 0)
	size, err2 := uintParam(r, "size", n)
	if err := errors.Join(err1, err2); err != nil || !r.URL.Query().Has("seq") {
		writeError(w, http.StatusBadRequest, "bad-request", "seq (and optionally size) are needed: %v", err)
		return
	}
	if seq >= size || size > n {
		writeError(w, http.StatusBadRequest, "bad-request", "need seq < size <= %d", n)
		return
	}
	hashes, err := a.Store.InclusionProof(seq, size)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "inclusion proof: %v", err)
		return
	}
	root, err := a.Store.Root(size)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "root: %v", err)
		return
	}
	events, err := a.Store.Events(seq, 1)
	if err != nil || len(events) != 1 {
		writeError(w, http.StatusInternalServerError, "store", "read event %d: %v", seq, err)
		return
	}
	writeJSON(w, http.StatusOK, InclusionProof{
		Seq: seq, Size: size,
		LeafHash: base64.StdEncoding.EncodeToString(rfc6962.DefaultHasher.HashLeaf(events[0])),
		Hashes:   b64(hashes),
		Root:     base64.StdEncoding.EncodeToString(root),
	})
}

// ConsistencyProof is the answer of /v1/audit/proof/consistency.
type ConsistencyProof struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	Hashes   []string `json:"hashes"`
	FromRoot string   `json:"from_root"`
	ToRoot   string   `json:"to_root"`
}

func (a *Agent) handleConsistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := uintParam(r, "from", 0)
	to, err2 := uintParam(r, "to", 0)
	if err := errors.Join(err1, err2); err != nil || !q.Has("from") || !q.Has("to") {
		writeError(w, http.StatusBadRequest, "bad-request", "from and to are needed: %v", err)
		return
	}
	if n := a.Store.Size(); from < 1 || from > to || to > n {
		writeError(w, http.StatusBadRequest, "bad-request", "need 1 <= from <= to <= %d", n)
		return
	}
	hashes, err := a.Store.ConsistencyProof(from, to)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "consistency proof: %v", err)
		return
	}
	fromRoot, err1 := a.Store.Root(from)
	toRoot, err2 := a.Store.Root(to)
	if err := errors.Join(err1, err2); err != nil {
		writeError(w, http.StatusInternalServerError, "store", "root: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, ConsistencyProof{
		From: from, To: to, Hashes: b64(hashes),
		FromRoot: base64.StdEncoding.EncodeToString(fromRoot),
		ToRoot:   base64.StdEncoding.EncodeToString(toRoot),
	})
}

func (a *Agent) handleRecords(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel := store.Selector{Subject: q.Get("subject"), Visit: q.Get("visit")}
	if (sel.Subject == "") == (sel.Visit == "") {
		writeError(w, http.StatusBadRequest, "bad-request", "give exactly one of subject and visit")
		return
	}
	var recs []*store.Record
	err := a.Store.View(func(tx *store.Tx) error {
		var err error
		recs, err = tx.Records(sel)
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "list records: %v", err)
		return
	}
	if recs == nil {
		recs = []*store.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

// handleImage serves a record's image for a purpose it is still tagged with,
// and audits the read in the same transaction.
func (a *Agent) handleImage(w http.ResponseWriter, r *http.Request) {
	id, purpose := r.PathValue("id"), r.URL.Query().Get("purpose")
	if purpose == "" {
		writeError(w, http.StatusBadRequest, "bad-request", "name the purpose of this read: ?purpose=…")
		return
	}
	var image []byte
	ev := &store.Event{Type: store.EventRecordAccessed, Record: id, Purposes: []string{purpose}, Actor: RoleOperator}
	err := a.update(func(tx *auditTx) error {
		rec, err := tx.Record(id)
		if err != nil {
			return err
		}
		ev.Visit, ev.Subject = rec.Visit, rec.Subject
		if image, err = tx.Image(id, purpose); err != nil {
			return err
		}
		return tx.Append(ev)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not-found", "no record %q", id)
	case errors.Is(err, store.ErrPurpose):
		writeError(w, http.StatusForbidden, "purpose-not-allowed", "record %q may not be used for %q", id, purpose)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "store", "read image: %v", err)
	default:
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(image)
	}
}

// VisitResponse is the answer of POST /v1/visits to an accepted token.
type VisitResponse struct {
	Visit   string `json:"visit"`
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	// Waiting is how many visits are before this one at the camera.
	Waiting int `json:"waiting"`
}

func (a *Agent) handleVisit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad-request", "read body: %v", err)
		return
	}
	res, err := a.Consent(r.Context(), []byte(strings.TrimSpace(string(body))))
	if err != nil {
		writeConsentError(w, err)
		return
	}
	cs := res.consent
	writeJSON(w, http.StatusAccepted, VisitResponse{Visit: cs.Visit, Subject: cs.Subject, Seq: res.seq, Waiting: res.queue})
}

func writeConsentError(w http.ResponseWriter, err error) {
	var cerr *consent.Error
	switch {
	case errors.As(err, &cerr):
		status := http.StatusForbidden
		switch cerr.Reason {
		case consent.ReasonTooLarge:
			status = http.StatusRequestEntityTooLarge
		case consent.ReasonMalformed:
			status = http.StatusBadRequest
		case consent.ReasonReplayed:
			status = http.StatusConflict
		}
		writeError(w, status, string(cerr.Reason), "%v", err)
	case errors.Is(err, errQueueFull):
		writeError(w, http.StatusServiceUnavailable, reasonQueueFull, "%v", err)
	case errors.Is(err, ErrStopped):
		writeError(w, http.StatusServiceUnavailable, "stopping", "%v", err)
	default:
		writeError(w, http.StatusInternalServerError, "internal", "%v", err)
	}
}
