// Command bench is gatehouse's load benchmark: one Caddy binary (this
// repository's cmd/caddy) serves a bare reverse_proxy site and
// gatehouse-protected sites in front of the same small upstream, and wrk
// loads each path in turn against the bare site, in rounds of two runs back
// to back (A B, B A, …), so every figure is a ratio measured in the same run
// on the same machine: the median of the rounds' ratios.
//
//	make bench        # or: go run ./bench
//
// It installs wrk from Debian when missing, starts devidp (in process) as
// the provider, walks real logins for the session cookies and mints real
// access tokens for the bearer paths. devidp issues access tokens of the
// size real providers issue (RealisticAccessTokens, about 1.2 KB), so the
// sessions that carry them are as large as in production. The bare site
// gets what a browser without a session sends: no Cookie and no
// Authorization header, so each ratio is what a user feels. Everything
// listens on 127.0.0.1.
package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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
	"regexp"
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
	duration     = flag.Duration("duration", 5*time.Second, "length of each wrk run")
	rounds       = flag.Int("rounds", 3, "A/B rounds per path")
	connections  = flag.Int("connections", 50, "wrk connections")
	threads      = flag.Int("threads", 2, "wrk threads")
	missTokens   = flag.Int("miss-tokens", 20000, "distinct RS256 tokens cycled through in the cache-miss run (more than cache_size, so every request misses)")
	memoryTokens = flag.Int("memory-tokens", 1000000, "distinct valid tokens sent in the memory phase (0 skips it)")
	only         = flag.String("only", "", "run only the paths whose name matches this regular expression")
	pin          = flag.Bool("pin", false, "give Caddy a CPU of its own (the last; GOMAXPROCS=1) and run wrk, the upstream, the provider and Redis on the others, as in production, where clients and upstreams do not share the gateway's CPUs (needs taskset and 2+ CPUs)")
	profileDir   = flag.String("cpuprofile", "", "write Caddy's CPU profiles during each path's last round (the gatehouse run, and the baseline's as NAME-baseline) to this directory (go tool pprof reads them)")
)

const (
	audience     = "api://bench"
	clientID     = "bench"
	clientSecret = "bench-client-secret-0123456789"
	cacheSize    = 10000
	bigGroups    = 30 // the groups of user "big"
)

// scopes are the scopes of the minted bearer tokens, as a login would grant.
var scopes = []string{"openid", "email", "profile"}

