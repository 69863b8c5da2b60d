package capture

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
)

// JPEGQuality is the quality of saved crops: high enough to keep the detail
// a face crop is kept for, at roughly 10-20 KB for a 200-pixel face.
const JPEGQuality = 90

// EncodeJPEG encodes a crop as baseline JPEG at JPEGQuality, in memory only.
func EncodeJPEG(img image.Image) ([]byte, error) {
	if img == nil || img.Bounds().Empty() {
		return nil, fmt.Errorf("capture: encode JPEG: empty image")
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: JPEGQuality}); err != nil {
		return nil, fmt.Errorf("capture: encode JPEG: %w", err)
	}
	return buf.Bytes(), nil
}
