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

// The model fetch-model installs, and its SHA-256 (README, "Face detector model").
const (
	modelName   = "yunet_320x320.onnx"
	modelSHA256 = "ce49cfa1630164d5559b4d23de1f1ed472d9e7f57bff665d418d3b52a8144f9c"
)

// fetchModel runs deploy/deb/fetch-model (what `make model` runs and the
// package installs as /usr/libexec/consentcam/fetch-model).
func fetchModel(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command("sh", append([]string{filepath.Join(testenv.Root(), "deploy", "deb", "fetch-model")}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// TestFetchModel checks the model script with local files, since its
// publisher cannot be reached from the tests: what it says when the
// download fails, that it refuses a file whose SHA-256 is not the model's,
// and that it installs the right one where the auto detector looks.
func TestFetchModel(t *testing.T) {
	testenv.Program(t, "curl")
	model := testenv.Model(t, modelName)
	other := testenv.Model(t, "yunet_640x640.onnx")

	t.Run("offline", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "share")
		_, stderr, code := fetchModel(t, []string{"CONSENTCAM_MODEL_URL=file:///nonexistent/" + modelName}, dir)
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		for _, want := range []string{
			"download failed: file:///nonexistent/" + modelName,
			"--from /path/to/" + modelName + " " + dir,
			"copies it to " + filepath.Join(dir, modelName),
			modelSHA256,
			"onnx/yunet_yunet_final_320_320_simplify.onnx",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("the offline message lacks %q:\n%s", want, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, modelName)); err == nil {
			t.Error("a model file was left after the download failed")
		}
	})

	t.Run("wrong file", func(t *testing.T) {
		dir := t.TempDir()
		_, stderr, code := fetchModel(t, nil, "--from", other, dir)
		if code != 1 || !strings.Contains(stderr, "is not the model: its SHA-256 is") {
			t.Errorf("exit code %d, stderr %q: want 1 and the checksum refused", code, stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("files left in the model directory: %v", entries)
		}
	})

	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"copy", nil, []string{"--from", model}},
		{"download", []string{"CONSENTCAM_MODEL_URL=file://" + model}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "share")
			stdout, stderr, code := fetchModel(t, tc.env, append(tc.args, dir)...)
			if code != 0 {
				t.Fatalf("exit code %d: %s%s", code, stdout, stderr)
			}
			dest := filepath.Join(dir, modelName)
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(model)
			if !bytes.Equal(got, want) {
				t.Error("the installed model differs from the source")
			}
			if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode().Perm())
			}
			// Again: it is there, nothing to do.
			stdout, _, code = fetchModel(t, []string{"CONSENTCAM_MODEL_URL=file:///nonexistent"}, dir)
			if code != 0 || !strings.Contains(stdout, "is there and its SHA-256 is right") {
				t.Errorf("second run: exit code %d, %q", code, stdout)
			}
		})
	}
}
