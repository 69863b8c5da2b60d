package testenv_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// The Makefile installs the omniwitness the tests look for.
func TestOmniwitnessVersionInMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(testenv.Root(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^OMNIWITNESS_VERSION := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no OMNIWITNESS_VERSION in the Makefile")
	}
	if got, want := string(m[1]), testenv.OmniwitnessVersion; got != want {
		t.Errorf("Makefile installs omniwitness %s, the tests want %s", got, want)
	}
}

// The Makefile installs the axe-core the browser tests look for.
func TestAxeVersionInMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(testenv.Root(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^AXE_VERSION := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no AXE_VERSION in the Makefile")
	}
	if got, want := string(m[1]), testenv.AxeVersion; got != want {
		t.Errorf("Makefile installs axe-core %s, the tests want %s", got, want)
	}
}
