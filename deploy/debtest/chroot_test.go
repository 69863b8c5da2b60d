package debtest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// chroot is a minimal Debian bookworm to install the package in: an
// overlay on the cached debootstrap tree (deploy/deb/debroot.sh), thrown
// away when the test ends, with apt's downloads kept in the cache.
type chroot struct {
	t       *testing.T
	dir     string
	updated bool // apt-get update has run
}

func newChroot(t *testing.T) *chroot {
	t.Helper()
	testenv.NeedRoot(t, "installing the package in a chroot")
	for _, p := range []string{"debootstrap", "chroot", "mount", "umount"} {
		testenv.Program(t, p)
	}
	cache := debCache(t)
	base := filepath.Join(cache, "bookworm-amd64-chroot")
	if _, err := os.Stat(filepath.Join(base, ".complete")); err != nil {
		t.Logf("making a minimal bookworm in %s with debootstrap (once: a few minutes)", base)
	}
	run(t, "sh", filepath.Join(testenv.Root(), "deploy", "deb", "debroot.sh"), "amd64", "chroot", base)
	archives := filepath.Join(cache, "apt-archives-amd64")
	if err := os.MkdirAll(filepath.Join(archives, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	c := &chroot{t: t, dir: filepath.Join(tmp, "root")}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.mount("-t", "overlay", "overlay", "-o",
		"lowerdir="+base+",upperdir="+filepath.Join(tmp, "upper")+",workdir="+filepath.Join(tmp, "work"), c.dir)
	// /proc as the unit's ProtectProc=invisible and ProcSubset=pid leave it:
	// the agent and probe run in the chroot with no more than the service has.
	c.mount("-t", "proc", "-o", "hidepid=invisible,subset=pid", "proc", c.path("/proc"))
	c.mount("--bind", archives, c.path("/var/cache/apt/archives"))
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	c.write("/etc/resolv.conf", resolv, 0o644)
	return c
}

// mount mounts, and unmounts when the test ends; the last argument is the
// mount point.
func (c *chroot) mount(args ...string) {
	c.t.Helper()
	run(c.t, "mount", args...)
	point := args[len(args)-1]
	c.t.Cleanup(func() {
		if out, err := exec.Command("umount", point).CombinedOutput(); err != nil {
			c.t.Errorf("umount %s: %v: %s", point, err, out)
			exec.Command("umount", "--lazy", point).Run()
		}
	})
}

func (c *chroot) path(p string) string { return filepath.Join(c.dir, p) }

func (c *chroot) write(p string, data []byte, mode os.FileMode) {
	c.t.Helper()
	if err := os.WriteFile(c.path(p), data, mode); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chroot) read(p string) []byte {
	c.t.Helper()
	data, err := os.ReadFile(c.path(p))
	if err != nil {
		c.t.Fatal(err)
	}
	return data
}

// command is a program run inside the chroot, as root.
func (c *chroot) command(args ...string) *exec.Cmd {
	cmd := exec.Command("chroot", append([]string{c.dir}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	return cmd
}

// as is a program run inside the chroot as a user, with the user's groups
// (numeric ids from the chroot's own user database), as systemd runs the
// agent.
func (c *chroot) as(user string, args ...string) *exec.Cmd {
	c.t.Helper()
	uid := strings.TrimSpace(c.must("id", "-u", user))
	gid := strings.TrimSpace(c.must("id", "-g", user))
	groups := strings.Join(strings.Fields(c.must("id", "-G", user)), ",")
	cmd := exec.Command("chroot", append([]string{"--userspec=" + uid + ":" + gid, "--groups=" + groups, c.dir}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/var/lib/" + user}
	return cmd
}

// groups lists a user's groups in the chroot.
func (c *chroot) groups(user string) []string {
	c.t.Helper()
	return strings.Fields(c.must("id", "-nG", user))
}

// must runs a program in the chroot and returns its output; the test fails
// when it fails.
func (c *chroot) must(args ...string) string {
	c.t.Helper()
	return c.mustCmd(c.command(args...))
}

func (c *chroot) mustCmd(cmd *exec.Cmd) string {
	c.t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("in the chroot, %s: %v\n%s%s", strings.Join(cmd.Args[1:], " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// install copies a package into the chroot and installs it with apt, which
// resolves its dependencies from Debian's archive; it returns apt's output.
func (c *chroot) install(deb string) string {
	c.t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		c.t.Fatal(err)
	}
	name := "/tmp/" + filepath.Base(deb)
	c.write(name, data, 0o644)
	if !c.updated {
		// The cached tree's lists age as Debian publishes point releases.
		c.must("apt-get", "update", "-q")
		c.updated = true
	}
	out := c.must("apt-get", "install", "-y", "-q", "--no-install-recommends", name)
	// Keep the download cache to what the archive still has.
	c.must("apt-get", "autoclean", "-q")
	return out
}

// stat returns a file's mode and owner in the chroot, as "0700 consentcam:consentcam".
func (c *chroot) stat(p string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must("stat", "-c", "%04a %U:%G", p))
}
