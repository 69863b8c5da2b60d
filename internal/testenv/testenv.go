// Package testenv finds what the tests need outside the Go code: the face
// stills in testdata/, the YuNet models beside the checkout, and programs
// such as mosquitto.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Root is the repository's top directory.
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CI reports whether the tests run under CI (CI=true), where a missing
// prerequisite is a failure rather than a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// Face returns the path of a face still in testdata/faces.
func Face(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(Root(), "testdata", "faces", name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("face still: %v", err)
	}
	return p
}

// ModelDir is where the YuNet models are looked for: $CONSENTCAM_MODELS, or
// ../shared/models beside the checkout.
func ModelDir() string {
	if d := os.Getenv("CONSENTCAM_MODELS"); d != "" {
		return d
	}
	return filepath.Join(Root(), "..", "shared", "models")
}

// Model returns the path of a YuNet model such as "yunet_320x320.onnx". When
// it is missing the test is skipped with a message saying how to get it, or
// fails under CI.
func Model(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(ModelDir(), name)
	if _, err := os.Stat(p); err != nil {
		missing(tb, "YuNet model %s not found (%v): put it in ../shared/models or set CONSENTCAM_MODELS; README.md says where to get it", name, err)
	}
	return p
}

// Program returns the path of an executable such as "mosquitto". When it is
// missing the test is skipped (or fails under CI): `make deps` installs it.
func Program(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian installs mosquitto in /usr/sbin, which is not on every PATH.
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if q := filepath.Join(dir, name); isExecutable(q) {
				return q
			}
		}
		missing(tb, "%s not found: run `make deps` to install the Debian packages the tests need", name)
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if CI() {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}