func main() {
	flag.Parse()
	if *pin && os.Getenv(pinnedEnv) == "" {
		os.Exit(runPinned())
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// pinnedEnv names, in the bench process that -pin started on the CPUs it
// leaves to everything but Caddy, the CPU Caddy gets.
const pinnedEnv = "GATEHOUSE_BENCH_CADDY_CPU"

// runPinned runs this bench again on every CPU but the last, which it
// leaves to Caddy (the bench's children — wrk, Redis — inherit that), and
// returns its exit code.
func runPinned() int {
	n := runtime.NumCPU()
	if n < 2 {
		fmt.Fprintln(os.Stderr, "bench: -pin needs two CPUs or more")
		return 1
	}
	others := fmt.Sprintf("0-%d", n-2)
	cmd := exec.Command("taskset", append([]string{"-c", others, os.Args[0]}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), pinnedEnv+"="+strconv.Itoa(n-1))
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench: -pin:", err)
		return 1
	}
	return 0
}

type env struct {
	tmp        string
	upstream   *httptest.Server
	idp, idpES *devidp.Provider
	redis      *testredis.Server
	admin      string // host:port of Caddy's admin endpoint, with -cpuprofile
	caddy      *exec.Cmd
	// http://127.0.0.1:port: bare reverse_proxy; gatehouse with default
	// settings (and bearer tokens); bearer-only ES256; sessions in Redis;
	// pass_access_token.
	bare, gate, gateE, gateR, gateP string
	gateM                           string // gate with `metrics off`
	gateA                           string // gate with `assertion`
	gateI                           string // gate with bearer { introspection } at introspect
	bareS                           string // bare, removing the Cookie header before proxying, as gatehouse does
	introspect                      *httptest.Server
	assertionKey                    string // its signing_key: a {file.*} placeholder
}

func run() error {
	if err := ensureWrk(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e := &env{tmp: tmp}
	defer e.stop()

	cpus := runtime.NumCPU() // a pinned bench sees only its own CPUs
	if *pin {
		cpus++
	}
	fmt.Printf("gatehouse load benchmark — %s, %d CPUs, %s\n", time.Now().Format("2006-01-02"), cpus, cpuModel())
	fmt.Printf("wrk -t%d -c%d -d%s, %d rounds of bare/gatehouse per path\n", *threads, *connections, *duration, *rounds)
	if *pin {
		fmt.Printf("pinned: Caddy alone on CPU %s (GOMAXPROCS=1), everything else on the others\n", os.Getenv(pinnedEnv))
	}
	fmt.Println()

	if err := e.start(); err != nil {
		return err
	}
	// Real logins (alice has 2 groups, big has bigGroups); all their
	// cookie sizes are reported, all but alice's at gateP are measured.
	logins := []struct{ what, site, user, cookie string }{
		{"default settings, alice (2 groups)", e.gate, "alice", ""},
		{fmt.Sprintf("default settings, big (%d groups)", bigGroups), e.gate, "big", ""},
		{"pass_access_token, alice (2 groups)", e.gateP, "alice", ""},
		{fmt.Sprintf("pass_access_token, big (%d groups)", bigGroups), e.gateP, "big", ""},
		{"store redis, alice (2 groups)", e.gateR, "alice", ""},
		{fmt.Sprintf("store redis, big (%d groups)", bigGroups), e.gateR, "big", ""},
	}
	fmt.Println("session cookies (Cookie header bytes, chunks):")
	for i := range logins {
		l := &logins[i]
		if l.cookie, err = benchenv.Login(l.site, l.user); err != nil {
			return err
		}
		fmt.Printf("  %-40s %5d B, %d chunk(s)\n", l.what, len(l.cookie), strings.Count(l.cookie, "_gatehouse"))
	}
	sessionAlice, sessionBig, sessionBigP, sessionR, sessionBigR := logins[0].cookie, logins[1].cookie, logins[3].cookie, logins[4].cookie, logins[5].cookie
	repeated, err := e.idp.MintAccessToken("alice", []string{audience}, scopes, time.Hour)
	if err != nil {
		return err
	}
	fmt.Printf("bearer access token: %d bytes (RS256)\n", len(repeated))
	fmt.Printf("minting %d distinct RS256 tokens for the cache-miss run…\n", *missTokens)
	missFile, err := e.mintToFile(e.idp, *missTokens)
	if err != nil {
		return err
	}

	paths := []path{
		{name: "session, default settings (alice)", target: 0.90, cookie: sessionAlice},
		// What carrying the cookie costs with no gatehouse at all: bare
		// Caddy sent it (and removing it before proxying, as gatehouse
		// does), against bare Caddy sent nothing.
		{name: "bare Caddy sent the session cookie (no gatehouse)", cookie: sessionAlice, site: e.bareS},
		{name: fmt.Sprintf("session, %d groups", bigGroups), target: 0.85, cookie: sessionBig},
		{name: fmt.Sprintf("session, %d groups, pass_access_token", bigGroups), target: 0.85, cookie: sessionBigP, site: e.gateP},
		{name: "session in Redis (store redis, alice)", target: 0.90, cookie: sessionR, site: e.gateR},
		{name: fmt.Sprintf("session in Redis (store redis, %d groups)", bigGroups), target: 0.85, cookie: sessionBigR, site: e.gateR},
		{name: "bearer JWT, repeated (cache hit)", target: 0.90, bearer: repeated},
		// What carrying the token costs with no gatehouse at all: bare
		// Caddy sent it, against bare Caddy sent nothing.
		{name: "bare Caddy sent the bearer token (no gatehouse)", bearer: repeated, site: e.bare},
		{name: "bearer JWT, new each request (miss, RS256)", target: 0.70, tokens: missFile},
		{name: "bearer opaque, repeated (introspection cache hit)", target: 0.90, bearer: opaqueToken, site: e.gateI},
		{name: "unauthenticated browser (302 + login cookie)", target: 1.0, headers: map[string]string{"Accept": "text/html"}, status: 302},
		// What counting costs: the same block with metrics on against
		// metrics off, alternating, both sent the same credentials.
		{name: "metrics on ÷ metrics off: session (alice)", target: 0.98, cookie: sessionAlice, baseline: e.gateM},
		{name: "metrics on ÷ metrics off: bearer (cache hit)", target: 0.98, bearer: repeated, baseline: e.gateM},
		// The control: the same block against itself, alternating; what
		// the A/B order alone gives (the ratio a row can be off by).
		{name: "metrics on ÷ metrics on (control): session (alice)", target: 0.98, cookie: sessionAlice, baseline: e.gate},
		// What the identity assertion costs: the same block with and
		// without `assertion`, alternating, same credentials.
		{name: "assertion on ÷ off: session (alice)", target: 0.97, cookie: sessionAlice, site: e.gateA, baseline: e.gate},
		{name: "assertion on ÷ off: bearer (cache hit)", target: 0.97, cookie: "", bearer: repeated, site: e.gateA, baseline: e.gate},
	}
	onlyRE, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	var results []result
	for _, p := range paths {
		if !onlyRE.MatchString(p.name) {
			continue
		}
		r, err := e.measure(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		results = append(results, r)
	}
	printTable(results)

	if *memoryTokens > 0 {
		if err := e.memory(*memoryTokens); err != nil {
			return err
		}
	}
	return nil
}

func ensureWrk() error {
	if _, err := exec.LookPath("wrk"); err == nil {
		return nil
	}
	fmt.Println("installing wrk from Debian…")
	sudo := []string{}
	if os.Geteuid() != 0 {
		sudo = []string{"sudo"}
	}
	for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", "wrk"}} {
		cmd := exec.Command(append(sudo, args...)[0], append(sudo, args...)[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("installing wrk: %v\n%s", err, out)
		}
	}
	return nil
}

func (e *env) start() error {
	caddyBin, err := benchenv.BuildCaddy(e.tmp)
	if err != nil {
		return err
	}

	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	}))
	// An RFC 7662 endpoint that knows one opaque token: alice's.
	e.introspect = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		answer := `{"active":false}`
		if r.PostForm.Get("token") == opaqueToken {
			answer = fmt.Sprintf(`{"active":true,"sub":"alice","email":"alice@example.com","email_verified":true,"scope":"openid email profile","client_id":"spa","iss":%q,"exp":%d}`,
				e.idp.Issuer(), time.Now().Add(24*time.Hour).Unix())
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	groups := make([]string, bigGroups)
	for i := range groups {
		groups[i] = fmt.Sprintf("department-%03d-engineering-group", i)
	}
	users := []devidp.User{
		{Subject: "alice", Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice", Groups: []string{"admins", "staff"}},
		{Subject: "big", Email: "big@example.com", Name: "Big Groups", PreferredUsername: "big", Groups: groups},
	}
	if e.idp, err = startIDP("RS256", users); err != nil {
		return err
	}
	if e.idpES, err = startIDP("ES256", users); err != nil {
		return err
	}

	if e.redis, err = testredis.StartProcess(filepath.Join(e.tmp, "redis")); err != nil {
		return err
	}
	ports, err := harness.FreePorts(11)
	if err != nil {
		return err
	}
	admin := "off"
	if *profileDir != "" {
		// Caddy's admin endpoint serves /debug/pprof.
		e.admin = fmt.Sprintf("127.0.0.1:%d", ports[10])
		admin = e.admin
	}
	httpPort, sites := ports[0], []*string{&e.bare, &e.gate, &e.gateE, &e.gateR, &e.gateP, &e.gateM, &e.gateA, &e.gateI, &e.bareS}
	for i, s := range sites {
		*s = fmt.Sprintf("http://127.0.0.1:%d", ports[i+1])
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	if e.assertionKey, err = writeAssertionKey(e.tmp); err != nil {
		return err
	}
	upstream := strings.TrimPrefix(e.upstream.URL, "http://")
	// site is a Caddyfile site block: gatehouse (when given) in front of the upstream.
	site := func(addr, gatehouse string) string {
		return fmt.Sprintf("%s {\n\tbind 127.0.0.1\n%s\treverse_proxy %s\n}\n", addr, gatehouse, upstream)
	}
	login := fmt.Sprintf(`		issuer %s
		client_id %s
		client_secret %s
		cookie_secret %s
		cookie_insecure
`, e.idp.Issuer(), clientID, clientSecret, hex.EncodeToString(secret))
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	http_port %d
	auto_https off
	log {
		level WARN
	}
}
`, admin, httpPort) +
		site(e.bare, "") +
		site(e.bareS, "\trequest_header -Cookie\n") +
		site(e.gate, fmt.Sprintf("\tgatehouse {\n%s\t\tbearer {\n\t\t\taudience %s\n\t\t\tcache_size %d\n\t\t}\n\t}\n", login, audience, cacheSize)) +
		site(e.gateI, fmt.Sprintf("\tgatehouse {\n%s\t\tbearer {\n\t\t\taudience %s\n\t\t\tintrospection {\n\t\t\t\tendpoint %s\n\t\t\t}\n\t\t}\n\t}\n", login, audience, e.introspect.URL)) +
		site(e.gateA, fmt.Sprintf("\tgatehouse {\n%s\t\tassertion {\n\t\t\tsigning_key %s\n\t\t}\n\t\tbearer {\n\t\t\taudience %s\n\t\t\tcache_size %d\n\t\t}\n\t}\n", login, e.assertionKey, audience, cacheSize)) +
		site(e.gateM, fmt.Sprintf("\tgatehouse {\n%s\t\tmetrics off\n\t\tbearer {\n\t\t\taudience %s\n\t\t\tcache_size %d\n\t\t}\n\t}\n", login, audience, cacheSize)) +
		site(e.gateE, fmt.Sprintf("\tgatehouse {\n\t\tissuer %s\n\t\tbearer {\n\t\t\taudience %s\n\t\t\tcache_size %d\n\t\t\tonly\n\t\t}\n\t}\n", e.idpES.Issuer(), audience, cacheSize)) +
		site(e.gateR, fmt.Sprintf("\tgatehouse {\n%s\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n\t}\n", login, e.redis.Addr())) +
		// A cookie of its own: blocks that share a login's cookie share its
		// sessions, and a session keeps the access token when any of them
		// forwards it.
		site(e.gateP, fmt.Sprintf("\tgatehouse {\n%s\t\tcookie_name _gatehouse_pass\n\t\tpass_access_token\n\t}\n", login))
	cf := filepath.Join(e.tmp, "Caddyfile")
	if err := os.WriteFile(cf, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	args, procs := []string{caddyBin, "run", "--config", cf, "--adapter", "caddyfile"}, runtime.NumCPU()
	if *pin {
		// taskset execs Caddy in its own process: the PID stays Caddy's.
		args, procs = append([]string{"taskset", "-c", os.Getenv(pinnedEnv)}, args...), 1
	}
	e.caddy = exec.Command(args[0], args[1:]...)
	e.caddy.Stdout, e.caddy.Stderr = io.Discard, os.Stderr
	e.caddy.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
	if err := e.caddy.Start(); err != nil {
		return err
	}
	for _, site := range sites {
		if err := benchenv.WaitUp(*site); err != nil {
			return fmt.Errorf("caddy did not start serving %s: %w", *site, err)
		}
	}
	return nil
}

// opaqueToken is the opaque access token the bench's introspection
// endpoint knows (43 characters, like oidc-provider's).
const opaqueToken = "d1Q8kYx0Zr3uV6nB9mL2pA7sE4wT5gH1jK8cN0bF6qR"

func (e *env) stop() {
	if e.caddy != nil && e.caddy.Process != nil {
		_ = e.caddy.Process.Kill()
		_, _ = e.caddy.Process.Wait()
	}
	if e.introspect != nil {
		e.introspect.Close()
	}
	if e.upstream != nil {
		e.upstream.Close()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
}

func startIDP(alg string, users []devidp.User) (*devidp.Provider, error) {
	return benchenv.StartIDP(devidp.Config{
		Clients:   []devidp.Client{{ID: clientID, Secret: clientSecret, Audience: audience}},
		Users:     users,
		Algorithm: alg,
		// Access tokens of a real provider's size (~1.2 KB with RS256),
		// in the sessions and as bearer tokens.
		RealisticAccessTokens: true,
	})
}

// mintToFile mints n distinct access tokens with p, one per line.
func (e *env) mintToFile(p *devidp.Provider, n int) (string, error) {
	toks := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				tok, err := p.MintAccessToken("alice", []string{audience}, scopes, time.Hour)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				toks[i] = tok
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return "", firstErr
	}
	f := filepath.Join(e.tmp, "tokens.txt")
	return f, os.WriteFile(f, []byte(strings.Join(toks, "\n")+"\n"), 0o600)
}

// path is one thing measured against the bare site. The credentials
// (cookie, bearer, tokens) go to the gatehouse site only: the bare site
// gets the request a browser without a session sends.
type path struct {
	name    string
	target  float64
	headers map[string]string // sent to both sites
	cookie  string            // the Cookie header value
	bearer  string            // a token, sent as Authorization: Bearer
	tokens  string            // a file of tokens, one per request (Authorization: Bearer)
	status  int               // expected status; default 200
	site    string            // the gatehouse site; default env.gate
	// baseline is the site the gatehouse site is compared with, sent the
	// same credentials; default env.bare, sent none.
	baseline string
}

// requestHeaders are p's headers, with the credentials when withCredentials.
func (p path) requestHeaders(withCredentials bool) map[string]string {
	h := maps.Clone(p.headers)
	if h == nil {
		h = map[string]string{}
	}
	if !withCredentials {
		return h
	}
	if p.cookie != "" {
		h["Cookie"] = p.cookie
	}
	if p.bearer != "" {
		h["Authorization"] = "Bearer " + p.bearer
	}
	return h
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	non2xx   int
	requests int
	// cpu is the Caddy process's CPU time (user + system) per request
	// over the run: what the path costs Caddy, whatever else the machine
	// is doing — steadier than requests per second on a shared VM.
	cpu time.Duration
}

type result struct {
	path
	bare, gate []wrkResult
}

func median(rs []wrkResult, f func(wrkResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// measure runs wrk against the bare site (without p's credentials) and
// the gatehouse site (with them), back to back, *rounds times.
func (e *env) measure(p path) (result, error) {
	res := result{path: p}
	site := cmp.Or(p.site, e.gate)
	if err := check(site, p); err != nil {
		return res, err
	}
	if p.baseline != "" {
		if err := check(p.baseline, p); err != nil {
			return res, fmt.Errorf("the baseline: %w", err)
		}
	}
	baseline := cmp.Or(p.baseline, e.bare)
	bareScript, err := wrkScript(e.tmp, p, p.baseline != "")
	if err != nil {
		return res, err
	}
	gateScript, err := wrkScript(e.tmp, p, true)
	if err != nil {
		return res, err
	}
	fmt.Printf("%-52s", p.name)
	for i := range *rounds {
		// run measures one side; in the last round, under a CPU profile.
		run := func(target, script, profile string) (wrkResult, error) {
			if e.admin == "" || i != *rounds-1 {
				return e.runWrk(target, script)
			}
			profiled := make(chan error, 1)
			go func() { profiled <- e.cpuProfile(profile) }()
			r, err := e.runWrk(target, script)
			return r, cmp.Or(err, <-profiled)
		}
		// The two sides of a round run back to back, in turn first (A B,
		// B A, …), so that a drift of the machine's speed during a round
		// does not always count against the same side.
		var b, g wrkResult
		var errB, errG error
		if i%2 == 0 {
			b, errB = run(baseline+"/", bareScript, p.name+" baseline")
			g, errG = run(site+"/", gateScript, p.name)
		} else {
			g, errG = run(site+"/", gateScript, p.name)
			b, errB = run(baseline+"/", bareScript, p.name+" baseline")
		}
		if err := cmp.Or(errB, errG); err != nil {
			return res, err
		}
		if g.non2xx > 0 && p.status == 0 {
			return res, fmt.Errorf("gatehouse answered %d non-2xx responses: the path is not what it claims", g.non2xx)
		}
		res.bare, res.gate = append(res.bare, b), append(res.gate, g)
		fmt.Print(".")
	}
	fmt.Println()
	return res, nil
}

// cpuProfile writes Caddy's CPU profile over one wrk run to profileDir,
// named after the path.
func (e *env) cpuProfile(name string) error {
	secs := int(duration.Seconds())
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.admin, max(secs-1, 1)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(*profileDir, 0o755); err != nil {
		return err
	}
	file := filepath.Join(*profileDir, regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "-")+".pprof")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// check sends p's request once to site and wants the status the path
// expects: wrk counts a 302 to the login as a success.
func check(site string, p path) error {
	req, _ := http.NewRequest("GET", site+"/", nil)
	for k, v := range p.requestHeaders(true) {
		req.Header.Set(k, v)
	}
	if p.tokens != "" {
		b, err := os.ReadFile(p.tokens)
		if err != nil {
			return err
		}
		tok, _, _ := strings.Cut(string(b), "\n")
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if want := cmp.Or(p.status, http.StatusOK); resp.StatusCode != want {
		return fmt.Errorf("gatehouse answered %d, want %d: the path is not what it claims", resp.StatusCode, want)
	}
	return nil
}

// wrkScript writes the wrk script of p's requests, with its credentials
// (for the gatehouse site) or without (for the bare site).
func wrkScript(dir string, p path, withCredentials bool) (string, error) {
	var b strings.Builder
	b.WriteString("wrk.method = \"GET\"\n")
	for k, v := range p.requestHeaders(withCredentials) {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", k, v)
	}
	if p.tokens != "" && withCredentials {
		// Each thread reads the tokens and takes every n-th one, from its
		// own offset, so no two requests of a run share a token (until the
		// pool wraps around, which is still a miss in a smaller LRU).
		fmt.Fprintf(&b, `
local counter = 0
local threads = {}
function setup(thread)
	thread:set("id", counter)
	counter = counter + 1
	table.insert(threads, thread)
end
function init(args)
	tokens = {}
	for line in io.lines(%q) do tokens[#tokens + 1] = line end
	step = %d
	i = id + 1
end
function request()
	local t = tokens[i]
	i = i + step
	if i > #tokens then i = id + 1 end
	return wrk.format(nil, nil, { Authorization = "Bearer " .. t })
end
`, p.tokens, *threads)
	}
	f := filepath.Join(dir, fmt.Sprintf("script-%d.lua", time.Now().UnixNano()))
	return f, os.WriteFile(f, []byte(b.String()), 0o600)
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reRequests = regexp.MustCompile(`(\d+) requests in`)
)

// runWrk runs wrk and measures the Caddy process's CPU time over the run.
func (e *env) runWrk(target, script string) (wrkResult, error) {
	before, err := cpuTime(e.caddy.Process.Pid)
	if err != nil {
		return wrkResult{}, err
	}
	r, err := runWrk(target, script)
	if err != nil {
		return r, err
	}
	after, err := cpuTime(e.caddy.Process.Pid)
	if err != nil || r.requests == 0 {
		return r, err
	}
	r.cpu = (after - before) / time.Duration(r.requests)
	return r, nil
}

// cpuTime is a process's user plus system CPU time, from /proc (in clock
// ticks of 10 ms: over a run of thousands of requests that is fine enough).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("bench: unreadable /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func runWrk(target, script string) (wrkResult, error) {
	args := []string{"-t" + strconv.Itoa(*threads), "-c" + strconv.Itoa(*connections), "-d" + duration.String(), "--latency", "-s", script, target}
	ctx, cancel := context.WithTimeout(context.Background(), *duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r wrkResult
	m := reRPS.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, l := range reLatency.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(l[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(l[3])]
		d := time.Duration(v * float64(unit))
		if string(l[1]) == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := reNon2xx.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(string(m[1]))
	}
	if m := reRequests.FindSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(string(m[1]))
	}
	return r, nil
}

func printTable(results []result) {
	fmt.Println()
	fmt.Printf("| path | bare req/s | gatehouse req/s | ratio | cookie bytes | target | Caddy CPU per request, bare → gatehouse | gatehouse p50 | gatehouse p99 | bare p50 | bare p99 |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cpu := func(r wrkResult) float64 { return float64(r.cpu) }
	rps := func(r wrkResult) float64 { return r.rps }
	p50 := func(r wrkResult) float64 { return float64(r.p50) }
	p99 := func(r wrkResult) float64 { return float64(r.p99) }
	for _, r := range results {
		b, g := median(r.bare, rps), median(r.gate, rps)
		// The median of the rounds' own ratios: each round's two runs are
		// back to back, so a drift of the machine's speed between rounds
		// does not move it (a ratio of medians would pair runs minutes
		// apart). The range is the rounds' ratios.
		var ratios, cpuRatios []float64
		for i := range r.bare {
			ratios = append(ratios, r.gate[i].rps/r.bare[i].rps)
			cpuRatios = append(cpuRatios, float64(r.gate[i].cpu)/float64(r.bare[i].cpu))
		}
		slices.Sort(ratios)
		slices.Sort(cpuRatios)
		// The Cookie header the gatehouse site got; the bare site got none.
		cookie := "—"
		if r.cookie != "" {
			cookie = strconv.Itoa(len(r.cookie))
		}
		target := "—" // a reference row, not a gatehouse path
		if r.target > 0 {
			target = fmt.Sprintf("≥ %.2f", r.target)
		}
		bc, gc := median(r.bare, cpu), median(r.gate, cpu)
		fmt.Printf("| %s | %.0f | %.0f | **%.2f** (%.2f–%.2f) | %s | %s | %.1f → %.1f µs (%+.0f%%) | %s | %s | %s | %s |\n",
			r.name, b, g, ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], cookie, target,
			bc/1e3, gc/1e3, (cpuRatios[len(cpuRatios)/2]-1)*100,
			dur(median(r.gate, p50)), dur(median(r.gate, p99)), dur(median(r.bare, p50)), dur(median(r.bare, p99)))
	}
	fmt.Println("\n(In the \"metrics on ÷ metrics off\" rows, \"bare\" is the same gatehouse block with `metrics off`, sent the same credentials.)")
}

func dur(ns float64) string {
	d := time.Duration(ns)
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// memory sends n distinct valid ES256 tokens to the bearer-only site, as
// fast as two workers can mint and send them, and reports the Caddy
// process's RSS before, during and after.
func (e *env) memory(n int) error {
	fmt.Printf("\nmemory: %d distinct valid tokens (ES256, minted on the fly) to a bearer site with cache_size %d\n", n, cacheSize)
	before, err := benchenv.RSS(e.caddy.Process.Pid)
	if err != nil {
		return err
	}
	workers := max(2, runtime.NumCPU())
	var sent, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	peak := before
	var peakMu sync.Mutex
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if v, err := benchenv.RSS(e.caddy.Process.Pid); err == nil {
					peakMu.Lock()
					peak = max(peak, v)
					peakMu.Unlock()
				}
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for sent.Add(1) <= int64(n) {
				tok, err := e.idpES.MintAccessToken("alice", []string{audience}, scopes, time.Hour)
				if err != nil {
					refused.Add(1)
					continue
				}
				req, _ := http.NewRequest("GET", e.gateE+"/", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					refused.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	runtime.GC()
	after, err := benchenv.RSS(e.caddy.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("sent %d tokens in %s (%d refused)\n", n, time.Since(start).Round(time.Second), refused.Load())
	fmt.Printf("Caddy RSS: %s before, %s peak, %s after: growth %s, bounded by cache_size %d\n",
		benchenv.MB(before), benchenv.MB(peak), benchenv.MB(after), benchenv.MB(cmp.Or(after-before, 0)), cacheSize)
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// writeAssertionKey writes an EC P-256 key for the assertion site and
// returns the placeholder that reads it.
func writeAssertionKey(dir string) (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", err
	}
	f := filepath.Join(dir, "assertion.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	return "{file." + f + "}", nil
}
