package debtest_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// workDir holds the packages the tests build, one set per test process.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "consentcam-debtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildMu sync.Mutex
	builtPk = map[string]string{}
)

// debPackage builds consentcam_VERSION_ARCH.deb with the Makefile's
// deb-amd64 or deb-arm64 target (the recipe `make deb` runs), once per test
// process, and returns its path.
func debPackage(t *testing.T, arch, version string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := arch + " " + version
	if p, ok := builtPk[key]; ok {
		return p
	}
	testenv.Program(t, "make")
	if arch == "arm64" {
		testenv.Program(t, "aarch64-linux-gnu-gcc")
		testenv.Program(t, "aarch64-linux-gnu-g++")
		if _, err := os.Stat(filepath.Join(debCache(t), "bookworm-arm64-sysroot", ".complete")); err != nil {
			testenv.Program(t, "mmdebstrap")
			testenv.NeedRoot(t, "making the arm64 sysroot (mmdebstrap)")
		}
	}
	dist := filepath.Join(workDir, version)
	cmd := exec.Command("make", "--no-print-directory", "-C", testenv.Root(), "nfpm", "deb-"+arch,
		"DEB_VERSION="+version, "DIST="+dist)
	t.Logf("building the %s package, version %s (make deb-%s)", arch, version, arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb-%s: %v\n%s", arch, err, out)
	}
	p := filepath.Join(dist, fmt.Sprintf("consentcam_%s_%s.deb", version, arch))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("make deb-%s made no %s: %v", arch, filepath.Base(p), err)
	}
	builtPk[key] = p
	return p
}

// testVersion is the version the tests build, lower than any release.
const testVersion = "0~test1"

func debCache(t *testing.T) string {
	t.Helper()
	d, err := testenv.DebCache()
	if err != nil {
		testenv.Unavailable(t, "no cache directory for the Debian trees: %v", err)
	}
	return d
}

// run runs a program and returns its standard output; it fails the test,
// with both outputs, when the program fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// extract unpacks a package's files into a new directory.
func extract(t *testing.T, deb string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, testenv.Program(t, "dpkg-deb"), "-x", deb, dir)
	return dir
}
