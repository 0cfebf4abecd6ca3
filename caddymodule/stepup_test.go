package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// stepUpSite serves /admin/* through a block with require_acr mfa and
// everything else through a block without it, on one cookie (per-path
// blocks, as the README shows); alice can authenticate with mfa, bob
// cannot. The upstream records the users it served.
func stepUpSite(t *testing.T) (*httptest.Server, *devidp.Provider, *[]string) {
	t.Helper()
	idp, _ := newConfiguredIDP(t, func(c *devidp.Config) {
		c.Users[0].ACRs = []string{"mfa"}
	})
	all := newHandler(t, idp.Issuer(), nil)
	admin := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.RequireACR = []string{"mfa"} })
	var served []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(contextWithReplacer(r, caddyhttp.NewTestReplacer(r)))
		g := all
		if strings.HasPrefix(r.URL.Path, "/admin/") {
			g = admin
		}
		err := g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			served = append(served, r.URL.Path+" "+r.Header.Get("X-Forwarded-User"))
			_, _ = w.Write([]byte("hello " + r.Header.Get("X-Forwarded-User")))
			return nil
		}))
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			w.WriteHeader(he.StatusCode)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, idp, &served
}

// TestStepUp: a session without the acr a route requires is sent back to
// the provider with acr_values (a browser) or gets 401
// insufficient_user_authentication (a script); a user who cannot meet it
// is refused at the callback and keeps the session they had; one who can
// passes with the stronger session, which the other routes accept too.
func TestStepUp(t *testing.T) {
	srv, idp, served := stepUpSite(t)
	login := func(user string) *browser { return signInFrom(t, srv.URL, user) }
	const target = "/admin/users?q=a%20b"

	bob := login("bob")
	// A script is told what is missing, per RFC 9470.
	r, _ := http.NewRequest("GET", srv.URL+target, nil)
	r.Header.Set("Accept", "application/json")
	resp := bob.do(r)
	readBody(resp)
	if c := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(c, `error="insufficient_user_authentication"`) || !strings.Contains(c, `acr_values="mfa"`) {
		t.Fatalf("XHR with a weak session: %d %q", resp.StatusCode, c)
	}
	// A browser goes back to the provider, asking for mfa.
	resp, _ = bob.get(srv.URL + target)
	authz, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || authz.Query().Get("acr_values") != "mfa" {
		t.Fatalf("navigation with a weak session: %d to %s", resp.StatusCode, authz)
	}
	// Bob cannot do mfa: the provider says acr 1, the callback refuses it,
	// and his session stays what it was.
	tokens := idp.Stats().Token
	resp, _ = bob.get(bob.loginAt(authz.String(), "bob"))
	if resp.StatusCode != http.StatusForbidden || idp.Stats().Token != tokens+1 {
		t.Fatalf("a step-up the provider did not confirm: %d", resp.StatusCode)
	}
	if resp, body := bob.get(srv.URL + "/"); resp.StatusCode != http.StatusOK || body != "hello bob" {
		t.Fatalf("bob's session after a failed step-up: %d %q", resp.StatusCode, body)
	}

	alice := login("alice")
	resp, _ = alice.get(srv.URL + target)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("alice's first visit to admin: %d", resp.StatusCode)
	}
	resp, _ = alice.get(alice.loginAt(resp.Header.Get("Location"), "alice"))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != target {
		t.Fatalf("alice's step-up callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	*served = nil
	for _, path := range []string{target, "/"} {
		if resp, body := alice.get(srv.URL + path); resp.StatusCode != http.StatusOK || body != "hello alice" {
			t.Fatalf("alice at %s after the step-up: %d %q", path, resp.StatusCode, body)
		}
	}
	if len(*served) != 2 || (*served)[0] != "/admin/users alice" {
		t.Fatalf("the upstream served %q", *served)
	}
	for _, s := range *served {
		if strings.HasPrefix(s, "/admin/") && !strings.HasSuffix(s, " alice") {
			t.Fatalf("the upstream served admin to %q", s)
		}
	}
}

// TestLoginParameters: login_hint and domain_hint pass from the start URL
// to the provider (a hint with a control character does not), with the
// provider's static auth_param and acr_values; the ID token's acr must
// be one of them, and with max_age its auth_time must be recent.
func TestLoginParameters(t *testing.T) {
	idp, _ := newConfiguredIDP(t, func(c *devidp.Config) { c.Users[0].ACRs = []string{"silver", "gold"} })
	a := newApp(t, newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.AuthParams = map[string]string{"hd": "example.com", "ui_locales": "de"}
		g.ACRValues = []string{"gold", "silver"}
		g.MaxAge = caddyDuration(600e9)
	}))
	b := newBrowser(t)
	resp, _ := b.get(a.URL + "/oauth2/start?rd=%2Fx&login_hint=alice%40example.com&domain_hint=example.com&prompt=none&nonce=evil")
	u, _ := url.Parse(resp.Header.Get("Location"))
	q := u.Query()
	for k, want := range map[string]string{"login_hint": "alice@example.com", "domain_hint": "example.com", "hd": "example.com",
		"ui_locales": "de", "acr_values": "gold silver", "max_age": "600"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q (%s)", k, q.Get(k), want, u)
		}
	}
	if q.Has("prompt") || q.Get("nonce") == "evil" || len(q["nonce"]) != 1 {
		t.Fatalf("the start URL set parameters it may not: %s", u)
	}
	resp, _ = b.get(b.loginAt(u.String(), "alice"))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/x" {
		t.Fatalf("alice (gold): %d", resp.StatusCode)
	}

	// Bob has no acr the provider may say: refused at the callback.
	b = newBrowser(t)
	resp, _ = b.get(a.URL + "/oauth2/start?rd=%2Fx&login_hint=bob%0Aevil")
	u, _ = url.Parse(resp.Header.Get("Location"))
	if u.Query().Has("login_hint") {
		t.Fatalf("a hint with a newline was passed on: %s", u)
	}
	if resp, _ = b.get(b.loginAt(u.String(), "bob")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob (acr 1 of gold silver): %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == a.g.CookieName && c.MaxAge >= 0 {
			t.Fatal("a refused acr got a session cookie")
		}
	}
}

