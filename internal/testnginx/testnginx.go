// Package testnginx runs a real nginx (Debian's package nginx) for tests:
// on 127.0.0.1, on a free port of its own, as one process (`daemon off;
// master_process off;`) whose configuration, pid file, logs and temp
// directories are all in a directory the test owns, so that an nginx the
// package installed as a service does not matter.
//
// Tests that claim to work behind nginx must run behind a real one, so a
// missing nginx is a failure that says how to install it, never a skip.
package testnginx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/harness"
)

const (
	// startTimeout bounds how long a starting nginx may take to accept
	// connections.
	startTimeout = 15 * time.Second
	// stopTimeout bounds how long nginx may take to exit after SIGTERM
	// before it is killed.
	stopTimeout = 5 * time.Second
)

// sbinNginx is where Debian installs nginx, which a non-root PATH may lack.
var sbinNginx = "/usr/sbin/nginx"

// config wraps the caller's http-level text (%[2]s) with every path in
// the server's directory (%[1]s).
const config = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events {
	worker_connections 256;
}
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;

%[2]s
}
`

// Server is one nginx process.
type Server struct {
	dir  string
	addr string

	mu   sync.Mutex
	proc *harness.Process // nil once stopped
}

// Start runs nginx for the test, in a directory of t.TempDir(), and stops
// it when the test ends. servers returns what goes inside nginx's http
// block — server blocks listening on addr ("127.0.0.1:port"), upstreams —
// and is called again with another port if the first is taken. It fails
// the test when nginx is not installed, refuses the configuration or does
// not come up.
func Start(t testing.TB, servers func(addr string) string) *Server {
	t.Helper()
	s, err := StartProcess(t.TempDir(), servers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess is Start for code without a *testing.T: nginx's files go
// in dir, and the caller must Stop it.
func StartProcess(dir string, servers func(addr string) string) (*Server, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat(sbinNginx); serr != nil {
			return nil, errors.New("testnginx: nginx is not installed: run `apt-get install nginx` " +
				"(Debian's package; .ci/run installs it) — the forward-auth tests run behind a real nginx")
		}
		bin = sbinNginx
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		ports, err := harness.FreePorts(1)
		if err != nil {
			return nil, err
		}
		s := &Server{dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
		err = s.start(bin, servers(s.addr))
		if err == nil {
			return s, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
	}
}

// Addr is the host:port nginx listens on.
func (s *Server) Addr() string { return s.addr }

// URL is http://Addr().
func (s *Server) URL() string { return "http://" + s.addr }

// Dir is nginx's directory: nginx.conf, error.log, access.log.
func (s *Server) Dir() string { return s.dir }

// ErrorLog is the end of nginx's error log, for failure messages.
func (s *Server) ErrorLog() string { return tail(filepath.Join(s.dir, "error.log")) }

func (s *Server) start(bin, http string) error {
	conf := filepath.Join(s.dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, config, s.dir, http), 0o600); err != nil {
		return err
	}
	errorLog := filepath.Join(s.dir, "error.log")
	_ = os.Remove(errorLog)
	// -e: the log for what happens before the configuration is read.
	cmd := exec.Command(bin, "-p", s.dir+"/", "-c", conf, "-e", errorLog)
	cmd.Dir = s.dir
	out, err := os.Create(filepath.Join(s.dir, "nginx.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := harness.Start(cmd)
	if err != nil {
		return fmt.Errorf("testnginx: starting nginx: %w", err)
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-proc.Exited():
			s.Stop()
			return fmt.Errorf("testnginx: nginx on %s exited while starting (%s); its log:\n%s\n%s",
				s.addr, proc.State(), s.ErrorLog(), tail(filepath.Join(s.dir, "nginx.out")))
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("testnginx: nginx on %s did not accept connections within %s; its log:\n%s", s.addr, startTimeout, s.ErrorLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops nginx now: SIGTERM, then SIGKILL if it has not exited within
// a few seconds. It may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
		s.proc = nil
	}
}

// Running reports whether the nginx process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
