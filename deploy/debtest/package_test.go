package debtest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// TestPackageContents reads the amd64 package's metadata and files: what
// it depends on, its conffile, and each file's mode and owner.
func TestPackageContents(t *testing.T) {
	deb := debPackage(t, "amd64", testVersion)
	dpkgDeb := testenv.Program(t, "dpkg-deb")

	field := func(name string) string {
		return strings.TrimSpace(run(t, dpkgDeb, "--field", deb, name))
	}
	for name, want := range map[string]string{
		"Package":      "consentcam",
		"Version":      testVersion,
		"Architecture": "amd64",
		"Maintainer":   "consentcam developers <maintainers@consentcam.invalid>",
		"Recommends":   "mosquitto",
	} {
		if got := field(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	depends := regexp.MustCompile(`,\s*`).Split(field("Depends"), -1)
	for _, want := range []string{"libopencv-core406", "libopencv-dnn406", "libopencv-videoio406", "libopencv-objdetect406", "opencv-data", "adduser"} {
		if !slices.Contains(depends, want) {
			t.Errorf("Depends %q lacks %s", depends, want)
		}
	}

	conffiles := run(t, dpkgDeb, "--info", deb, "conffiles")
	if strings.TrimSpace(conffiles) != "/etc/consentcam/consentcam.yaml" {
		t.Errorf("conffiles: %q, want only /etc/consentcam/consentcam.yaml", conffiles)
	}

	// dpkg-deb -c: "-rwxr-xr-x root/root 123 2025-01-01 00:00 ./usr/bin/consentcam"
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, dpkgDeb, "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		files[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
	}
	for path, want := range map[string]string{
		"/usr/bin/consentcam":                      "-rwxr-xr-x root/root",
		"/lib/systemd/system/consentcam.service":   "-rw-r--r-- root/root",
		"/etc/consentcam/consentcam.yaml":          "-rw-r--r-- root/root",
		"/usr/libexec/consentcam/fetch-model":      "-rwxr-xr-x root/root",
		"/usr/share/consentcam/README":             "-rw-r--r-- root/root",
		"/usr/share/doc/consentcam/copyright":      "-rw-r--r-- root/root",
		"/usr/share/doc/consentcam/changelog.gz":   "-rw-r--r-- root/root",
		"/usr/share/doc/consentcam/INSTALL.md":     "-rw-r--r-- root/root",
		"/usr/share/doc/consentcam/RELIABILITY.md": "-rw-r--r-- root/root",
		"/usr/share/man/man1/consentcam.1.gz":      "-rw-r--r-- root/root",
	} {
		if got, ok := files[path]; !ok {
			t.Errorf("the package has no %s", path)
		} else if got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}

	dir := extract(t, deb)
	for packaged, source := range map[string]string{
		"etc/consentcam/consentcam.yaml":        "deploy/consentcam.example.yaml",
		"lib/systemd/system/consentcam.service": "deploy/consentcam.service",
		"usr/libexec/consentcam/fetch-model":    "deploy/deb/fetch-model",
	} {
		got, err := os.ReadFile(filepath.Join(dir, packaged))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(testenv.Root(), source))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("/%s is not %s", packaged, source)
		}
	}
	if out := run(t, filepath.Join(dir, "usr/bin/consentcam"), "version"); !strings.Contains(out, testVersion) {
		t.Errorf("consentcam version: %q, want the package's version %s", out, testVersion)
	}
}

// TestUnitSecurity checks the shipped unit's exposure with
// `systemd-analyze security --offline=yes`: at most 2.0 (--threshold is the
// exposure times ten).
func TestUnitSecurity(t *testing.T) {
	analyze := testenv.Program(t, "systemd-analyze")
	unit := filepath.Join(testenv.Root(), "deploy", "consentcam.service")
	cmd := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unit)
	out, err := cmd.CombinedOutput()
	if m := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindSubmatch(out); m != nil {
		t.Logf("exposure: %s", m[1])
	}
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes --threshold=20: %v (exposure above 2.0?)\n%s", err, out)
	}
}

// TestUnitVerify runs `systemd-analyze verify` on the unit as the package
// installs it, beside the binary it starts and this machine's own units.
func TestUnitVerify(t *testing.T) {
	analyze := testenv.Program(t, "systemd-analyze")
	root := extract(t, debPackage(t, "amd64", testVersion))
	units := filepath.Join(root, "lib", "systemd", "system")
	hostUnits := "/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "multi-user.target")); err != nil {
		testenv.Unavailable(t, "this machine has no systemd units in %s to verify against: install systemd", hostUnits)
	}
	// The targets the unit names (multi-user, network-online) come from the host.
	run(t, "cp", "-an", hostUnits+"/.", units+"/")
	if out, err := exec.Command(analyze, "verify", "--root="+root, "consentcam.service").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// It does find faults: a unit starting a binary that is not there.
	if err := os.Remove(filepath.Join(root, "usr", "bin", "consentcam")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", "--root="+root, "consentcam.service").CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify passed a unit whose binary is missing:\n%s", out)
	}
}

// lintianWarnings are the warnings the packages are known to draw, each
// with the reason it stays (docs/INSTALL.md lists them too). Any other
// warning, and any error, fails the test.
var lintianWarnings = map[string]string{
	"package-contains-upstream-installation-documentation": "INSTALL.md is the " +
		"guide for installing this package on a box (keys, model, service), not a build-from-source guide; " +
		"the unit's Documentation= points to it",
}

// TestLintian runs lintian on both packages.
func TestLintian(t *testing.T) {
	lintian := testenv.Program(t, "lintian")
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			deb := debPackage(t, arch, testVersion)
			out, err := exec.Command(lintian, "--tag-display-limit", "0", deb).CombinedOutput()
			t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
			if err != nil {
				t.Errorf("lintian: %v", err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				// "W: consentcam: tag [context]"
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				switch f[0] {
				case "E:":
					t.Errorf("lintian error: %s", line)
				case "W:":
					if _, ok := lintianWarnings[f[2]]; !ok {
						t.Errorf("lintian warning not accounted for in lintianWarnings: %s", line)
					}
				}
			}
		})
	}
}
