// Package harness holds what the programs that start gatehouse for real
// (the browser suite in e2e and the load benchmark in bench) both need:
// the repository root, to build cmd/caddy, and free loopback ports; and
// the process handling of the test servers (testredis, testnginx).
package harness

import (
	"errors"
	"net"
	"os"
	"path/filepath"
)

// RepoRoot returns the directory holding go.mod, searching up from the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: not inside the repository (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// FreePorts returns n distinct ports free on 127.0.0.1 right now.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
