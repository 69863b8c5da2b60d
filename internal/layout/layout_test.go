package layout_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

const module = "github.com/consentcam/consentcam/"

// forbidden says, for each package, the packages of this module it must not
// depend on, directly or not (docs/ARCHITECTURE.md): imports point from cmd
// to the transports to the core to the leaves; the leaves know nothing of
// one another; only capture/opencv and cmd need OpenCV.
var forbidden = map[string][]string{
	"agent":          {"agent/httpapi", "agent/mqttbus", "capture/opencv", "cmd/consentcam"},
	"agent/httpapi":  {"agent/mqttbus", "capture/opencv", "cmd/consentcam"},
	"agent/mqttbus":  {"agent/httpapi", "capture/opencv", "cmd/consentcam"},
	"capture":        {"agent", "consent", "store", "witness", "capture/opencv"},
	"capture/opencv": {"agent", "consent", "store", "witness"},
	"consent":        {"agent", "capture", "store", "witness"},
	"store":          {"agent", "capture", "consent", "witness"},
	"witness":        {"agent", "capture", "consent", "store"},
	"revoke":         {"agent", "capture", "cmd/consentcam"},
	"audit":          {"agent", "capture", "cmd/consentcam", "revoke"},
	"fleet":          {"agent", "capture", "cmd/consentcam", "revoke"},
}

func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command(testenv.Program(t, "go"), "list", "-deps",
		"-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], module)
		if !ok {
			continue
		}
		bad, ok := forbidden[pkg]
		if !ok {
			continue
		}
		seen++
		for _, dep := range fields[1:] {
			if d, ok := strings.CutPrefix(dep, module); ok && slices.Contains(bad, d) {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
	if seen != len(forbidden) {
		t.Errorf("checked %d packages, want %d: is one renamed?", seen, len(forbidden))
	}
}
