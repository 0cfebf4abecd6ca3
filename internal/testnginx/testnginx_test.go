package testnginx

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := Start(t, func(addr string) string {
		return "server {\n\tlisten " + addr + ";\n\tlocation / { return 200 \"hello $request_uri\"; }\n}\n"
	})
	if host, _, err := net.SplitHostPort(s.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	resp, err := http.Get(s.URL() + "/x?y=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello /x?y=1" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// Every file nginx writes is in its directory.
	for _, f := range []string{"nginx.conf", "nginx.pid", "error.log", "access.log"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	addr := s.Addr()
	s.Stop()
	s.Stop() // idempotent
	if s.Running() {
		t.Fatal("running after Stop")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after Stop")
	}
}

// A configuration nginx refuses fails with nginx's own words.
func TestBadConfig(t *testing.T) {
	_, err := StartProcess(t.TempDir(), func(string) string { return "no_such_directive on;" })
	if err == nil || !strings.Contains(err.Error(), "no_such_directive") {
		t.Fatalf("err = %v", err)
	}
}

// Without nginx the error says how to install it.
func TestMissingNginx(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	sbin := sbinNginx
	sbinNginx = filepath.Join(t.TempDir(), "nginx")
	t.Cleanup(func() { sbinNginx = sbin })
	s, err := StartProcess(t.TempDir(), func(string) string { return "" })
	if err == nil {
		s.Stop()
	}
	if err == nil || !strings.Contains(err.Error(), "apt-get install nginx") {
		t.Fatalf("err = %v", err)
	}
}
