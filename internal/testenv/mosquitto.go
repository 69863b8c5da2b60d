package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a real Mosquitto broker on a loopback port the test picked,
// with persistence in a temporary directory, so that a test can stop and
// restart it and keep its queued messages.
type Mosquitto struct {
	tb   testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}

	logMu sync.Mutex
	log   bytes.Buffer
}

// StartMosquitto starts a broker that lets anyone in and queues without
// limit; it is stopped when the test ends.
func StartMosquitto(tb testing.TB) *Mosquitto {
	tb.Helper()
	return StartMosquittoConfig(tb, func(port int, dir string) string {
		return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
`, port, dir)
	})
}

// StartMosquittoConfig starts a broker with the configuration conf returns
// for the port the test picked and a directory of its own (for persistence
// and any other file). It is stopped when the test ends.
func StartMosquittoConfig(tb testing.TB, conf func(port int, dir string) string) *Mosquitto {
	tb.Helper()
	m := &Mosquitto{tb: tb, bin: Program(tb, "mosquitto"), dir: tb.TempDir(), port: FreePort(tb)}
	text := conf(m.port, m.dir) + "user " + currentUser() + "\n"
	if err := os.WriteFile(filepath.Join(m.dir, "mosquitto.conf"), []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	m.Start()
	tb.Cleanup(func() {
		m.Stop()
		if tb.Failed() {
			tb.Logf("mosquitto log:\n%s", m.Log())
		}
	})
	return m
}

// currentUser is the user mosquitto keeps when started by root: otherwise it
// drops to "mosquitto", which cannot write the test's persistence directory.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

// URL is the broker's address for paho: tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// Addr is host:port.
func (m *Mosquitto) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// Start (re)starts the broker and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.tb.Fatal("mosquitto already running")
	}
	cmd := exec.Command(m.bin, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	cmd.Stdout, cmd.Stderr = logWriter{m}, logWriter{m}
	if err := cmd.Start(); err != nil {
		m.tb.Fatalf("start mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	exited := false
	listening := WaitUntil(10*time.Second, func() bool {
		select {
		case <-done:
			exited = true
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	switch {
	case exited:
		m.tb.Fatalf("mosquitto exited at start: %s", m.Log())
	case !listening:
		m.tb.Fatalf("mosquitto not listening on %s after 10s", m.Addr())
	}
}

// Stop stops the broker with SIGTERM (it saves its persistence file) and waits.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Log is what the broker printed so far.
func (m *Mosquitto) Log() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

type logWriter struct{ m *Mosquitto }

func (w logWriter) Write(p []byte) (int, error) {
	w.m.logMu.Lock()
	defer w.m.logMu.Unlock()
	return w.m.log.Write(p)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
