package fleet

import (
	"crypto/ed25519"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BoxView is a box as GET /v1/boxes and the page show it.
type BoxView struct {
	Site   string `json:"site"`
	Camera string `json:"camera"`
	// Available is the last …/available payload (online, stopped,
	// offline), "" when none arrived.
	Available   string    `json:"available"`
	AvailableAt time.Time `json:"available_at,omitzero"`
	// Size is the number of events covered by a verified checkpoint;
	// Received, 1 + the largest seq received.
	Size     uint64 `json:"size"`
	Received uint64 `json:"received"`
	// CheckpointSize is the size of the checkpoint served;
	// LastCheckpoint, when the last valid checkpoint arrived.
	CheckpointSize uint64    `json:"checkpoint_size"`
	LastCheckpoint time.Time `json:"last_checkpoint,omitzero"`
	Alarms         []Alarm   `json:"alarms"`

	id int32
}

// publish updates the view of a box (called by its worker).
func (m *Monitor) publish(b *box) {
	v := &BoxView{Site: b.site, Camera: b.camera, Available: b.available, AvailableAt: b.availableAt,
		Size: b.verified, Received: max(b.seen, b.verified), CheckpointSize: b.checkpointSize, LastCheckpoint: b.checkpointAt.UTC(), id: b.id}
	m.viewMu.Lock()
	m.view[b.site+"/"+b.camera] = v
	m.viewMu.Unlock()
}

// Boxes returns every box the monitor follows, with its alarms, by site
// and camera.
func (m *Monitor) Boxes() []BoxView {
	m.viewMu.RLock()
	out := make([]BoxView, 0, len(m.view))
	for _, v := range m.view {
		out = append(out, *v)
	}
	m.viewMu.RUnlock()
	slices.SortFunc(out, func(a, b BoxView) int { return strings.Compare(a.Site+"/"+a.Camera, b.Site+"/"+b.Camera) })
	byBox := map[string][]Alarm{}
	for _, a := range m.alarms.list(nil) {
		byBox[a.Site+"/"+a.Camera] = append(byBox[a.Site+"/"+a.Camera], a)
	}
	for i := range out {
		out[i].Alarms = byBox[out[i].Site+"/"+out[i].Camera]
		if out[i].Alarms == nil {
			out[i].Alarms = []Alarm{}
		}
	}
	return out
}

// Alarms returns every active alarm: of the boxes, of the sites (camera
// empty), and of unknown boxes.
func (m *Monitor) Alarms() []Alarm { return m.alarms.list(nil) }

// Handler serves the monitor's HTTP API (docs/SPEC.md, "Fleet monitor").
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "mqtt_connected": m.client != nil && m.client.IsConnectionOpen()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/boxes", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, m.Boxes()) })
	mux.HandleFunc("GET /v1/alarms", func(w http.ResponseWriter, r *http.Request) {
		as := m.Alarms()
		if as == nil {
			as = []Alarm{}
		}
		writeJSON(w, http.StatusOK, as)
	})
	mux.HandleFunc("GET /{$}", m.page)
	for path, h := range map[string]func(http.ResponseWriter, *http.Request, *BoxView) error{
		"/v1/audit":            m.handleAudit,
		"/v1/audit/checkpoint": m.handleCheckpoint,
		"/v1/audit/evidence":   m.handleEvidence,
		"/v1/audit/notices":    m.handleNotices,
		"/v1/audit/keys":       m.handleKeys,
	} {
		mux.HandleFunc("GET "+path, m.auditor(h))
	}
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// httpError is an error answered with a status and a reason.
type httpError struct {
	status int
	reason string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, "bad-request", fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// auditor wraps an auditor endpoint: the bearer token of role auditor, and
// the box named by ?site=S&camera=C.
func (m *Monitor) auditor(h func(http.ResponseWriter, *http.Request, *BoxView) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := m.authorize(r)
		var box *BoxView
		if err == nil {
			box, err = m.boxOf(r)
		}
		if err == nil {
			err = h(w, r, box)
		}
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			m.Logger.Error("auditor endpoint", "path", r.URL.Path, "error", err)
			he = &httpError{http.StatusInternalServerError, "internal", "internal error"}
		}
		if he.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="consentcam-fleet"`)
		}
		writeJSON(w, he.status, map[string]string{"error": he.msg, "reason": he.reason})
	}
}

func (m *Monitor) authorize(r *http.Request) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return &httpError{http.StatusUnauthorized, "unauthorized", "a bearer token of role auditor is needed"}
	}
	role := ""
	for t, ro := range m.tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			role = ro
		}
	}
	switch role {
	case RoleAuditor:
		return nil
	case "":
		return &httpError{http.StatusUnauthorized, "unauthorized", "unknown bearer token"}
	default:
		return &httpError{http.StatusForbidden, "forbidden", "this needs the role auditor"}
	}
}

func (m *Monitor) boxOf(r *http.Request) (*BoxView, error) {
	q := r.URL.Query()
	site, camera := q.Get("site"), q.Get("camera")
	if !namePattern.MatchString(site) || !namePattern.MatchString(camera) {
		return nil, badRequest("site and camera are needed ([a-z0-9-]{1,64}): ?site=S&camera=C")
	}
	m.viewMu.RLock()
	v := m.view[site+"/"+camera]
	m.viewMu.RUnlock()
	if v == nil {
		return nil, &httpError{http.StatusNotFound, "not-found", fmt.Sprintf("no box %s/%s in the mirror", site, camera)}
	}
	c := *v
	return &c, nil
}

// Limits of the log endpoint, as on a box.
const (
	defaultAuditLimit = 1000
	maxAuditLimit     = 10000
)

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

// pageParams reads ?after=SEQ&limit=N.
func pageParams(r *http.Request) (from, limit uint64, err error) {
	if r.URL.Query().Has("after") {
		after, err := uintParam(r, "after", 0)
		if err != nil {
			return 0, 0, err
		}
		if after == math.MaxUint64 {
			return 0, 0, badRequest("after must be below %d", uint64(math.MaxUint64))
		}
		from = after + 1
	}
	limit, err = uintParam(r, "limit", defaultAuditLimit)
	if err != nil || limit == 0 || limit > maxAuditLimit {
		return 0, 0, badRequest("limit must be 1 to %d", maxAuditLimit)
	}
	return from, limit, nil
}

// handleAudit serves the box's verified events after SEQ as JSON Lines,
// exactly as the box published them.
func (m *Monitor) handleAudit(w http.ResponseWriter, r *http.Request, b *BoxView) error {
	from, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	to := min(b.Size, from+limit)
	w.Header().Set("Content-Type", "application/jsonl")
	if from >= to {
		return nil
	}
	return eventsFrom(r.Context(), m.pool, b.id, from, to, func(_ uint64, body []byte) error {
		w.Write(body)
		_, err := w.Write([]byte{'\n'})
		return err
	})
}

// handleCheckpoint serves the latest checkpoint that verified against the
// mirror, as the box published it.
func (m *Monitor) handleCheckpoint(w http.ResponseWriter, r *http.Request, b *BoxView) error {
	var note []byte
	if err := m.pool.QueryRow(r.Context(), "SELECT checkpoint FROM boxes WHERE id = $1", b.id).Scan(&note); err != nil {
		return err
	}
	if note == nil {
		return &httpError{http.StatusServiceUnavailable, "no-checkpoint", "no checkpoint of this box has verified yet"}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(note)
	return nil
}

// handleEvidence serves the evidence the monitor holds: none, since
// consent tokens and revoke commands never leave the box (docs/FLEET.md).
func (m *Monitor) handleEvidence(w http.ResponseWriter, r *http.Request, _ *BoxView) error {
	if r.URL.Query().Has("jti") {
		return &httpError{http.StatusNotFound, "not-found", "the monitor keeps no evidence: ask the box"}
	}
	if _, _, err := pageParams(r); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jsonl")
	return nil
}

// handleNotices serves every notice the box published (JSON Lines).
func (m *Monitor) handleNotices(w http.ResponseWriter, r *http.Request, b *BoxView) error {
	rows, err := m.pool.Query(r.Context(), "SELECT body FROM notices WHERE box = $1 ORDER BY hash", b.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	w.Header().Set("Content-Type", "application/jsonl")
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return err
		}
		w.Write(body)
		w.Write([]byte{'\n'})
	}
	return rows.Err()
}

// handleKeys serves the box's device key and the keys the boxes trust.
func (m *Monitor) handleKeys(w http.ResponseWriter, r *http.Request, b *BoxView) error {
	dev, err := m.deviceKey(b.Site, b.Camera)
	if err != nil {
		return err
	}
	pems := func(keys map[string]ed25519.PublicKey) (map[string]string, error) {
		out := map[string]string{}
		for kid, k := range keys {
			p, err := consent.MarshalPublicKey(k)
			if err != nil {
				return nil, err
			}
			out[kid] = string(p)
		}
		return out, nil
	}
	device, err := consent.MarshalPublicKey(dev)
	if err != nil {
		return err
	}
	issuers, err := pems(m.keys.issuers)
	if err != nil {
		return err
	}
	operators, err := pems(m.keys.operators)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": string(device), "issuers": issuers, "operators": operators})
	return nil
}

//go:embed page.html.tmpl
var pageText string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() || t.Unix() <= 0 {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() || t.Unix() <= 0 {
			return ""
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
}).Parse(pageText))

// page is the read-only page of the boxes.
func (m *Monitor) page(w http.ResponseWriter, r *http.Request) {
	boxes := m.Boxes()
	var other []Alarm
	known := map[string]bool{}
	for _, b := range boxes {
		known[b.Site+"/"+b.Camera] = true
	}
	alarming := 0
	for _, b := range boxes {
		if len(b.Alarms) > 0 {
			alarming++
		}
	}
	for _, a := range m.Alarms() {
		if !known[a.Site+"/"+a.Camera] {
			other = append(other, a)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	err := pageTemplate.Execute(w, map[string]any{
		"Now": m.Now(), "Boxes": boxes, "Other": other, "Alarming": alarming,
	})
	if err != nil {
		m.Logger.Error("page", "error", err)
	}
}
