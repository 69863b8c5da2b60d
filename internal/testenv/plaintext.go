package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// jpegStart is how every colour JPEG Go's image/jpeg writes begins: SOI and
// a DQT segment holding both quantisation tables. Seven bytes, so that
// ciphertext does not hold it by chance (a bare FF D8 FF turns up in a few
// hundred kilobytes of random bytes often enough to make a test flaky).
var jpegStart = []byte{0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x84, 0x00}

// NoPlaintext fails the test if any file under root holds the start of a
// JPEG or any 32-byte piece of one of the given images: no picture may be
// on disk in plain text.
func NoPlaintext(tb testing.TB, root string, images ...[]byte) {
	tb.Helper()
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, jpegStart) {
			tb.Errorf("%s holds the start of a JPEG", path)
		}
		for i, img := range images {
			for off := 0; off+32 <= len(img); off += 32 {
				if bytes.Contains(data, img[off:off+32]) {
					tb.Errorf("%s holds bytes %d-%d of image %d in plain text", path, off, off+32, i)
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
