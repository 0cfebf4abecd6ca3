package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/harness"
	"github.com/gatehouse-auth/gatehouse/internal/testredis"
)

// reloads is how many times TestReloadUnderLoad replaces the config.
const reloads = 20

// goroutineSlack is how far above its baseline the goroutine count may
// end: a handful of keep-alive connections (two goroutines each on the
// client side, one on the server side) to devidp or between the test's
// clients and Caddy may still be closing. A leak of one goroutine per
// reload would exceed it.
const goroutineSlack = 6

// TestReloadUnderLoad runs a real Caddy in process with a gatehouse block
// (sessions and a bearer block) against devidp, and while clients keep
// sending requests — a signed-in session, a bearer token, an anonymous API
// call, a browser's login start — replaces the config 20 times with an
// equivalent one (only a response header differs, so Caddy provisions new
// handlers and cleans up the old ones). What the clients saw: no request
// failed, the session and the token work throughout and after, and
// afterwards the goroutines are back to where they were; after caddy.Stop
// no JWKS cache, session store or Redis client is left.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy and reloads it 20 times")
	}
	t.Run("cookie sessions", func(t *testing.T) { testReloadUnderLoad(t, "") })
	t.Run("store redis", func(t *testing.T) { testReloadUnderLoad(t, testredis.Start(t).Addr()) })
}

