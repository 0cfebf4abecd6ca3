// Command soak is gatehouse's long-run check: one million requests (by
// default) over mixed paths against this repository's Caddy (cmd/caddy,
// built and started as its own process) with devidp as the provider, and
// Caddy's memory sampled every few seconds, so that "no 5xx and flat
// memory" can be judged from one run.
//
//	make soak          # or: go run ./bench/soak [-requests N]
//
// The paths rotate request by request: a signed-in session (sessions in
// the cookie), a bearer access token (from a pool of distinct tokens), an
// anonymous API call (401), a browser's first visit (302 to the login),
// and — unless -redis=false — a session kept in Redis (`store redis`, on a
// redis-server of its own). The logins are real (devidp's login form), the
// tokens RS256 JWTs of a real provider's size, the app behind gatehouse a
// small upstream. Everything listens on 127.0.0.1.
//
// At the end it prints the requests by path and status, the 5xx and the
// transport errors (both must be 0: the exit status is 1 otherwise, as it
// is for any other unexpected status or any line Caddy logs at ERROR),
// and Caddy's resident memory (RSS), Go heap in use after a collection and
// goroutines: before the load, once warm (after a tenth of the requests),
// at the peak and at the end.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/benchenv"
	"github.com/gatehouse-auth/gatehouse/internal/harness"
	"github.com/gatehouse-auth/gatehouse/internal/testredis"
)

var (
	requests    = flag.Int("requests", 1_000_000, "requests to send in all")
	concurrency = flag.Int("concurrency", 32, "concurrent clients (each with its own keep-alive connection)")
	sample      = flag.Duration("sample", 3*time.Second, "how often Caddy's memory is sampled")
	tokens      = flag.Int("tokens", 1000, "distinct bearer tokens rotated through (fewer than the verified-token cache, so most are hits)")
	withRedis   = flag.Bool("redis", true, "include a session kept in Redis (needs redis-server)")
)

const (
	audience     = "api://soak"
	clientID     = "soak"
	clientSecret = "soak-client-secret-0123456789"
)

