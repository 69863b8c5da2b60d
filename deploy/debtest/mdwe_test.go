package debtest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// The unit sets MemoryDenyWriteExecute=yes. systemd 252 carries it out
// with a seccomp filter; mdweExec installs the same filter and executes a
// program under it, so the test can run the packaged binary's detector as
// the service would, without systemd. The test binary runs itself with
// mdweEnv set to do so (see init).
const mdweEnv = "CONSENTCAM_DEBTEST_MDWE_EXEC"

func init() {
	if os.Getenv(mdweEnv) == "" {
		return
	}
	args := os.Args[1:]
	if err := mdweExec(args); err != nil {
		fmt.Fprintln(os.Stderr, "mdwe:", err)
		os.Exit(125)
	}
}

// The system calls systemd's MemoryDenyWriteExecute= filters, and its rules:
// mmap refused with PROT_WRITE|PROT_EXEC together, mprotect and
// pkey_mprotect with PROT_EXEC, shmat with SHM_EXEC (src/shared/seccomp-util.c).
var mdweSyscalls = map[string]struct {
	audit                               uint32
	mmap, mprotect, pkeyMprotect, shmat uint32
}{
	"amd64": {audit: 0xc000003e, mmap: 9, mprotect: 10, pkeyMprotect: 329, shmat: 30},
	"arm64": {audit: 0xc00000b7, mmap: 222, mprotect: 226, pkeyMprotect: 288, shmat: 196},
}

type sockFilter struct {
	code uint16
	jt   uint8
	jf   uint8
	k    uint32
}

type sockFprog struct {
	len    uint16
	filter *sockFilter
}

func mdweExec(args []string) error {
	n, ok := mdweSyscalls[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no MemoryDenyWriteExecute filter for %s", runtime.GOARCH)
	}
	const (
		ldW    = 0x00 | 0x20 // BPF_LD|BPF_W|BPF_ABS
		jeqK   = 0x05 | 0x10 // BPF_JMP|BPF_JEQ|BPF_K
		andK   = 0x04 | 0x50 // BPF_ALU|BPF_AND|BPF_K
		retK   = 0x06        // BPF_RET|BPF_K
		allow  = 0x7fff0000  // SECCOMP_RET_ALLOW
		deny   = 0x00050000 | uint32(syscall.EPERM)
		arg2lo = 16 + 2*8 // seccomp_data.args[2], low half (little endian)
	)
	f := []sockFilter{
		/* 0 */ {ldW, 0, 0, 4}, // arch
		/* 1 */ {jeqK, 1, 0, n.audit},
		/* 2 */ {retK, 0, 0, deny},
		/* 3 */ {ldW, 0, 0, 0}, // nr
		/* 4 */ {jeqK, 4, 0, n.mmap},
		/* 5 */ {jeqK, 6, 0, n.mprotect},
		/* 6 */ {jeqK, 5, 0, n.pkeyMprotect},
		/* 7 */ {jeqK, 7, 0, n.shmat},
		/* 8 */ {retK, 0, 0, allow},
		/* 9: mmap */ {ldW, 0, 0, arg2lo},
		/* 10 */ {andK, 0, 0, 0x6},
		/* 11 */ {jeqK, 7, 6, 0x6}, // to 19 deny, else 18 allow
		/* 12: mprotect */ {ldW, 0, 0, arg2lo},
		/* 13 */ {andK, 0, 0, 0x4},
		/* 14 */ {jeqK, 4, 3, 0x4},
		/* 15: shmat */ {ldW, 0, 0, arg2lo},
		/* 16 */ {andK, 0, 0, 0o100000},
		/* 17 */ {jeqK, 1, 0, 0o100000},
		/* 18 */ {retK, 0, 0, allow},
		/* 19 */ {retK, 0, 0, deny},
	}
	prog := sockFprog{len: uint16(len(f)), filter: &f[0]}
	runtime.LockOSThread() // the filter is the calling thread's; execve keeps it
	const prSetNoNewPrivs, prSetSeccomp, seccompModeFilter = 38, 22, 2
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %v", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetSeccomp, seccompModeFilter, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("prctl(PR_SET_SECCOMP): %v", e)
	}
	if len(args) == 1 && args[0] == "selftest" {
		// The filter works: writable-executable memory is refused.
		_, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != syscall.EPERM {
			return fmt.Errorf("mmap(PROT_WRITE|PROT_EXEC) under the filter: %v, want EPERM", err)
		}
		os.Exit(0)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, mdweEnv+"=") {
			env = append(env, kv)
		}
	}
	return syscall.Exec(args[0], args, env)
}

// underMDWE is a command that runs args (the program's absolute path
// first) with env under the MemoryDenyWriteExecute filter.
func underMDWE(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(append([]string(nil), env...), mdweEnv+"=1")
	return cmd
}

// TestMemoryDenyWriteExecute runs the packaged binary's YuNet detector
// (OpenCV's dnn module) and video decoder under the filter systemd installs
// for MemoryDenyWriteExecute=yes. On amd64 only: under qemu-user (arm64)
// the filter would bind the emulator, which needs writable-executable
// memory for its own translation, not the program.
func TestMemoryDenyWriteExecute(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the packaged amd64 binary runs natively only on amd64, not %s", runtime.GOARCH)
	}
	if out, err := underMDWE(t, os.Environ(), "selftest").CombinedOutput(); err != nil {
		t.Fatalf("the filter does not refuse writable-executable memory: %v\n%s", err, out)
	}
	root := extract(t, debPackage(t, "amd64", testVersion))
	model := testenv.Model(t, modelName)
	clip := opencvtest.SceneNamed(t, "visitor").WriteClip(t, t.TempDir())
	out, err := underMDWE(t, os.Environ(), filepath.Join(root, "usr", "bin", "consentcam"), "probe", "--source", clip,
		"--detector", "yunet", "--model", model, "--realtime=false").CombinedOutput()
	if err != nil {
		t.Fatalf("probe under MemoryDenyWriteExecute: %v\n%s", err, out)
	}
	if sum := probeSummary(t, string(out)); sum.Detector != "yunet" || sum.Qualified == 0 {
		t.Errorf("probe under MemoryDenyWriteExecute: %+v, want yunet finding the visitor", sum)
	}
}
