package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TmpFS mounts a tmpfs of size (such as "4m") on a new temporary directory
// and returns it; it is unmounted when the test ends. Mounting needs root:
// as another user the test is skipped, saying so.
func TmpFS(tb testing.TB, size string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("mounting a small tmpfs to fill needs root: run the tests as root (CI does) for the full-disk tests")
	}
	dir := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(Program(tb, "mount"), "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		tb.Fatalf("mount a tmpfs: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command(Program(tb, "umount"), dir).CombinedOutput(); err != nil {
			tb.Errorf("unmount the tmpfs: %v: %s", err, out)
		}
	})
	return dir
}

// FillDisk writes a file in dir until the file system has no room left and
// returns a function that removes it.
func FillDisk(tb testing.TB, dir string) (free func()) {
	tb.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	return func() {
		if err := os.Remove(path); err != nil {
			tb.Errorf("free the disk: %v", err)
		}
	}
}