// TestMaxAge: with max_age, an ID token whose auth_time is older than it
// (here: gatehouse's clock twenty minutes ahead of the provider's login)
// is refused; a fresh one passes.
func TestMaxAge(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	a := newApp(t, newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.MaxAge = caddyDuration(10 * time.Minute)
		g.now = clock.now
	}))
	loginAt := func() int {
		b := newBrowser(t)
		resp, _ := b.get(a.URL + "/oauth2/start?rd=%2F")
		resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "alice"))
		return resp.StatusCode
	}
	if code := loginAt(); code != http.StatusFound {
		t.Fatalf("a fresh authentication: %d", code)
	}
	clock.advance(20 * time.Minute)
	if code := loginAt(); code != http.StatusForbidden {
		t.Fatalf("an authentication older than max_age: %d, want 403", code)
	}
}

// TestStepUpPlainProvider: a provider without ID tokens (kind github)
// cannot say an acr: its logins do not ask for one, and its users get a
// 403 on a require_acr route instead of being sent round in a loop.
func TestStepUpPlainProvider(t *testing.T) {
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{Kind: kindGitHub, ClientID: testClientID, ClientSecret: testClientSecret}
		g.RequireACR = []string{"mfa"}
	})
	resp, _, _ := serve(t, g, navigation("GET", "/oauth2/start?rd=%2F"))
	if u, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusFound || u.Query().Has("acr_values") {
		t.Fatalf("a github login start: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	sess := aliceSession()
	r := navigation("GET", "/admin")
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	resp, up, _ := serve(t, g, r)
	if resp.StatusCode != http.StatusForbidden || up.called {
		t.Fatalf("a github session on a require_acr route: %d (upstream called: %v)", resp.StatusCode, up.called)
	}
}

// TestStepUpThroughCaddy runs the README's step-up Caddyfile (a snippet,
// handle /admin/* with require_acr, handle the rest without) in a real
// Caddy: the
// upstream's placeholders say who it served; bob's session opens the site
// but not /admin, alice steps up once and is served both.
func TestStepUpThroughCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	idp, _ := newConfiguredIDP(t, func(c *devidp.Config) { c.Users[0].ACRs = []string{"gold"} })
	site := freeSite(t)
	runCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
(auth) {
	issuer %[2]s
	client_id %[3]s
	client_secret %[4]s
	cookie_secret %[5]s
	cookie_insecure
}
%[1]s {
	bind 127.0.0.1
	handle /admin/* {
		gatehouse {
			import auth
			require_acr gold
		}
		respond "{http.request.uri.path} user={http.auth.user.id} acr={http.auth.user.acr}"
	}
	handle {
		gatehouse {
			import auth
		}
		respond "{http.request.uri.path} user={http.auth.user.id} acr={http.auth.user.acr}"
	}
}
`, site, idp.Issuer(), testClientID, testClientSecret, testCookieSecret))

	login := func(user string) *browser { return signInFrom(t, site, user) }
	bob := login("bob")
	if _, body := bob.get(site + "/"); body != "/ user=bob acr=1" {
		t.Fatalf("bob at /: %q", body)
	}
	resp, _ := bob.get(site + "/admin/x")
	if u, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusFound || u.Query().Get("acr_values") != "gold" {
		t.Fatalf("bob at /admin: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ = bob.get(bob.loginAt(resp.Header.Get("Location"), "bob")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob's step-up: %d", resp.StatusCode)
	}

	alice := login("alice")
	resp, _ = alice.get(site + "/admin/x")
	resp, _ = alice.get(alice.loginAt(resp.Header.Get("Location"), "alice"))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/admin/x" {
		t.Fatalf("alice's step-up: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]string{"/admin/x": "/admin/x user=alice acr=gold", "/": "/ user=alice acr=gold"} {
		if resp, body := alice.get(site + path); body != want {
			t.Fatalf("alice at %s: %d %v %q, want %q", path, resp.StatusCode, resp.Header, body, want)
		}
	}
}

// TestChainedBlocksShareTheSession: two gatehouse blocks that both run on
// a request (a `gatehouse /admin/*` block before a site-wide one, as a
// Caddyfile puts two directives in order) share its session: the first
// strips gatehouse's cookies before passing the request on, and the
// second used to find no session and start a login (a loop). Each
// block's rules still apply.
func TestChainedBlocksShareTheSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	idp := newIDP(t)
	site := freeSite(t)
	runCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
(auth) {
	issuer %[2]s
	client_id %[3]s
	client_secret %[4]s
	cookie_secret %[5]s
	cookie_insecure
}
%[1]s {
	bind 127.0.0.1
	gatehouse /admin/* {
		import auth
		allow_groups admins
	}
	gatehouse {
		import auth
	}
	respond "{http.request.uri.path} user={http.auth.user.id} cookie={http.request.header.Cookie}"
}
`, site, idp.Issuer(), testClientID, testClientSecret, testCookieSecret))
	login := func(user string) *browser { return signInFrom(t, site, user) }
	alice, bob := login("alice"), login("bob")
	for _, tc := range []struct {
		b      *browser
		path   string
		status int
		body   string
	}{
		{alice, "/admin/x", http.StatusOK, "/admin/x user=alice cookie="},
		{alice, "/", http.StatusOK, "/ user=alice cookie="},
		{bob, "/", http.StatusOK, "/ user=bob cookie="},
		{bob, "/admin/x", http.StatusForbidden, ""},
	} {
		resp, body := tc.b.get(site + tc.path)
		if resp.StatusCode != tc.status || tc.body != "" && body != tc.body {
			t.Errorf("%s: %d %q (Location %q), want %d %q", tc.path, resp.StatusCode, body, resp.Header.Get("Location"), tc.status, tc.body)
		}
	}
}

// TestStepUpBehindForwardAuth: behind a fronting proxy a weaker session
// is sent to path_prefix/start with the acr_values (and its provider), and
// a block without require_acr that serves /start asks the provider for
// them; acr_values a start URL cannot mean are not passed on.
func TestStepUpBehindForwardAuth(t *testing.T) {
	idp := newIDP(t)
	admin := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.RequireACR = []string{"gold"} })
	r := authRequest(true, headers(asNavigation, []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example", "X-Forwarded-Uri", "/admin/x?a=b%20c"})...)
	for _, c := range sessionCookies(t, admin, aliceSession()) {
		r.AddCookie(c)
	}
	resp, up, _ := serve(t, admin, r)
	want := "https://app.example/oauth2/start?rd=" + url.QueryEscape("https://app.example/admin/x?a=b%20c") + "&acr_values=gold"
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want || up.called {
		t.Fatalf("forward auth, weak session: %d %q (upstream called %v), want 302 %q", resp.StatusCode, resp.Header.Get("Location"), up.called, want)
	}

	site := newHandler(t, idp.Issuer(), nil) // serves /oauth2/start, no require_acr
	for query, acr := range map[string]string{
		"rd=%2Fx&acr_values=gold":                       "gold",
		"rd=%2Fx&acr_values=gold+silver":                "gold silver",
		"rd=%2Fx&acr_values=a%22b":                      "",
		"rd=%2Fx&acr_values=a%01b":                      "",
		"rd=%2Fx&acr_values=" + strings.Repeat("a+", 9): "",
	} {
		resp, _, _ := serve(t, site, navigation("GET", "/oauth2/start?"+query))
		u, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || u.Query().Get("acr_values") != acr {
			t.Errorf("/start?%s: %d, acr_values %q, want %q", query, resp.StatusCode, u.Query().Get("acr_values"), acr)
		}
	}
}

// signInFrom signs user in at devidp from a visit to site's start page and
// returns the browser, its cookies set.
func signInFrom(t *testing.T, site, user string) *browser {
	t.Helper()
	b := newBrowser(t)
	resp, _ := b.get(site + "/")
	resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), user))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%s: login %d", user, resp.StatusCode)
	}
	return b
}
