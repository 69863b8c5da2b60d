package debtest_test

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/capture/opencv/opencvtest"
	"github.com/consentcam/consentcam/internal/testenv"
)

// TestArm64UnderQemu runs the arm64 package's binary, cross-built with cgo
// against bookworm's arm64 OpenCV, under qemu-aarch64-static with the arm64
// libraries of the sysroot `make deb` made: version, then probe with the
// YuNet detector on a clip (OpenCV's dnn module and video decoder on arm64).
func TestArm64UnderQemu(t *testing.T) {
	qemu := testenv.Program(t, "qemu-aarch64-static")
	deb := debPackage(t, "arm64", testVersion)
	sysroot := filepath.Join(debCache(t), "bookworm-arm64-sysroot")
	bin := filepath.Join(extract(t, deb), "usr", "bin", "consentcam")
	model := testenv.Model(t, modelName)
	clip := opencvtest.SceneNamed(t, "visitor").WriteClip(t, t.TempDir())

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Fatalf("the arm64 package's binary is for %v", f.Machine)
	}
	f.Close()
	if out := run(t, qemu, "-L", sysroot, bin, "version"); !strings.Contains(out, testVersion) {
		t.Errorf("consentcam version under qemu: %q, want %s", out, testVersion)
	}
	cmd := exec.Command(qemu, "-L", sysroot, bin, "probe", "--source", clip, "--detector", "auto", "--model", model,
		"--frames", "6", "--realtime=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe under qemu: %v\n%s", err, out)
	}
	if sum := probeSummary(t, string(out)); sum.Detector != "yunet" || sum.Frames != 6 || sum.Qualified == 0 {
		t.Errorf("probe under qemu: %+v, want 6 frames by yunet, the visitor found", sum)
	}
}
