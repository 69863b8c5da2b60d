package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// DebCache is where `make deb` and the package tests keep the Debian trees
// they make once (an arm64 sysroot, a minimal bookworm chroot) and the
// packages apt downloaded into them: $CONSENTCAM_DEB_CACHE, or
// consentcam/deb in the user's cache directory (~/.cache), as the
// Makefile's DEB_CACHE.
func DebCache() (string, error) {
	if d := os.Getenv("CONSENTCAM_DEB_CACHE"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "consentcam", "deb"), nil
}

// NeedRoot skips the test, saying why it needs root, when it does not run
// as root; under CI, which runs as root, it fails instead.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		missing(tb, "%s needs root: run the tests as root (CI does)", why)
	}
}

// Unavailable skips the test with a message saying what is missing and how
// to get it, or fails it under CI, where `make test-deps` has installed
// everything.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	missing(tb, format, args...)
}
