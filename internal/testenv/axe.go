package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// AxeVersion is the axe-core (the npm package, Deque's accessibility
// engine) the browser tests inject into the kiosk's pages. The Makefile's
// AXE_VERSION must be the same (TestAxeVersionInMakefile checks it).
const AxeVersion = "4.10.3"

// AxeDir is where axe-core is cached, outside the checkout:
// $CONSENTCAM_AXE_DIR, or consentcam/axe-core-VERSION in the user's cache
// directory (~/.cache). `make test-deps` installs it there.
func AxeDir() (string, error) {
	if d := os.Getenv("CONSENTCAM_AXE_DIR"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "consentcam", "axe-core-"+AxeVersion), nil
}

// Axe returns the source of axe.min.js, installing axe-core with npm on
// first use (one test process at a time, under a file lock). When it cannot
// be had the test is skipped, or fails under CI.
func Axe(tb testing.TB) []byte {
	tb.Helper()
	dir, err := AxeDir()
	if err != nil {
		missing(tb, "axe-core: no cache directory: %v", err)
	}
	file := filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
	if src, err := os.ReadFile(file); err == nil {
		return src
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		missing(tb, "axe-core: %v", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		missing(tb, "axe-core: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		missing(tb, "axe-core: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if src, err := os.ReadFile(file); err == nil { // another test process installed it meanwhile
		return src
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		missing(tb, "axe-core is not installed and npm is not on PATH to install it: run `make test-deps`")
	}
	tb.Logf("installing axe-core %s into %s (once)", AxeVersion, dir)
	cmd := exec.Command(npm, "install", "--prefix", dir, "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
		"axe-core@"+AxeVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(tb, "npm install axe-core@%s: %v\n%s", AxeVersion, err, out)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		missing(tb, "axe-core: %v", err)
	}
	return src
}
