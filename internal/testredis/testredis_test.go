package testredis

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := Start(t)
	if host, _, err := net.SplitHostPort(s.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
	if got, err := s.Do("SET", "e2e:k", "a value\r\nwith CRLF"); err != nil || got != "OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	if got, err := s.Do("GET", "e2e:k"); err != nil || got != "a value\r\nwith CRLF" {
		t.Fatalf("GET: %q, %v", got, err)
	}
	if _, err := s.Do("GET", "missing"); !errors.Is(err, ErrNil) {
		t.Fatalf("GET of a missing key: %v, want ErrNil", err)
	}
	if got, err := s.Do("INCR", "e2e:n"); err != nil || got != "1" {
		t.Fatalf("INCR: %q, %v", got, err)
	}
	if _, err := s.Do("NOSUCHCOMMAND"); err == nil {
		t.Fatal("an unknown command did not fail")
	}
	keys, err := s.DoList("KEYS", "e2e:*")
	if err != nil || len(keys) != 2 {
		t.Fatalf("KEYS: %q, %v", keys, err)
	}
	if got, err := s.Do("CONFIG", "GET", "save"); err != nil || got != "save\n" {
		t.Fatalf("automatic snapshots are on: CONFIG GET save = %q, %v", got, err)
	}
	if _, err := s.Do("DEBUG", "SLEEP", "0"); err != nil {
		t.Fatalf("DEBUG: %v", err)
	}

	dump, err := s.Dump()
	if err != nil || !bytes.HasPrefix(dump, []byte("REDIS")) {
		t.Fatalf("Dump: %d bytes (%.9q), %v", len(dump), dump, err)
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
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}

	// Restart: the same address, and the data set of the last SAVE.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if got, err := s.Do("GET", "e2e:k"); err != nil || got != "a value\r\nwith CRLF" {
		t.Fatalf("GET after a restart (the key was saved): %q, %v", got, err)
	}
	if _, err := s.Do("SET", "e2e:unsaved", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil { // restarts a running server too
		t.Fatal(err)
	}
	if _, err := s.Do("GET", "e2e:unsaved"); !errors.Is(err, ErrNil) {
		t.Fatalf("a key never saved survived the restart: %v", err)
	}
}

func TestStartProcess(t *testing.T) {
	dir := t.TempDir()
	s, err := StartProcess(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.Dir() != dir {
		t.Fatalf("Dir() = %q, want %q", s.Dir(), dir)
	}
	other := Start(t)
	if other.Addr() == s.Addr() {
		t.Fatalf("two servers on %s", s.Addr())
	}
	if _, err := s.Do("SET", "k", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Do("GET", "k"); !errors.Is(err, ErrNil) {
		t.Fatalf("the servers share data: %v", err)
	}
}
