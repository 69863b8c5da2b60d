package main

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/audit/audittest"
	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// auditorEndpoints serves the auditor endpoints of docs/SPEC.md ("HTTP")
// from a real store, as the agent serves them, for audit pull --bundle.
func auditorEndpoints(t *testing.T, db *store.DB, token string) *httptest.Server {
	t.Helper()
	pem := func(k ed25519.PrivateKey) string {
		p, err := consent.MarshalPublicKey(k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	page := func(w http.ResponseWriter, r *http.Request) (from uint64, limit int, ok bool) {
		if a := r.URL.Query().Get("after"); a != "" {
			n, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				http.Error(w, `{"error":"bad after"}`, http.StatusBadRequest)
				return 0, 0, false
			}
			from = n + 1
		}
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit < 1 {
			http.Error(w, `{"error":"bad limit"}`, http.StatusBadRequest)
			return 0, 0, false
		}
		return from, limit, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		if from, limit, ok := page(w, r); ok {
			evs, err := db.Events(from, limit)
			if err != nil {
				t.Error(err)
			}
			for _, ev := range evs {
				w.Write(append(ev, '\n'))
			}
		}
	})
	mux.HandleFunc("GET /v1/audit/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		cp, err := db.LatestCheckpoint()
		if err != nil {
			t.Error(err)
		}
		w.Write(cp)
	})
	mux.HandleFunc("GET /v1/audit/evidence", func(w http.ResponseWriter, r *http.Request) {
		if from, limit, ok := page(w, r); ok {
			es, err := db.Evidence(from, limit)
			if err != nil {
				t.Error(err)
			}
			for _, e := range es {
				line, _ := json.Marshal(e)
				w.Write(append(line, '\n'))
			}
		}
	})
	mux.HandleFunc("GET /v1/audit/notices", func(w http.ResponseWriter, r *http.Request) {
		ns, err := db.Notices()
		if err != nil {
			t.Error(err)
		}
		for _, n := range ns {
			w.Write(append(n, '\n'))
		}
	})
	mux.HandleFunc("GET /v1/audit/keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"device":    pem(audittest.DeviceKey),
			"issuers":   map[string]string{audittest.IssuerKID: pem(audittest.IssuerKey)},
			"operators": map[string]string{audittest.OperatorKID: pem(audittest.OperatorKey)},
		})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestAuditPullBundle pulls a bundle from the auditor endpoints, over more
// than one page of events, and checks it.
func TestAuditPullBundle(t *testing.T) {
	b := audittest.NewBox(t)
	b.Start()
	for i := range 250 { // 5 events each: more than a page
		v := b.Visit()
		if i%100 == 0 {
			b.Read(v, audittest.PurposeChannel)
		}
		b.Advance(5 * time.Minute)
	}
	v := b.Visit()
	b.Revoke(v.Subject, "", "visitor withdrew")
	b.Advance(time.Hour)
	// Stopped: its clock is a test's, months before the pull stamps the
	// bundle, and a box still running would be judged up to then (rule 4).
	b.Stop()
	srv := auditorEndpoints(t, b.DB, "auditor-secret")
	tokenFile := filepath.Join(t.TempDir(), "auditor.token")
	if err := os.WriteFile(tokenFile, []byte("auditor-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	stdout, stderr, code := runArgs(t, "audit", "pull", "--url", srv.URL, "--token-file", tokenFile, "--bundle", dir)
	if code != 0 {
		t.Fatalf("pull: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "252 pieces of evidence") {
		t.Errorf("pull said %q", stdout)
	}
	if b.DB.Size() <= pageSize {
		t.Fatalf("the log has %d events: not more than a page", b.DB.Size())
	}
	stdout, stderr, code = runArgs(t, "audit", "check", dir)
	if code != 0 || !strings.Contains(stdout, "visitors asked 251") {
		t.Errorf("check: exit %d\n%s%s", code, stdout, stderr)
	}

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--bundle", filepath.Join(t.TempDir(), "b"), "--after", "3"},
			{"--bundle", filepath.Join(t.TempDir(), "b"), "--checkpoint", "cp"},
		} {
			_, _, code := runArgs(t, append([]string{"audit", "pull", "--url", srv.URL, "--token-file", tokenFile}, args...)...)
			if code != 2 {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
		}
	})
	t.Run("into a bundle that exists", func(t *testing.T) {
		_, stderr, code := runArgs(t, "audit", "pull", "--url", srv.URL, "--token-file", tokenFile, "--bundle", dir)
		if code != 1 || !strings.Contains(stderr, "not empty") {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}
