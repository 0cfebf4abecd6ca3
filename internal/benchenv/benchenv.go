// Package benchenv holds what the load programs — the benchmark (bench)
// and the soak (bench/soak) — share: building this repository's Caddy,
// serving a devidp, waiting for a site to answer, signing a user in
// through a gatehouse site at devidp, and reading a process's resident
// memory.
package benchenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/harness"
)

// BuildCaddy builds cmd/caddy into dir and returns the binary's path.
func BuildCaddy(dir string) (string, error) {
	root, err := harness.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/caddy: %v\n%s", err, out)
	}
	return bin, nil
}

// StartIDP serves a devidp with cfg on a free port of 127.0.0.1 (its
// Issuer is set to that address) until the program exits.
func StartIDP(cfg devidp.Config) (*devidp.Provider, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg.Issuer = "http://" + l.Addr().String()
	p, err := devidp.New(cfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	go http.Serve(l, p)
	return p, nil
}

// WaitUp waits, for at most 30 s, until site answers an HTTP request.
func WaitUp(site string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(site + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Login walks a real login as user at the gatehouse site (whose provider
// is a devidp) and returns the Cookie header value that carries the
// session.
func Login(site, user string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, string, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), nil
	}
	resp, _, err := get(site + "/")
	if err != nil {
		return "", err
	}
	authorize := resp.Header.Get("Location")
	_, page, err := get(authorize)
	if err != nil {
		return "", err
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if m[1] != "user" && m[1] != "action" {
			form.Set(m[1], strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`).Replace(m[2]))
		}
	}
	form.Set("user", user)
	u, _ := url.Parse(authorize)
	u.RawQuery = ""
	resp, err = c.PostForm(u.String(), form)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp, _, err = get(resp.Header.Get("Location")); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("login as %s: callback answered %d", user, resp.StatusCode)
	}
	siteURL, _ := url.Parse(site)
	var parts []string
	for _, ck := range jar.Cookies(siteURL) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("login as %s: no session cookie", user)
	}
	return strings.Join(parts, "; "), nil
}

// RSS is a process's resident memory in bytes, from /proc.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// MB formats a byte count in MiB.
func MB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
