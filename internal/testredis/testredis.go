// Package testredis runs a real redis-server (Debian's package
// redis-server) for tests: on 127.0.0.1, on a free port of its own (so a
// Redis service that the package installed on the default port does not
// matter), without persistence, in a directory the test owns.
//
// Tests that claim to exercise Redis must run against a real server, so a
// missing redis-server is a failure that says how to install it, never a
// skip.
//
// Start is for tests; StartProcess is for code without a *testing.T, such
// as a TestMain, which must Stop the server itself.
package testredis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/harness"
)

const (
	// startTimeout bounds how long a starting server may take to answer PING.
	startTimeout = 15 * time.Second
	// stopTimeout bounds how long a server may take to exit after SIGTERM
	// before it is killed.
	stopTimeout = 5 * time.Second
	// ioTimeout bounds one command of Do.
	ioTimeout = 10 * time.Second
	// dumpFile is the RDB file name inside the server's directory.
	dumpFile = "dump.rdb"
)

// ErrNil is what Do returns for a nil reply, e.g. GET of a missing key.
var ErrNil = errors.New("testredis: nil reply")

// Server is one redis-server process.
type Server struct {
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *harness.Process // the running process; nil when stopped
}

// Start starts a redis-server for the test, in a directory of t.TempDir(),
// and stops it when the test ends. It fails the test when redis-server is
// not installed or does not come up.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartProcess(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess starts a redis-server whose working directory (for SAVE's
// dump.rdb and its log) is dir. The caller must Stop it.
func StartProcess(dir string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("testredis: redis-server is not installed: run `apt-get install redis-server` " +
			"(Debian's package; .ci/run installs it) — tests of the Redis session store need a real server")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	// A free port can be taken by someone else before redis-server binds
	// it: try a few.
	for attempt := 0; ; attempt++ {
		ports, err := harness.FreePorts(1)
		if err != nil {
			return nil, err
		}
		s.port = ports[0]
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (dump.rdb, redis.log).
func (s *Server) Dir() string { return s.dir }

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("testredis: already running")
	}
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--protected-mode", "yes",
		"--save", "", // no automatic snapshots (SAVE still works)
		"--appendonly", "no",
		"--dir", s.dir,
		"--dbfilename", dumpFile,
		"--logfile", s.logPath(),
		"--daemonize", "no",
		"--enable-debug-command", "local", // DEBUG for tests, from 127.0.0.1 only
	)
	cmd.Dir = s.dir
	cmd.Stdout = io.Discard
	cmd.Stderr = io.Discard
	proc, err := harness.Start(cmd)
	if err != nil {
		return fmt.Errorf("testredis: starting redis-server: %w", err)
	}
	s.proc = proc

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-proc.Exited():
			s.proc = nil
			return fmt.Errorf("testredis: redis-server on %s exited while starting (%s); its log:\n%s", s.Addr(), proc.State(), s.logTail())
		default:
		}
		if reply, err := s.do("PING"); err == nil && reply == "PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("testredis: redis-server on %s did not answer PING within %s; its log:\n%s", s.Addr(), startTimeout, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server now: SIGTERM, then SIGKILL if it has not exited
// within a few seconds. It may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(stopTimeout)
	s.proc = nil
}

// Restart stops the server if it runs and starts it again on the same
// port and directory, as a Redis restart would: its data is what was last
// saved (by Dump or Do("SAVE")), or nothing.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Do sends one command and returns its reply: a status or bulk string as
// is, an integer in decimal, an array as its elements joined by newlines
// (nested arrays flattened). An error reply is returned as an error, a
// nil reply as ErrNil.
func (s *Server) Do(args ...string) (string, error) {
	return s.do(args...)
}

// DoList sends one command whose reply is an array (KEYS, MGET, …) and
// returns its elements; nil elements are empty strings.
func (s *Server) DoList(args ...string) ([]string, error) {
	v, err := s.command(args...)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("testredis: %s: not an array reply: %v", strings.Join(args, " "), v)
	}
	var out []string
	flatten(arr, &out)
	return out, nil
}

// Dump saves the data set (SAVE) and returns the RDB file.
func (s *Server) Dump() ([]byte, error) {
	if _, err := s.do("SAVE"); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(s.dir, dumpFile))
}

func (s *Server) do(args ...string) (string, error) {
	v, err := s.command(args...)
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case nil:
		return "", ErrNil
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case []any:
		var out []string
		flatten(v, &out)
		return strings.Join(out, "\n"), nil
	default:
		return fmt.Sprint(v), nil
	}
}

// command speaks RESP2 over a fresh connection.
func (s *Server) command(args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("testredis: no command")
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), ioTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	v, err := readReply(bufio.NewReader(conn))
	if err != nil {
		return nil, fmt.Errorf("testredis: %s: %w", args[0], err)
	}
	if e, ok := v.(replyError); ok {
		return nil, fmt.Errorf("testredis: %s: %s", args[0], string(e))
	}
	return v, nil
}

type replyError string

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return replyError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		arr := make([]any, 0, n)
		for range n {
			v, err := readReply(r)
			if err != nil {
				return nil, err
			}
			if e, ok := v.(replyError); ok {
				v = "ERR " + string(e)
			}
			arr = append(arr, v)
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
}

func flatten(arr []any, out *[]string) {
	for _, v := range arr {
		switch v := v.(type) {
		case nil:
			*out = append(*out, "")
		case []any:
			flatten(v, out)
		case int64:
			*out = append(*out, strconv.FormatInt(v, 10))
		default:
			*out = append(*out, fmt.Sprint(v))
		}
	}
}

// logTail is the end of the server's log file, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
