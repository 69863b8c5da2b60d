package testenv

import "time"

// WaitUntil calls cond every 20 ms until it returns true or timeout has
// passed, and reports whether it did. Tests use it to wait, with a generous
// timeout, for something that happens in another goroutine or process; it
// never measures speed.
func WaitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
