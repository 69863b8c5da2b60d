package layout_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// Every test docs/SPEC.md names in "Privacy rules and the tests that hold
// them" exists in the package it is listed under, so the list stays true
// when a test is renamed or removed. Names listed under an issue still
// open ("store, issue 13") are checked once their package has them.
func TestSpecPrivacyTestsExist(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "SPEC.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(spec), "## Privacy rules and the tests that hold them\n")
	if !ok {
		t.Fatal("SPEC.md has no section \"Privacy rules and the tests that hold them\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	testName := regexp.MustCompile(`^Test[A-Za-z0-9_]+$`)
	checked := 0
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 || !strings.Contains(cells[2], ":") {
			continue
		}
		for _, seg := range strings.Split(cells[2], ";") {
			pkg, names, ok := strings.Cut(seg, ":")
			if !ok {
				t.Errorf("SPEC privacy rules: %q is not \"package: tests\"", seg)
				continue
			}
			pkg = strings.TrimSpace(pkg)
			pending := false
			if p, _, ok := strings.Cut(pkg, ", issue "); ok {
				pkg, pending = p, true
			}
			if pkg == "cmd" {
				pkg = "cmd/consentcam"
			}
			src := testSources(t, filepath.Join(testenv.Root(), pkg))
			for _, name := range strings.Split(names, ",") {
				name = strings.TrimSpace(name)
				if !testName.MatchString(name) {
					continue
				}
				checked++
				if !strings.Contains(src, "func "+name+"(") && !pending {
					t.Errorf("SPEC privacy rules name %s in %s, which has no such test", name, pkg)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("read only %d test names from SPEC's privacy rules: is the table's format changed?", checked)
	}
}

// testSources is the text of a package's test files.
func testSources(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Errorf("no test files in %s", dir)
		return ""
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}
