package debtest_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// TestInstall installs the amd64 package with apt in a minimal bookworm
// and checks what it installed, then uses the binary as an installer would:
// version, keys gen, the model script, and probe on a clip as the
// consentcam user with the packaged configuration, whose auto detector must
// find the model in /usr/share/consentcam.
func TestInstall(t *testing.T) {
	deb := debPackage(t, "amd64", testVersion)
	model, err := os.ReadFile(testenv.Model(t, modelName))
	if err != nil {
		t.Fatal(err)
	}
	clip, err := os.ReadFile(opencvtest.SceneNamed(t, "visitor").WriteClip(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	c := newChroot(t)
	out := c.install(deb)

	t.Run("postinst", func(t *testing.T) {
		for _, want := range []string{
			"not started",
			"consentcam keys gen --dir /etc/consentcam",
			"/usr/libexec/consentcam/fetch-model",
			"systemctl enable --now consentcam",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the postinst's message lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("files", func(t *testing.T) {
		for path, want := range map[string]string{
			"/usr/bin/consentcam":                    "0755 root:root",
			"/lib/systemd/system/consentcam.service": "0644 root:root",
			"/etc/consentcam/consentcam.yaml":        "0644 root:root",
			"/var/lib/consentcam":                    "0700 consentcam:consentcam",
			"/usr/libexec/consentcam/fetch-model":    "0755 root:root",
		} {
			if got := c.stat(path); got != want {
				t.Errorf("%s: %s, want %s", path, got, want)
			}
		}
		if got := c.must("dpkg-query", "-W", "-f=${Conffiles}", "consentcam"); !strings.Contains(got, "/etc/consentcam/consentcam.yaml ") {
			t.Errorf("dpkg's conffiles: %q, want /etc/consentcam/consentcam.yaml", got)
		}
	})
	t.Run("user", func(t *testing.T) {
		// consentcam:x:100:102:consentcam agent,,,:/var/lib/consentcam:/usr/sbin/nologin
		f := strings.Split(strings.TrimSpace(c.must("getent", "passwd", "consentcam")), ":")
		if len(f) != 7 {
			t.Fatalf("getent passwd consentcam: %q", f)
		}
		if uid, _ := strconv.Atoi(f[2]); uid == 0 || uid >= 1000 {
			t.Errorf("uid %d: want a system user (1-999)", uid)
		}
		if f[5] != "/var/lib/consentcam" || f[6] != "/usr/sbin/nologin" {
			t.Errorf("home %s, shell %s: want /var/lib/consentcam, /usr/sbin/nologin", f[5], f[6])
		}
		groups := c.groups("consentcam")
		for _, g := range []string{"consentcam", "video"} {
			if !strings.Contains(" "+strings.Join(groups, " ")+" ", " "+g+" ") {
				t.Errorf("consentcam's groups %v lack %s", groups, g)
			}
		}
	})
	t.Run("version", func(t *testing.T) {
		if got := c.must("consentcam", "version"); !strings.Contains(got, testVersion) {
			t.Errorf("consentcam version: %q, want %s", got, testVersion)
		}
	})
	t.Run("keys gen", func(t *testing.T) {
		c.must("consentcam", "keys", "gen", "--dir", "/etc/consentcam")
		for path, want := range map[string]string{
			"/etc/consentcam/master.key": "0600 root:root",
			"/etc/consentcam/device.key": "0600 root:root",
			"/etc/consentcam/issuer.pub": "0644 root:root",
		} {
			if got := c.stat(path); got != want {
				t.Errorf("%s: %s, want %s", path, got, want)
			}
		}
		// The packaged configuration, with its packaged paths, is accepted.
		if got := c.must("consentcam", "notice", "--config", "/etc/consentcam/consentcam.yaml", "--hash"); strings.TrimSpace(got) == "" {
			t.Error("consentcam notice --hash printed nothing")
		}
	})
	t.Run("probe", func(t *testing.T) {
		c.write("/tmp/"+modelName, model, 0o644)
		c.must("/usr/libexec/consentcam/fetch-model", "--from", "/tmp/"+modelName)
		if got := c.stat("/usr/share/consentcam/" + modelName); got != "0644 root:root" {
			t.Errorf("the model: %s, want 0644 root:root", got)
		}
		c.write("/srv/visitor.avi", clip, 0o644)
		out := c.mustCmd(c.as("consentcam", "consentcam", "probe", "--config", "/etc/consentcam/consentcam.yaml",
			"--source", "/srv/visitor.avi", "--realtime=false"))
		sum := probeSummary(t, out)
		if sum.Detector != "yunet" || sum.Qualified == 0 {
			t.Errorf("probe's summary %+v: want the yunet detector (the auto detector finding /usr/share/consentcam/%s) and qualified frames", sum, modelName)
		}
	})
}

type summary struct {
	Frames    int    `json:"frames"`
	Qualified int    `json:"qualified"`
	Detector  string `json:"detector"`
}

// probeSummary reads the last line consentcam probe prints.
func probeSummary(t *testing.T, out string) summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("probe's last line: %v\n%s", err, out)
	}
	return s
}

// TestUpgrade installs version A, sets the box up (configuration, keys, a
// token) and runs the agent, which makes its store; then installs version
// B over it: the configuration, keys and state are kept, B's agent opens
// the store and its audit log goes on from A's and verifies. Removing keeps
// them too; purging deletes the state and the user.
func TestUpgrade(t *testing.T) {
	a := debPackage(t, "amd64", "0~test1")
	b := debPackage(t, "amd64", "0~test2")
	clip, err := os.ReadFile(opencvtest.SceneNamed(t, "visitor").WriteClip(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	c := newChroot(t)
	c.install(a)

	// The box's setup, as docs/INSTALL.md says.
	c.must("consentcam", "keys", "gen", "--dir", "/etc/consentcam")
	c.must("chown", "consentcam:", "/etc/consentcam/master.key", "/etc/consentcam/device.key")
	token := make([]byte, 32)
	rand.Read(token)
	c.write("/etc/consentcam/auditor.token", []byte(hex.EncodeToString(token)+"\n"), 0o600)
	c.must("chown", "consentcam:", "/etc/consentcam/auditor.token")
	c.write("/srv/visitor.avi", clip, 0o644)
	port := testenv.FreePort(t)
	conf := string(c.read("/etc/consentcam/consentcam.yaml"))
	for _, r := range [][2]string{
		{"url: /dev/video0 ", "url: /srv/visitor.avi "},
		{"loop: false ", "loop: true "},
		{"listen: 127.0.0.1:8765", fmt.Sprintf("listen: 127.0.0.1:%d", port)},
		// No broker: the agent keeps its messages in the outbox.
		{"url: tcp://127.0.0.1:1883 ", fmt.Sprintf("url: tcp://127.0.0.1:%d ", testenv.FreePort(t))},
	} {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("the packaged configuration has no %q", r[0])
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	c.write("/etc/consentcam/consentcam.yaml", []byte(conf), 0o644)

	// Without the model, the auto detector falls back to the cascade.
	logA, outA := c.runAgent(port)
	if !strings.Contains(outA, "detector=cascade") || !strings.Contains(outA, "capture.model not found") {
		t.Errorf("version A without the model: the agent's log does not say it uses the cascade:\n%s", outA)
	}
	kept := map[string][]byte{}
	for _, p := range []string{"/etc/consentcam/consentcam.yaml", "/etc/consentcam/master.key", "/etc/consentcam/device.key",
		"/etc/consentcam/auditor.token", "/var/lib/consentcam/consentcam.db", "/var/lib/consentcam/consentcam.keys"} {
		kept[p] = c.read(p)
	}

	c.install(b)
	if got := c.must("dpkg-query", "-W", "-f=${Version}", "consentcam"); got != "0~test2" {
		t.Fatalf("installed version %q after the upgrade, want 0~test2", got)
	}
	if got := c.must("consentcam", "version"); !strings.Contains(got, "0~test2") {
		t.Errorf("consentcam version after the upgrade: %q", got)
	}
	for p, data := range kept {
		if !bytes.Equal(c.read(p), data) {
			t.Errorf("the upgrade changed %s", p)
		}
	}
	if got := c.stat("/var/lib/consentcam"); got != "0700 consentcam:consentcam" {
		t.Errorf("/var/lib/consentcam after the upgrade: %s", got)
	}
	// With the model where fetch-model puts it, run's auto detector uses YuNet.
	model, err := os.ReadFile(testenv.Model(t, modelName))
	if err != nil {
		t.Fatal(err)
	}
	c.write("/tmp/"+modelName, model, 0o644)
	c.must("/usr/libexec/consentcam/fetch-model", "--from", "/tmp/"+modelName)
	logB, outB := c.runAgent(port)
	if !strings.Contains(outB, "detector=yunet") {
		t.Errorf("version B with /usr/share/consentcam/%s: the agent's log does not say it uses yunet:\n%s", modelName, outB)
	}
	t.Logf("audit log: %d events under version A, %d under B", bytes.Count(logA, []byte("\n")), bytes.Count(logB, []byte("\n")))
	if !bytes.HasPrefix(logB, logA) || len(logB) <= len(logA) {
		t.Errorf("B's audit log (%d bytes) does not go on from A's (%d bytes)", len(logB), len(logA))
	}

	c.must("apt-get", "remove", "-y", "-q", "consentcam")
	for _, p := range []string{"/var/lib/consentcam/consentcam.db", "/etc/consentcam/consentcam.yaml", "/etc/consentcam/master.key"} {
		if _, err := os.Stat(c.path(p)); err != nil {
			t.Errorf("removing the package deleted %s: %v", p, err)
		}
	}
	c.must("getent", "passwd", "consentcam")

	c.must("apt-get", "purge", "-y", "-q", "consentcam")
	for _, p := range []string{"/var/lib/consentcam", "/etc/consentcam/consentcam.yaml"} {
		if _, err := os.Stat(c.path(p)); err == nil {
			t.Errorf("purging the package left %s", p)
		}
	}
	if out, err := c.command("getent", "passwd", "consentcam").Output(); err == nil {
		t.Errorf("purging the package left the user: %s", out)
	}
	// Keys made with keys gen are not the package's: they stay (docs/INSTALL.md).
	if _, err := os.Stat(c.path("/etc/consentcam/master.key")); err != nil {
		t.Errorf("purging deleted the keys the installer made: %v", err)
	}
}

// runAgent runs `consentcam run` in the chroot as user consentcam, under
// the MemoryDenyWriteExecute filter, as the unit does, until its HTTP API
// answers; pulls its audit log with the
// auditor token and verifies it against device.pub; then stops it with
// SIGTERM, as systemctl stop does. It returns the audit log and what the
// agent printed.
func (c *chroot) runAgent(port int) (auditLog []byte, output string) {
	t := c.t
	t.Helper()
	// As the unit runs it: with MemoryDenyWriteExecute's filter too.
	as := c.as("consentcam", "consentcam", "run", "--config", "/etc/consentcam/consentcam.yaml")
	cmd := underMDWE(t, as.Env, append([]string{as.Path}, as.Args[1:]...)...)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	var exited error
	up := testenv.WaitUntil(2*time.Minute, func() bool {
		select {
		case exited = <-done:
			return true
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !up || cmd.ProcessState != nil {
		t.Fatalf("the agent did not come up (exited: %v):\n%s", exited, out.String())
	}
	// The agent runs under the filter (seccomp mode 2, no new privileges).
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err != nil {
		t.Error(err)
	} else if !strings.Contains(string(status), "\nSeccomp:\t2\n") || !strings.Contains(string(status), "\nNoNewPrivs:\t1\n") {
		t.Errorf("the agent does not run under the MemoryDenyWriteExecute filter:\n%s", status)
	}
	log := c.must("consentcam", "audit", "pull", "--url", fmt.Sprintf("http://127.0.0.1:%d", port), "--token-file", "/etc/consentcam/auditor.token")
	c.write("/tmp/audit.jsonl", []byte(log), 0o644)
	c.must("consentcam", "audit", "verify", "--pubkey", "/etc/consentcam/device.pub", "/tmp/audit.jsonl")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the agent stopped with %v:\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the agent did not stop within a minute of SIGTERM:\n%s", out.String())
	}
	if t.Failed() {
		t.Logf("agent's log:\n%s", out.String())
	}
	return []byte(log), out.String()
}
