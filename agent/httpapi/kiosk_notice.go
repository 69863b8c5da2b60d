package httpapi

import "time"

// kioskNotice is what the kiosk page needs beside the hashed notice of
// /v1/notice, which carries every text in every language it is written in:
// the capture window's length in seconds, for "look at the camera" while it
// is open.
type kioskNotice struct {
	Hash          string `json:"hash"`
	WindowSeconds int64  `json:"window_seconds"`
}

func newKioskNotice(hash string, window time.Duration) kioskNotice {
	return kioskNotice{Hash: hash, WindowSeconds: int64((window + time.Second - 1) / time.Second)}
}
