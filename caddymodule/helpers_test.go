package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/harness"
	"github.com/gatehouse-auth/gatehouse/session"
)

const (
	testClientID     = "app"
	testClientSecret = "app-secret-0123456789"
	testCookieSecret = "test-cookie-secret-0123456789abcdef"
)

// newIDP starts a devidp with alice (admins, staff) and bob (staff).
func newIDP(t testing.TB) *devidp.Provider {
	p, _ := newSwitchableIDP(t)
	return p
}

// newSwitchableIDP is newIDP with a switch: while down is set, every
// endpoint answers 503, as a provider in an outage does.
func newSwitchableIDP(t testing.TB) (*devidp.Provider, *atomic.Bool) {
	t.Helper()
	return newConfiguredIDP(t, nil)
}

// newConfiguredIDP is newSwitchableIDP with mod applied to devidp's config.
func newConfiguredIDP(t testing.TB, mod func(*devidp.Config)) (*devidp.Provider, *atomic.Bool) {
	t.Helper()
	down := new(atomic.Bool)
	srv := httptest.NewUnstartedServer(nil)
	cfg := devidp.Config{
		Issuer:  "http://" + srv.Listener.Addr().String(),
		Clients: []devidp.Client{{ID: testClientID, Secret: testClientSecret}},
		Users: []devidp.User{
			{Subject: "alice", Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice", Groups: []string{"admins", "staff"}},
			{Subject: "bob", Email: "bob@example.com", Groups: []string{"staff"}},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		p.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return p, down
}

// newHandler provisions a Gatehouse for issuer, with mod applied to the
// config first.
func newHandler(t testing.TB, issuer string, mod func(*Gatehouse)) *Gatehouse {
	t.Helper()
	g := &Gatehouse{
		ProviderConfig: ProviderConfig{Issuer: issuer, ClientID: testClientID, ClientSecret: testClientSecret},
		CookieSecrets:  []string{testCookieSecret},
		CookieInsecure: true,
	}
	if mod != nil {
		mod(g)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := g.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Cleanup() })
	return g
}

// upstream records what the next handler received.
type upstream struct {
	called bool
	req    *http.Request
	repl   *caddy.Replacer
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called, u.req = true, r
	u.repl = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	w.WriteHeader(http.StatusOK)
	return nil
}

// serve runs r through g and returns the response and what upstream saw.
func serve(t testing.TB, g *Gatehouse, r *http.Request) (*http.Response, *upstream, error) {
	t.Helper()
	repl := caddyhttp.NewTestReplacer(r)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	up := &upstream{}
	w := httptest.NewRecorder()
	err := g.ServeHTTP(w, r, up)
	return w.Result(), up, err
}

func navigation(method, target string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	return r
}

// browser is a cookie-keeping client that does not follow redirects, to
// walk a login step by step against an httptest or Caddy server.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(r *http.Request) *http.Response {
	b.t.Helper()
	resp, err := b.client.Do(r)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp
}

func (b *browser) get(target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	r, _ := http.NewRequest("GET", target, nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	resp := b.do(r)
	body := readBody(resp)
	return resp, body
}

// loginAt submits devidp's login page (at authorizeURL) as user and
// returns the callback URL devidp redirects to.
func (b *browser) loginAt(authorizeURL, user string) string {
	b.t.Helper()
	resp, page := b.get(authorizeURL)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("authorize page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if m[1] != "user" && m[1] != "action" {
			form.Set(m[1], htmlUnescape(m[2]))
		}
	}
	form.Set("user", user)
	u, _ := url.Parse(authorizeURL)
	u.RawQuery = ""
	r, _ := http.NewRequest("POST", u.String(), strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp = b.do(r)
	readBody(resp)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("login form: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&quot;", `"`).Replace(s)
}

func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// sessionCookies seals sess with g's store and returns the cookies.
func sessionCookies(t testing.TB, g *Gatehouse, sess *session.Session) []*http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if err := g.sessions.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()
}

func aliceSession() *session.Session {
	return &session.Session{
		ID: session.NewID(),
		Identity: identity.Identity{Subject: "alice-sub", User: "alice", Email: "alice@example.com",
			PreferredUsername: "alice", Name: "Alice", Groups: []string{"admins", "staff"}},
		AccessToken: "at", Created: time.Now().Unix(),
	}
}

func contextWithServer(r *http.Request, srv *caddyhttp.Server) context.Context {
	return context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv)
}

func contextWithReplacer(r *http.Request, repl *caddy.Replacer) context.Context {
	return context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
}

// app serves g in front of an upstream that records what it receives,
// under httptest, for tests that walk whole logins.
type app struct {
	*httptest.Server
	g    *Gatehouse
	mu   sync.Mutex
	seen []http.Header
}

func newApp(t testing.TB, g *Gatehouse) *app {
	a := &app{g: g}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(contextWithReplacer(r, repl))
		err := g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			a.mu.Lock()
			a.seen = append(a.seen, r.Header.Clone())
			a.mu.Unlock()
			_, _ = w.Write([]byte("hello " + r.Header.Get("X-Forwarded-User")))
			return nil
		}))
		if err != nil {
			var he caddyhttp.HandlerError
			errors.As(err, &he)
			w.WriteHeader(he.StatusCode)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

// login walks a whole login as user at a and returns the browser.
func (a *app) login(t testing.TB, user string) *browser {
	t.Helper()
	b := newBrowser(t)
	resp, _ := b.get(a.URL + "/start")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("first visit: %d", resp.StatusCode)
	}
	resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), user))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	return b
}

// session returns the session the browser's cookies hold for a.
func (a *app) session(t testing.TB, b *browser) *session.Session {
	t.Helper()
	r := httptest.NewRequest("GET", a.URL, nil)
	u, _ := url.Parse(a.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	s, _, err := a.g.sessions.Load(r)
	if err != nil {
		t.Fatalf("no session in the browser: %v", err)
	}
	return s
}

// testClock is an injectable, advanceable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func caddyDuration(d time.Duration) caddy.Duration { return caddy.Duration(d) }

// freeSite is http://127.0.0.1:<a free port>, for a site of a real Caddy.
func freeSite(t testing.TB) string {
	t.Helper()
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", ports[0])
}

// runCaddy adapts the Caddyfile cf and runs it in this process's Caddy
// until the test ends.
func runCaddy(t testing.TB, cf string) {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapting the Caddyfile: %v %v\n%s", err, warnings, cf)
	}
	if err := caddy.Load(cfg, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}
