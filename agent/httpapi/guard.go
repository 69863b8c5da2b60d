package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit bounds the requests of one client address to the routes that
// write to the log (POST /v1/visits, the kiosk's POSTs, image reads).
type RateLimit struct {
	PerMinute int // sustained
	Burst     int
}

// DefaultRateLimit lets a front desk send a visitor every two seconds, and
// twenty at once.
var DefaultRateLimit = RateLimit{PerMinute: 30, Burst: 20}

// Limits of a withdrawal code: however often a code is sent, the box does
// the withdrawal once (later ones find nothing to erase); these keep a code
// from being a way to make it work.
const (
	codePerMinute = 6
	codeBurst     = 6
)

// limiter is a token bucket per key (a client address, a withdrawal code).
// It forgets keys idle long enough to have refilled, and holds at most
// maxKeys: past that, the oldest is dropped.
type limiter struct {
	every time.Duration
	burst int
	mu    sync.Mutex
	keys  map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const maxLimiterKeys = 4096

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{every: time.Minute / time.Duration(max(perMinute, 1)), burst: max(burst, 1), keys: map[string]*bucket{}}
}

// allow reports whether key may make a request now, and otherwise how long
// until it may.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= maxLimiterKeys {
			l.forget(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.keys[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// forget drops the keys idle long enough to be full again, or, if none is,
// the one idle longest.
func (l *limiter) forget(now time.Time) {
	full := l.every * time.Duration(l.burst)
	oldest, at := "", now
	for k, b := range l.keys {
		if now.Sub(b.seen) > full {
			delete(l.keys, k)
		} else if b.seen.Before(at) {
			oldest, at = k, b.seen
		}
	}
	if len(l.keys) >= maxLimiterKeys {
		delete(l.keys, oldest)
	}
}

// tooMany is the answer to a request over its limit.
func tooMany(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
	return &Error{Status: http.StatusTooManyRequests, Reason: ReasonRateLimited,
		Msg: fmt.Sprintf("too many requests from this address: try again in %v", wait.Round(time.Second))}
}

// limited lets a request through only within the rate limit of its client
// address.
func (s *Server) limited(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if ok, wait := s.perAddress.allow(host, s.Now()); !ok {
			return tooMany(w, wait)
		}
		return h(w, r)
	}
}

// guard is around every route: it refuses a Host the box is not known by
// (a DNS-rebinding page reaches the box under its own name), and marks
// every answer nosniff.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !s.knownHost(r.Host) {
			s.Error(w, r, &Error{Status: http.StatusMisdirectedRequest, Reason: ReasonUnknownHost,
				Msg: "this box is not known by that name: add it to http.hosts"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// knownHost reports whether a Host header (host or host:port) names this
// box: an IP address (no DNS, so no rebinding), localhost, or one of
// Server.Hosts.
func (s *Server) knownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") || s.knownName(host)
}

// sameOrigin refuses a request a page of another site sent: with an Origin
// header, its host must be the request's own or a known name. Together
// with JSON-only bodies (a form cannot send them across sites without the
// box's consent) this keeps other sites' pages from using the kiosk's API.
func (s *Server) sameOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err == nil && u.Host != "" && (strings.EqualFold(u.Host, r.Host) || s.knownName(u.Hostname())) {
		return nil
	}
	return &Error{Status: http.StatusForbidden, Reason: ReasonCrossOrigin, Msg: "a page of another site may not use the kiosk's API"}
}

// knownName reports whether a name is one of Server.Hosts.
func (s *Server) knownName(name string) bool {
	return slices.ContainsFunc(s.Hosts, func(h string) bool { return strings.EqualFold(h, name) })
}

// jsonBody refuses a body that is not declared application/json.
func jsonBody(r *http.Request) error {
	ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
	if !strings.EqualFold(ct, "application/json") {
		return &Error{Status: http.StatusUnsupportedMediaType, Reason: ReasonBadRequest, Msg: "the body must be JSON (Content-Type: application/json)"}
	}
	return nil
}
