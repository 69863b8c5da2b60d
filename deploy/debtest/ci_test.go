package debtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// TestCIInstallsTestPackages checks that .ci/run's apt-get line installs
// every Debian package the Makefile's TEST_PACKAGES names (what `make
// test-deps` installs), so that CI on a new machine has the tools the
// package tests need.
func TestCIInstallsTestPackages(t *testing.T) {
	make := testenv.Program(t, "make")
	out, err := exec.Command(make, "-s", "--no-print-directory", "-C", testenv.Root(),
		"--eval", "print-%: ; @echo $($*)", "print-TEST_PACKAGES").Output()
	if err != nil {
		t.Fatalf("make print-TEST_PACKAGES: %v", err)
	}
	want := strings.Fields(string(out))
	script, err := os.ReadFile(filepath.Join(testenv.Root(), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`apt-get install -y -q --no-install-recommends((?:[^\n]*\\\n)*[^\n]*)`).FindSubmatch(script)
	if m == nil {
		t.Fatal(".ci/run has no apt-get install line")
	}
	got := strings.Fields(strings.ReplaceAll(string(m[1]), "\\", " "))
	for _, p := range want {
		if !slices.Contains(got, p) {
			t.Errorf(".ci/run does not install %s, which TEST_PACKAGES names", p)
		}
	}
	if len(want) < 10 {
		t.Errorf("TEST_PACKAGES: %v, too few to be the Makefile's", want)
	}
}
