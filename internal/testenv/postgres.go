package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postgres is a real PostgreSQL server (Debian's postgresql) that the test
// started in a directory of its own, listening on a loopback port it
// picked. It is stopped, and its directory removed, when the test ends.
type Postgres struct {
	tb   testing.TB
	bin  string // the directory of initdb, pg_ctl, postgres
	dir  string
	data string
	port int
	cred *syscall.Credential // when the tests run as root: postgres refuses root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}

	logMu sync.Mutex
	log   bytes.Buffer
}

type pgLog struct{ p *Postgres }

func (w pgLog) Write(b []byte) (int, error) {
	w.p.logMu.Lock()
	defer w.p.logMu.Unlock()
	return w.p.log.Write(b)
}

// StartPostgres initialises a cluster (trust authentication, user
// "consentcam", database "consentcam") and starts it.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	p := &Postgres{tb: tb, bin: postgresBin(tb), port: FreePort(tb)}
	dir, err := os.MkdirTemp("", "consentcam-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	p.dir = dir
	tb.Cleanup(func() { os.RemoveAll(dir) })
	p.data = filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root: run them as the
		// postgres user Debian's package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(tb, "the tests run as root and there is no postgres user to run PostgreSQL as: install Debian's postgresql (`make test-deps`)")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.Mkdir(p.data, 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chown(p.data, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "consentcam",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Start()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("postgres log:\n%s", p.Log())
		}
	})
	p.exec("CREATE DATABASE consentcam")
	return p
}

// postgresBin finds the directory of Debian's PostgreSQL programs
// (/usr/lib/postgresql/VERSION/bin, the newest), which are not on PATH.
func postgresBin(tb testing.TB) string {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			return d
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p)
	}
	missing(tb, "PostgreSQL not found: run `make test-deps` to install Debian's postgresql")
	return ""
}

// URL is the connection string of the database "consentcam".
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://consentcam@127.0.0.1:%d/consentcam?sslmode=disable", p.port)
}

// Start (re)starts the server and waits until it accepts connections.
func (p *Postgres) Start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.tb.Fatal("postgres already running")
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data,
		"-c", "listen_addresses=127.0.0.1", "-c", fmt.Sprintf("port=%d", p.port),
		"-c", "unix_socket_directories="+p.data, "-c", "fsync=off", "-c", "shared_buffers=64MB",
		"-c", "max_connections=50")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Stdout, cmd.Stderr = pgLog{p}, pgLog{p}
	if err := cmd.Start(); err != nil {
		p.tb.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	ready := WaitUntil(30*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		return exec.Command(filepath.Join(p.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "consentcam").Run() == nil
	})
	select {
	case <-done:
		p.tb.Fatalf("postgres exited at start:\n%s", p.Log())
	default:
	}
	if !ready {
		p.tb.Fatalf("postgres not ready on port %d after 30s", p.port)
	}
}

// Stop stops the server (fast shutdown) and waits.
func (p *Postgres) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Log is what the server printed so far.
func (p *Postgres) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// exec runs one SQL statement with psql as the superuser.
func (p *Postgres) exec(sql string) {
	p.tb.Helper()
	psql := filepath.Join(p.bin, "psql")
	out, err := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "consentcam",
		"-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	if err != nil {
		p.tb.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
}

// DatabaseSize is the size on disk of the database "consentcam", as
// pg_database_size reports it.
func (p *Postgres) DatabaseSize() int64 {
	p.tb.Helper()
	psql := filepath.Join(p.bin, "psql")
	out, err := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "consentcam",
		"-d", "consentcam", "-At", "-c", "SELECT pg_database_size('consentcam')").CombinedOutput()
	if err != nil {
		p.tb.Fatalf("psql: %v\n%s", err, out)
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(out)), 10, 64)
	if err != nil {
		p.tb.Fatalf("pg_database_size: %q", out)
	}
	return n
}