func main() {
	flag.Parse()
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// kind is one of the rotated requests, and what it must get.
type kind struct {
	name   string
	site   string
	path   string
	header http.Header
	tokens []string // a pool: request i sends tokens[i % len] as a bearer token
	want   int
}

// tally is what one client saw, per kind.
type tally struct {
	status   [][600]int64 // [kind][status]
	errors   []int64      // transport errors, per kind
	firstErr []string     // the first transport error, per kind
}

type env struct {
	tmp      string
	caddy    *exec.Cmd
	logFile  string // Caddy's log: ERROR and above
	admin    string // Caddy's admin endpoint (metrics, pprof)
	upstream *httptest.Server
	redis    *testredis.Server
}

func run() (bool, error) {
	tmp, err := os.MkdirTemp("", "gatehouse-soak-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	e := &env{tmp: tmp}
	defer e.stop()

	fmt.Printf("gatehouse soak — %s, %d CPUs; %d requests, %d clients\n", time.Now().Format("2006-01-02"), runtime.NumCPU(), *requests, *concurrency)
	idp, err := benchenv.StartIDP(devidp.Config{
		Clients: []devidp.Client{{ID: clientID, Secret: clientSecret, Audience: audience}},
		Users:   []devidp.User{{Subject: "alice", Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice", Groups: []string{"admins", "staff"}}},
		// Access tokens of a real provider's size (~1.2 KB with RS256).
		RealisticAccessTokens: true,
	})
	if err != nil {
		return false, err
	}
	site, siteR, err := e.start(idp.Issuer())
	if err != nil {
		return false, err
	}

	cookie, err := benchenv.Login(site, "alice")
	if err != nil {
		return false, err
	}
	pool := make([]string, *tokens)
	for i := range pool {
		if pool[i], err = idp.MintAccessToken("alice", []string{audience}, []string{"openid", "email", "profile"}, time.Hour); err != nil {
			return false, err
		}
	}
	h := func(kv ...string) http.Header {
		hdr := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			hdr.Set(kv[i], kv[i+1])
		}
		return hdr
	}
	kinds := []kind{
		{name: "session cookie", site: site, path: "/app/page", header: h("Accept", "application/json", "Cookie", cookie), want: 200},
		{name: "bearer token", site: site, path: "/api/orders", header: h("Accept", "application/json"), tokens: pool, want: 200},
		{name: "anonymous API call", site: site, path: "/api/orders", header: h("Accept", "application/json"), want: 401},
		{name: "login start", site: site, path: "/app/page", header: h("Accept", "text/html", "Sec-Fetch-Mode", "navigate"), want: 302},
	}
	if siteR != "" {
		cookieR, err := benchenv.Login(siteR, "alice")
		if err != nil {
			return false, err
		}
		kinds = append(kinds, kind{name: "session in Redis", site: siteR, path: "/app/page", header: h("Accept", "application/json", "Cookie", cookieR), want: 200})
	}
	for _, k := range kinds {
		if err := check(k); err != nil {
			return false, err
		}
	}

	before, err := e.measure(true)
	if err != nil {
		return false, err
	}
	tallies, samples, warm, elapsed := e.load(kinds)
	end, err := e.settled()
	if err != nil {
		return false, err
	}
	return e.report(kinds, tallies, samples, before, warm, end, elapsed), nil
}

// start starts the upstream, Redis (with -redis) and Caddy with two
// gatehouse sites: sessions in the cookie (and a bearer block), and
// sessions in Redis; it returns their URLs (siteR empty without -redis).
func (e *env) start(issuer string) (site, siteR string, err error) {
	caddyBin, err := benchenv.BuildCaddy(e.tmp)
	if err != nil {
		return "", "", err
	}
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s\n", r.Header.Get("X-Forwarded-User"))
	}))
	ports, err := harness.FreePorts(3)
	if err != nil {
		return "", "", err
	}
	e.admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	site = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	secret := make([]byte, 32)
	rand.Read(secret)
	login := fmt.Sprintf("\t\tissuer %s\n\t\tclient_id %s\n\t\tclient_secret %s\n\t\tcookie_secret %s\n\t\tcookie_insecure\n",
		issuer, clientID, clientSecret, hex.EncodeToString(secret))
	upstream := strings.TrimPrefix(e.upstream.URL, "http://")
	e.logFile = filepath.Join(e.tmp, "caddy.log")
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	log {
		output file %s
		level ERROR
	}
}
%s {
	bind 127.0.0.1
	gatehouse {
%s		bearer {
			audience %s
		}
	}
	reverse_proxy %s
}
`, e.admin, e.logFile, site, login, audience, upstream)
	if *withRedis {
		if e.redis, err = testredis.StartProcess(filepath.Join(e.tmp, "redis")); err != nil {
			return "", "", err
		}
		siteR = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
		caddyfile += fmt.Sprintf(`%s {
	bind 127.0.0.1
	gatehouse {
%s		cookie_name _gatehouse_r
		store redis {
			address %s
		}
	}
	reverse_proxy %s
}
`, siteR, login, e.redis.Addr(), upstream)
	}
	cf := filepath.Join(e.tmp, "Caddyfile")
	if err := os.WriteFile(cf, []byte(caddyfile), 0o600); err != nil {
		return "", "", err
	}
	e.caddy = exec.Command(caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
	e.caddy.Stdout, e.caddy.Stderr = io.Discard, os.Stderr
	if err := e.caddy.Start(); err != nil {
		return "", "", err
	}
	for _, s := range []string{site, siteR} {
		if s == "" {
			continue
		}
		if err := benchenv.WaitUp(s); err != nil {
			return "", "", fmt.Errorf("caddy did not start serving %s: %w", s, err)
		}
	}
	return site, siteR, nil
}

func (e *env) stop() {
	if e.caddy != nil && e.caddy.Process != nil {
		_ = e.caddy.Process.Kill()
		_, _ = e.caddy.Process.Wait()
	}
	if e.upstream != nil {
		e.upstream.Close()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
}

// request is k's i-th request.
func (k *kind) request(i int) *http.Request {
	r, _ := http.NewRequest("GET", k.site+k.path, nil)
	r.Header = k.header.Clone()
	if len(k.tokens) > 0 {
		r.Header.Set("Authorization", "Bearer "+k.tokens[i%len(k.tokens)])
	}
	return r
}

var noRedirects = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// check sends k's request once and wants k's status: a path that is not
// what it claims would make the whole soak meaningless.
func check(k kind) error {
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirects}
	resp, err := c.Do(k.request(0))
	if err != nil {
		return fmt.Errorf("%s: %w", k.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != k.want {
		return fmt.Errorf("%s: %d, want %d: %.200s", k.name, resp.StatusCode, k.want, body)
	}
	return nil
}

// sampleT is Caddy's memory at one moment.
type sampleT struct {
	at       time.Duration
	done     int64 // requests answered by then
	rss      int64
	heap     int64 // Go heap in use (after a collection when measured with gc)
	routines int64
}

// load sends *requests requests, rotating through kinds, from
// *concurrency clients, sampling Caddy's memory every *sample; warm is
// the measure (after a collection) once a tenth of the requests is done.
func (e *env) load(kinds []kind) (tallies []*tally, samples []sampleT, warm sampleT, elapsed time.Duration) {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(*sample)
		defer t.Stop()
		warmAt := int64(*requests / 10)
		warmed := false
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := done.Load()
			gc := !warmed && n >= warmAt
			s, err := e.measure(gc)
			if err != nil {
				fmt.Fprintln(os.Stderr, "soak: sampling:", err)
				continue
			}
			s.at, s.done = time.Since(start), n
			if gc {
				warm, warmed = s, true
			}
			samples = append(samples, s)
			fmt.Printf("  %5.0fs %8d requests (%6.0f/s)  RSS %s  heap %s  goroutines %d\n",
				s.at.Seconds(), n, float64(n)/s.at.Seconds(), benchenv.MB(s.rss), benchenv.MB(s.heap), s.routines)
		}
	}()
	for range *concurrency {
		t := &tally{status: make([][600]int64, len(kinds)), errors: make([]int64, len(kinds)), firstErr: make([]string, len(kinds))}
		tallies = append(tallies, t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: noRedirects,
				Transport: &http.Transport{MaxIdleConnsPerHost: 4, MaxConnsPerHost: 0}}
			defer client.CloseIdleConnections()
			for {
				i := int(next.Add(1) - 1)
				if i >= *requests {
					return
				}
				ki := i % len(kinds)
				k := &kinds[ki]
				resp, err := client.Do(k.request(i / len(kinds)))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					t.errors[ki]++
					if t.firstErr[ki] == "" {
						t.firstErr[ki] = err.Error()
					}
				} else {
					t.status[ki][min(max(resp.StatusCode, 0), 599)]++
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	close(stop)
	<-sampled
	return tallies, samples, warm, elapsed
}

// measure reads Caddy's RSS (from /proc) and, from its admin endpoint, the
// Go heap in use and the goroutines; with gc, after a collection (the
// heap profile endpoint with gc=1 runs one).
func (e *env) measure(gc bool) (sampleT, error) {
	var s sampleT
	var err error
	if gc {
		resp, err := http.Get("http://" + e.admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			return s, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if s.rss, err = benchenv.RSS(e.caddy.Process.Pid); err != nil {
		return s, err
	}
	resp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "go_memstats_heap_inuse_bytes":
			s.heap = int64(v)
		case "go_goroutines":
			s.routines = int64(v)
		}
	}
	return s, sc.Err()
}

// settled measures Caddy once the load's connections have closed: when
// its goroutine count stops falling (polled every half second, for at
// most 10 s).
func (e *env) settled() (sampleT, error) {
	s, err := e.measure(true)
	for range 20 {
		if err != nil {
			return s, err
		}
		time.Sleep(500 * time.Millisecond)
		var next sampleT
		if next, err = e.measure(true); err == nil && next.routines >= s.routines {
			return next, nil
		}
		s = next
	}
	return s, err
}

// report prints the figures and says whether the soak passed.
func (e *env) report(kinds []kind, tallies []*tally, samples []sampleT, before, warm, end sampleT, elapsed time.Duration) bool {
	ok := true
	total := map[int]int64{}
	var all, fivexx, transport int64
	fmt.Printf("\n%d requests in %s (%.0f/s)\n\n", *requests, elapsed.Round(time.Second), float64(*requests)/elapsed.Seconds())
	fmt.Println("| path | requests | statuses | want | transport errors |")
	fmt.Println("|---|---:|---|---:|---:|")
	for ki, k := range kinds {
		var n, errs int64
		byStatus := map[int]int64{}
		firstErr := ""
		for _, t := range tallies {
			for code, c := range t.status[ki] {
				if c > 0 {
					byStatus[code] += c
					total[code] += c
					n += c
				}
			}
			errs += t.errors[ki]
			if firstErr == "" {
				firstErr = t.firstErr[ki]
			}
		}
		all += n + errs
		transport += errs
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(byStatus)) {
			parts = append(parts, fmt.Sprintf("%d × %d", byStatus[code], code))
			if code >= 500 {
				fivexx += byStatus[code]
			}
			if code != k.want {
				ok = false
			}
		}
		fmt.Printf("| %s | %d | %s | %d | %d |\n", k.name, n+errs, strings.Join(parts, ", "), k.want, errs)
		if firstErr != "" {
			fmt.Printf("  first transport error (%s): %s\n", k.name, firstErr)
		}
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(total)) {
		parts = append(parts, fmt.Sprintf("%d × %d", total[code], code))
	}
	fmt.Printf("\ntotal: %d requests: %s; 5xx: %d; transport errors: %d\n", all, strings.Join(parts, ", "), fivexx, transport)
	if fivexx > 0 || transport > 0 {
		ok = false
	}

	log, err := os.ReadFile(e.logFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Println("Caddy's log:", err)
		ok = false
	}
	lines := bytes.Count(log, []byte("\n"))
	fmt.Printf("Caddy log lines at ERROR: %d\n", lines)
	if lines > 0 {
		fmt.Printf("%.2000s\n", log)
		ok = false
	}

	peak := before
	for _, s := range samples {
		peak.rss = max(peak.rss, s.rss)
		peak.heap = max(peak.heap, s.heap)
		peak.routines = max(peak.routines, s.routines)
	}
	fmt.Printf("\nCaddy memory (heap in use and goroutines from its /metrics; heap after a collection where marked *):\n")
	fmt.Println("| when | RSS | Go heap in use | goroutines |")
	fmt.Println("|---|---:|---:|---:|")
	row := func(when string, s sampleT, gc bool) {
		star := ""
		if gc {
			star = " *"
		}
		fmt.Printf("| %s | %s | %s%s | %d |\n", when, benchenv.MB(s.rss), benchenv.MB(s.heap), star, s.routines)
	}
	row("before the load", before, true)
	if warm.done > 0 {
		row(fmt.Sprintf("warm (after %d requests)", warm.done), warm, true)
	}
	fmt.Printf("| peak of %d samples | %s | %s | %d |\n", len(samples), benchenv.MB(peak.rss), benchenv.MB(peak.heap), peak.routines)
	row("end (load's connections closed)", end, true)
	if warm.done > 0 {
		fmt.Printf("from warm to end: RSS %+.1f MB, heap %+.1f MB, goroutines %+d over %d requests\n",
			float64(end.rss-warm.rss)/(1<<20), float64(end.heap-warm.heap)/(1<<20), end.routines-warm.routines, int64(*requests)-warm.done)
	}
	if ok {
		fmt.Println("\nPASS: every request got its path's status; no 5xx, no transport error, nothing logged at ERROR")
	} else {
		fmt.Println("\nFAIL")
	}
	return ok
}