// reloadConfig is the Caddy JSON of generation gen: every generation is
// the same site but for the X-Config response header.
func reloadConfig(t *testing.T, site, issuer, redisAddr, logFile string, gen int) []byte {
	t.Helper()
	store := ""
	if redisAddr != "" {
		store = fmt.Sprintf("\t\tstore redis {\n\t\t\taddress %s\n\t\t\tkey_prefix reload:\n\t\t}\n", redisAddr)
	}
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		output file %[9]s
		level ERROR
	}
}
%[1]s {
	bind 127.0.0.1
	header X-Config gen-%[2]d
	gatehouse {
		issuer %[3]s
		client_id %[4]s
		client_secret %[5]s
		cookie_secret %[6]s
		cookie_insecure
		bearer {
			audience %[7]s
		}
%[8]s	}
	respond "user={http.auth.user.id}"
}
`, site, gen, issuer, testClientID, testClientSecret, testCookieSecret, apiAudience, store, logFile)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, cf)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapting the Caddyfile: %v", warnings)
	}
	return cfg
}

// reloadClient is one kind of request the load sends, and what it must get.
type reloadClient struct {
	name   string
	req    func() *http.Request
	status int
	check  func(*http.Response, string) error // beyond the status; nil: none

	sent     atomic.Int64
	resets   atomic.Int64 // requests resent after a new connection was dropped (see send)
	mu       sync.Mutex
	failures []string // the first few
	failed   int
	gens     map[string]bool // X-Config values seen
}

func (c *reloadClient) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed++
	if len(c.failures) < 5 {
		c.failures = append(c.failures, fmt.Sprintf(format, args...))
	}
}

// one sends one request with client and records what it got.
func (c *reloadClient) one(client *http.Client) {
	c.sent.Add(1)
	resp, body, reset, err := send(client, c.req)
	c.resets.Add(int64(reset))
	if err != nil {
		c.fail("transport error: %v", err)
		return
	}
	c.mu.Lock()
	c.gens[resp.Header.Get("X-Config")] = true
	c.mu.Unlock()
	if resp.StatusCode != c.status {
		c.fail("%d, want %d: %.200s", resp.StatusCode, c.status, body)
		return
	}
	if c.check != nil {
		if err := c.check(resp, body); err != nil {
			c.fail("%v", err)
		}
	}
}

// send sends the request req makes and reads the response. A request
// whose connection could not be made, or was closed or reset before any
// response, is sent again (up to maxResends times: a resend may meet the
// same old listener); the client's idle connections are closed first, as
// they may be the old server's too. On a reload Caddy opens the new
// config's listener beside the old one (SO_REUSEPORT) and shuts the old
// server down, and a connection that reaches the old one in that moment is
// lost below any handler: net/http's Shutdown closes, unanswered, a
// connection whose first request it reads after the shutdown began, and
// Linux resets the connections still queued on a closed listener (unless
// net.ipv4.tcp_migrate_req is set). Go's client resends such a request by
// itself once on a reused connection, never on a new one; on a loaded
// machine the resend can meet the closing listener too. reset counts the
// resends. More failures than maxResends is an error here, and a handler's
// panic (net/http logs it at ERROR and closes the connection, which the
// resend would hide) one in Caddy's log, which the test reads.
const maxResends = 3

func send(client *http.Client, req func() *http.Request) (resp *http.Response, body string, reset int, err error) {
	for {
		resp, err = client.Do(req())
		if err != nil {
			var op *net.OpError
			dial := errors.As(err, &op) && op.Op == "dial"
			if reset < maxResends && (dial || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)) {
				// The pool's other connections may be the old server's too.
				client.CloseIdleConnections()
				reset++
				continue
			}
			return nil, "", reset, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), reset, err
	}
}

func testReloadUnderLoad(t *testing.T, redisAddr string) {
	idp := newIDP(t)
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	logFile := filepath.Join(t.TempDir(), "caddy.log")

	// What is running before this test's Caddy (another test's leftovers
	// would show up here, not as this test's failure).
	refreshersBefore, redisBefore := gatehouseGoroutines()

	if err := caddy.Load(reloadConfig(t, site, idp.Issuer(), redisAddr, logFile, 0), false); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = caddy.Stop()
		}
	})

	// Sign alice in through Caddy and mint her an access token.
	b := newBrowser(t)
	resp, _ := b.get(site + "/page")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("first visit: %d", resp.StatusCode)
	}
	if resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "alice")); resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	u, _ := url.Parse(site)
	var cookie []string
	for _, c := range b.client.Jar.Cookies(u) {
		cookie = append(cookie, c.Name+"="+c.Value)
	}
	sessionCookie := strings.Join(cookie, "; ")
	token, err := idp.MintAccessToken("alice", []string{apiAudience}, []string{"openid"}, devidp.DefaultAccessTokenTTL)
	if err != nil {
		t.Fatal(err)
	}

	get := func(path string, header ...string) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest("GET", site+path, nil)
			for i := 0; i+1 < len(header); i += 2 {
				r.Header.Set(header[i], header[i+1])
			}
			return r
		}
	}
	isAlice := func(_ *http.Response, body string) error {
		if body != "user=alice" {
			return fmt.Errorf("body %q, want user=alice", body)
		}
		return nil
	}
	clients := []*reloadClient{
		{name: "session cookie", req: get("/page", "Accept", "application/json", "Cookie", sessionCookie), status: 200, check: isAlice},
		{name: "bearer token", req: get("/api/orders", "Accept", "application/json", "Authorization", "Bearer "+token), status: 200, check: isAlice},
		{name: "anonymous API call", req: get("/api/orders", "Accept", "application/json"), status: 401},
		{name: "login start", req: get("/page", "Accept", "text/html", "Sec-Fetch-Mode", "navigate"), status: 302,
			check: func(resp *http.Response, _ string) error {
				if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, idp.Issuer()+"/authorize?") {
					return fmt.Errorf("login start redirects to %q", loc)
				}
				return nil
			}},
	}
	httpClients := make([]*http.Client, len(clients))
	for i, c := range clients {
		c.gens = map[string]bool{}
		httpClients[i] = &http.Client{
			Transport:     &http.Transport{MaxIdleConnsPerHost: 2},
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		// Warm up: discovery, the JWKS, the clients' connections.
		c.one(httpClients[i])
	}
	closeIdle := func() {
		for _, hc := range httpClients {
			hc.CloseIdleConnections()
		}
		b.client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
	}
	closeIdle()
	before := settledGoroutines()

	// The load: each client sends its request over and over, until the
	// reloads are done (at most maxRequests each).
	const maxRequests = 200000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range maxRequests {
				select {
				case <-stop:
					return
				default:
				}
				c.one(httpClients[i])
			}
		}()
	}

	probeResets := 0
	for gen := 1; gen <= reloads; gen++ {
		if err := caddy.Load(reloadConfig(t, site, idp.Issuer(), redisAddr, logFile, gen), false); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("reload %d: %v", gen, err)
		}
		// The new config serves: Caddy replaced the handlers.
		resp, _, reset, err := send(b.client, get("/page", "Accept", "application/json"))
		probeResets += reset
		if want := fmt.Sprintf("gen-%d", gen); err != nil || resp.Header.Get("X-Config") != want {
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("after reload %d: %v", gen, err)
			}
			t.Fatalf("after reload %d the site answers with X-Config %q, want %q", gen, resp.Header.Get("X-Config"), want)
		}
	}
	close(stop)
	wg.Wait()

	for _, c := range clients {
		gens := slices.Sorted(func(yield func(string) bool) {
			for g := range c.gens {
				if !yield(g) {
					return
				}
			}
		})
		t.Logf("%-18s %6d requests, %d failed, saw %d configs, %d resent after a new connection was dropped",
			c.name, c.sent.Load(), c.failed, len(gens), c.resets.Load())
		if c.failed > 0 {
			t.Errorf("%s: %d of %d requests failed during %d reloads, e.g. %q", c.name, c.failed, c.sent.Load(), reloads, c.failures)
		}
		if c.sent.Load() < 2 {
			t.Errorf("%s: only %d requests: the load did not run during the reloads", c.name, c.sent.Load())
		}
	}

	if probeResets > 0 {
		t.Logf("the probe after each reload: %d resent after a new connection was dropped", probeResets)
	}
	// Nothing went wrong inside Caddy: no handler panicked (net/http logs
	// it and closes the connection), no handler error, nothing at all at
	// level ERROR.
	if log, err := os.ReadFile(logFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Error(err)
	} else if len(log) > 0 {
		t.Errorf("Caddy logged errors during the reloads:\n%.4000s", log)
	}

	// The session from before the reloads and the token still work.
	if resp, body := b.get(site + "/page"); resp.StatusCode != 200 || body != "user=alice" {
		t.Errorf("the session from before the reloads, after them: %d %q", resp.StatusCode, body)
	}
	bearer, _ := http.NewRequest("GET", site+"/api/orders", nil)
	bearer.Header.Set("Authorization", "Bearer "+token)
	if resp := b.do(bearer); resp.StatusCode != 200 || readBody(resp) != "user=alice" {
		t.Errorf("the bearer token after the reloads: %d", resp.StatusCode)
	}

	// The goroutines are back to the baseline: no reload left any behind.
	closeIdle()
	// Wait a little for the exact baseline (closing connections end their
	// goroutines a moment later), then longer for the bound.
	after := waitGoroutines(40, func(n int) bool { return n <= before }, closeIdle)
	if after > before+goroutineSlack {
		after = waitGoroutines(200, func(n int) bool { return n <= before+goroutineSlack }, closeIdle)
	}
	t.Logf("goroutines: %d before %d reloads under load, %d after", before, reloads, after)
	if after > before+goroutineSlack {
		t.Errorf("goroutines: %d before %d reloads, %d after (slack %d)\n%s", before, reloads, after, goroutineSlack, goroutineDump())
	}

	// Stopping Caddy releases the JWKS caches, the session store (and its
	// Redis client) and the metrics: every pool entry of this issuer is gone,
	// and so are their goroutines.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if n, held := keyRegistries.References(idp.Issuer()); held {
		t.Errorf("the JWKS caches of the issuer are still held (%d references) after caddy.Stop", n)
	}
	if n, held := metricsPool.References(idp.Issuer()); held {
		t.Errorf("the metrics of the issuer are still held (%d references) after caddy.Stop", n)
	}
	sessionGroups.Range(func(key, _ any) bool {
		if strings.HasPrefix(key.(string), idp.Issuer()+"\x00") {
			t.Errorf("a session group of the issuer is still held after caddy.Stop: %q", key)
		}
		return true
	})
	closeIdle()
	waitGoroutines(200, func(int) bool {
		r, c := gatehouseGoroutines()
		return r <= refreshersBefore && c <= redisBefore
	}, closeIdle)
	if r, c := gatehouseGoroutines(); r > refreshersBefore || c > redisBefore {
		t.Errorf("after caddy.Stop: %d JWKS refresher goroutines (%d before Caddy started), %d Redis client goroutines (%d before)\n%s",
			r, refreshersBefore, c, redisBefore, goroutineDump())
	}
}

// settledGoroutines returns the goroutine count once it stops falling
// (connections just closed take a moment to end their goroutines), within
// a bounded wait.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// waitGoroutines waits, for at most tries × 50 ms, until done holds for
// the goroutine count, calling nudge (closing idle connections) between
// tries; it returns the last count.
func waitGoroutines(tries int, done func(int) bool, nudge func()) int {
	n := runtime.NumGoroutine()
	for range tries {
		if done(n) {
			return n
		}
		nudge()
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// gatehouseGoroutines counts the goroutines of JWKS caches (verify's
// RemoteKeySet and the jwk.Cache's httprc refresher under it) and of Redis
// clients (rueidis).
func gatehouseGoroutines() (refreshers, redis int) {
	for _, g := range strings.Split(goroutineStacks(), "\n\n") {
		if strings.Contains(g, "lestrrat-go/httprc") || strings.Contains(g, "gatehouse/verify.") {
			refreshers++
		}
		if strings.Contains(g, "redis/rueidis") {
			redis++
		}
	}
	return refreshers, redis
}

// goroutineStacks is every goroutine's stack (runtime.Stack, all).
func goroutineStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineDump is the goroutine profile, grouped by stack, for a
// failure message.
func goroutineDump() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}
