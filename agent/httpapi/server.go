package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/agent"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is http.listen's default (docs/SPEC.md, "HTTP").
const DefaultAddr = "127.0.0.1:8765"

// Core is what the HTTP API asks of the agent: *agent.Agent.
type Core interface {
	Consent(ctx context.Context, token []byte) (agent.Accepted, error)
	Withdraw(ctx context.Context, subject, actor, reason string) (agent.Receipt, error)
	Decline(actor, reason string) (uint64, error)
	Records(sel store.Selector) ([]*store.Record, error)
	ReadImage(id, purpose, actor string) ([]byte, error)
	VisitStatus(visit string) (agent.VisitStatus, bool)
	Checkpoint() ([]byte, error)
}

// AuditLog is the log the auditor reads: *store.DB.
type AuditLog interface {
	Events(from uint64, limit int) ([][]byte, error)
	Size() uint64
	Root(size uint64) ([]byte, error)
	InclusionProof(seq, size uint64) ([][]byte, error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
	PendingCount() (int, error)
	Evidence(from uint64, limit int) ([]store.Evidence, error)
	EvidenceByJTI(jti string) (store.Evidence, error)
	Notices() ([][]byte, error)
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
	// RoleMetrics may read /metrics only (a Prometheus server); the
	// auditor and the operator may too.
	RoleMetrics = "metrics"
)

// Server is the box's HTTP API (docs/SPEC.md, "HTTP") and, when Kiosk is
// set, the consent kiosk (docs/KIOSK.md). Set the fields, then Listen and
// Serve; Close stops it.
type Server struct {
	// Addr is host:port; port 0 picks a free one (see Addr after Listen).
	Addr string
	// Tokens are the bearer tokens and the role each grants.
	Tokens []BearerToken
	// Hosts are the names the box is reached by (a Host header or an Origin
	// naming anything else is refused; IP addresses and localhost always
	// pass).
	Hosts []string
	// RateLimit bounds the writing requests of one client address.
	RateLimit RateLimit

	Core Core
	Log  AuditLog
	// Notice is the notice in force, served at /v1/notice.
	Notice consent.Notice
	// Keys are served to the auditor at /v1/audit/keys.
	Keys AuditKeys
	// Metrics is served at /metrics.
	Metrics prometheus.Gatherer
	// Connected reports whether the MQTT session is up, for /healthz.
	Connected func() bool
	// Kiosk, when set, turns on the consent kiosk.
	Kiosk *KioskOptions

	Now    func() time.Time
	Logger *slog.Logger

	notice     []byte // Notice's JSON with its hash
	noticeHash string
	kiosk      *kiosk
	perAddress *limiter
	listener   net.Listener
	server     *http.Server
	served     chan struct{}
}

// NewServer returns a server with the defaults of docs/SPEC.md.
func NewServer() *Server {
	return &Server{
		Addr:      DefaultAddr,
		RateLimit: DefaultRateLimit,
		Connected: func() bool { return false },
		Now:       time.Now,
		Logger:    slog.New(slog.DiscardHandler),
	}
}

// Log attribute keys.
const (
	logKeyError  = "error"
	logKeyReason = "reason"
	logKeyMethod = "method"
	logKeyPath   = "path"
)

// Listen checks the fields and binds the listener; nothing is served
// before Serve.
func (s *Server) Listen() error {
	if s.Core == nil || s.Log == nil || s.Metrics == nil {
		return errors.New("http: no core, log or metrics")
	}
	s.notice, s.noticeHash = s.Notice.JSON(), s.Notice.Hash()
	s.perAddress = newLimiter(s.RateLimit.PerMinute, s.RateLimit.Burst)
	if s.Kiosk != nil {
		k, err := newKiosk(s)
		if err != nil {
			return err
		}
		s.kiosk = k
	}
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	s.listener = l
	s.server = &http.Server{
		Handler:           s.guard(s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// Serve serves requests in the background until Close.
func (s *Server) Serve() {
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.server.Serve(s.listener); !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server", logKeyError, err)
		}
	}()
}

// ListenAddr is the address the server listens on (after Listen).
func (s *Server) ListenAddr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Close stops taking requests and waits, until ctx ends, for those in
// progress.
func (s *Server) Close(ctx context.Context) error {
	if s.server == nil {
		return nil
	}
	err := s.server.Shutdown(ctx)
	if s.served == nil {
		s.listener.Close()
	} else {
		<-s.served
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// handlerFunc is a handler that returns its error for Error to answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.Error(w, r, err)
		}
	})
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", s.handle(s.handleHealth))
	metrics := promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", s.require(func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	}, RoleMetrics, RoleAuditor, RoleOperator))
	mux.Handle("GET /v1/notice", s.handle(s.handleNotice))

	mux.Handle("GET /v1/audit", s.require(s.handleAudit, RoleAuditor))
	mux.Handle("GET /v1/audit/checkpoint", s.require(s.handleCheckpoint, RoleAuditor))
	mux.Handle("GET /v1/audit/proof/inclusion", s.require(s.handleInclusion, RoleAuditor))
	mux.Handle("GET /v1/audit/proof/consistency", s.require(s.handleConsistency, RoleAuditor))
	mux.Handle("GET /v1/audit/evidence", s.require(s.handleEvidence, RoleAuditor))
	mux.Handle("GET /v1/audit/notices", s.require(s.handleNotices, RoleAuditor))
	mux.Handle("GET /v1/audit/keys", s.require(s.handleKeys, RoleAuditor))

	mux.Handle("GET /v1/records", s.require(s.handleRecords, RoleOperator))
	mux.Handle("GET /v1/records/{id}/image", s.require(s.limited(s.handleImage), RoleOperator))

	mux.Handle("POST /v1/visits", s.require(s.limited(s.handleVisit), RoleKiosk))
	if s.kiosk != nil {
		s.kiosk.routes(mux)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// require lets a request through only with a bearer token of one of roles.
func (s *Server) require(h handlerFunc, roles ...string) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		got, ok := s.roleOf(r)
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="consentcam"`)
			return &Error{Status: http.StatusUnauthorized, Reason: ReasonUnauthorized, Msg: "a bearer token of role " + strings.Join(roles, " or ") + " is needed"}
		case !slices.Contains(roles, got):
			return &Error{Status: http.StatusForbidden, Reason: ReasonForbidden, Msg: "this needs role " + strings.Join(roles, " or ")}
		}
		return h(w, r)
	})
}

// roleOf finds the role of the request's bearer token. Every configured
// token is compared, in constant time, over SHA-256 digests so that neither
// the length nor the position of a token leaks.
func (s *Server) roleOf(r *http.Request) (string, bool) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	role, found := "", 0
	for _, t := range s.Tokens {
		want := sha256.Sum256([]byte(t.Secret))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			role, found = t.Role, found+1
		}
	}
	return role, found == 1
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	pending, err := s.Log.PendingCount()
	status, code := "ok", http.StatusOK
	if err != nil {
		s.Logger.Error("health: read the outbox", logKeyError, err)
		status, code = "store unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{
		"status":         status,
		"mqtt_connected": s.Connected(),
		"audit_size":     s.Log.Size(),
		"outbox_pending": pending,
	})
	return nil
}

func (s *Server) handleNotice(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.notice)
	return nil
}
