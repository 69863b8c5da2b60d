package httpapi_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/agent/httpapi"
	"github.com/consentcam/consentcam/agent/internal/agenttest"
)

// Every route that needs a role refuses a request without a token (401)
// and with a token of another role (403), and takes its own roles.
func TestRolesOnEveryRoute(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	all := []string{httpapi.RoleAuditor, httpapi.RoleOperator, httpapi.RoleKiosk, httpapi.RoleMetrics}
	for _, c := range []struct {
		method, path string
		roles        []string
	}{
		{"GET", "/metrics", []string{httpapi.RoleMetrics, httpapi.RoleAuditor, httpapi.RoleOperator}},
		{"GET", "/v1/audit", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/checkpoint", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/proof/inclusion?seq=0", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/proof/consistency?from=1&to=1", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/evidence", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/notices", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/audit/keys", []string{httpapi.RoleAuditor}},
		{"GET", "/v1/records?subject=s", []string{httpapi.RoleOperator}},
		{"GET", "/v1/records/r/image?purpose=p", []string{httpapi.RoleOperator}},
		{"POST", "/v1/visits", []string{httpapi.RoleKiosk}},
		{"POST", "/kiosk/api/agree", []string{httpapi.RoleKiosk}},
		{"POST", "/kiosk/api/decline", []string{httpapi.RoleKiosk}},
		{"GET", "/kiosk/api/visits/v", []string{httpapi.RoleKiosk}},
	} {
		resp, body := r.Do(c.method, c.path, "", strings.NewReader("{}"))
		agenttest.CheckError(t, c.method+" "+c.path+" without a token", resp.StatusCode, body, http.StatusUnauthorized, httpapi.ReasonUnauthorized)
		for _, role := range all {
			resp, body := r.Do(c.method, c.path, role, strings.NewReader("{}"))
			switch allowed := slices.Contains(c.roles, role); {
			case allowed && (resp.StatusCode == 401 || resp.StatusCode == 403):
				t.Errorf("%s %s as %s: %s, want it let through", c.method, c.path, role, resp.Status)
			case !allowed:
				agenttest.CheckError(t, c.method+" "+c.path+" as "+role, resp.StatusCode, body, http.StatusForbidden, httpapi.ReasonForbidden)
			}
		}
		// A token almost right is no token.
		req, _ := http.NewRequest(c.method, "http://"+r.HTTP.ListenAddr()+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+r.Tokens[c.roles[0]]+"x")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
			t.Errorf("%s %s with a token one character longer: %v %v", c.method, c.path, resp.Status, err)
		} else {
			resp.Body.Close()
		}
	}
}

// Paths out of the embedded pages lead nowhere.
func TestPathTraversal(t *testing.T) {
	r := agenttest.New(t, time.Hour, nil, agenttest.WithKiosk(kioskKid))
	for _, path := range []string{
		"/kiosk/static/../../../../etc/passwd",
		"/kiosk/static/..%2f..%2f..%2fetc%2fpasswd",
		"/kiosk/static/%2e%2e/kiosk.go",
		"/kiosk/static/../web/kiosk.html",
		"/kiosk/static//etc/passwd",
	} {
		resp, body := r.Do("GET", path, "", nil)
		if resp.StatusCode == 200 && (strings.Contains(string(body), "root:") || strings.Contains(string(body), "package httpapi")) {
			t.Errorf("GET %s: %s served %q…", path, resp.Status, body[:min(len(body), 40)])
		}
	}
}

// The pages never turn text into markup: configured texts, ids and reasons
// are shown as text (and the policy allows no inline script anyway).
func TestPagesWriteNoMarkup(t *testing.T) {
	files, err := filepath.Glob("web/static/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	markup := regexp.MustCompile(`\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := markup.Find(src); m != nil {
			t.Errorf("%s uses %s", f, m)
		}
	}
}
