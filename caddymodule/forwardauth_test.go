package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/session"
)

// authRequest is a subrequest to /oauth2/auth on example.com with header
// pairs; fromProxy has Caddy trust its client as a proxy
// (trusted_proxies), as Caddy's server marks such a request.
func authRequest(fromProxy bool, headers ...string) *http.Request {
	r := httptest.NewRequest("GET", "/oauth2/auth", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	if fromProxy {
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey,
			map[string]any{caddyhttp.TrustedProxyVarKey: true}))
	}
	return r
}

var (
	asNavigation = []string{"Accept", "text/html,application/xhtml+xml", "Sec-Fetch-Mode", "navigate"}
	asAPI        = []string{"Accept", "application/json"}
)

func headers(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// startURL is the login start a forward-auth answer names for rd: on rd's
// host, or a path when rd is one.
func startURL(rd string) string {
	u, _ := url.Parse(rd)
	origin := ""
	if u.Host != "" {
		origin = u.Scheme + "://" + u.Host
	}
	return origin + "/oauth2/start?rd=" + url.QueryEscape(rd)
}

// withSession adds sess's cookies, sealed by g, to r.
func withSession(t *testing.T, g *Gatehouse, r *http.Request, sess *session.Session) *http.Request {
	t.Helper()
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	return r
}

// wantHeaders checks the values of headers in h, joined with "|".
func wantHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got := strings.Join(h.Values(name), "|"); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
}

func publicPathsHandler(t *testing.T) *Gatehouse {
	return newHandler(t, newIDP(t).Issuer(), func(g *Gatehouse) { g.PublicPaths = []string{"/public/*"} })
}

// checkForwardAuth runs r through g's /oauth2/auth and checks the status
// and Location, and that nothing was passed on to an upstream.
func checkForwardAuth(t *testing.T, g *Gatehouse, r *http.Request, status int, location string) *http.Response {
	t.Helper()
	resp, up, err := serve(t, g, r)
	if err != nil || up.called {
		t.Fatalf("err %v, upstream called %t", err, up.called)
	}
	if resp.StatusCode != status || resp.Header.Get("Location") != location {
		t.Fatalf("%d, Location %q; want %d, %q", resp.StatusCode, resp.Header.Get("Location"), status, location)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	return resp
}

// oauth2-proxy CVE-2026-40575: with --reverse-proxy, a client's own
// X-Forwarded-Uri decided its skip-auth routes. From a client Caddy does
// not trust as a proxy, it decides neither public_paths nor the return-to.
func TestForwardAuthIgnoresForwardedURIFromUntrustedClient(t *testing.T) {
	g := publicPathsHandler(t)
	spoof := []string{"X-Forwarded-Uri", "/public/page", "X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "https", "X-Forwarded-Method", "GET"}
	checkForwardAuth(t, g, authRequest(false, headers(spoof, asAPI)...), http.StatusUnauthorized, "")
	checkForwardAuth(t, g, authRequest(false, headers(spoof, asNavigation)...), http.StatusFound,
		startURL("http://example.com/oauth2/auth"))
}

// The same for nginx's X-Original-URL (and CVE-2026-34457: no header a
// client sends decides that a request needs no sign-in). Untrusted, it
// does not make the answer nginx's 401 either.
func TestForwardAuthIgnoresOriginalURLFromUntrustedClient(t *testing.T) {
	g := publicPathsHandler(t)
	spoof := []string{"X-Original-URL", "https://example.com/public/page"}
	checkForwardAuth(t, g, authRequest(false, headers(spoof, asAPI)...), http.StatusUnauthorized, "")
	checkForwardAuth(t, g, authRequest(false, headers(spoof, asNavigation)...), http.StatusFound,
		startURL("http://example.com/oauth2/auth"))
}

// A trusted proxy's original URL that cannot be read, that holds a "#"
// (CVE-2026-41059: nginx routes "/public#/../secret" by "/public", an app
// may serve "/secret"), or that is named both ways (one of them came from
// the client) is refused.
func TestForwardAuthRefusesUnreadableOriginalURL(t *testing.T) {
	g := publicPathsHandler(t)
	for _, h := range [][]string{
		{"X-Forwarded-Uri", "/public/x", "X-Original-URL", "http://example.com/public/x"},
		{"X-Forwarded-Uri", "/public#/../secret"},
		{"X-Forwarded-Uri", "/public%23/../secret#x"},
		{"X-Original-URL", "http://example.com/public#/../secret"},
		{"X-Forwarded-Uri", "/public/%zz"},
		{"X-Forwarded-Uri", "public/x"},
		{"X-Forwarded-Uri", "http://example.com/public/x"},
		{"X-Forwarded-Uri", "/public/x", "X-Forwarded-Proto", "javascript"},
		{"X-Original-URL", "javascript://example.com/public/x"},
		{"X-Original-URL", "/public/x"},
		{"X-Original-URL", "http:///public/x"},
	} {
		resp, up, err := serve(t, g, authRequest(true, headers(h, asAPI)...))
		if err != nil || up.called || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %d, upstream called %t, err %v", h, resp.StatusCode, up.called, err)
		}
	}
}

// public_paths match the trusted proxy's original path, cleaned as Caddy's
// path matcher cleans it: dot segments and encodings do not make a
// protected path public.
func TestForwardAuthPublicPathsOnOriginalPath(t *testing.T) {
	g := publicPathsHandler(t)
	for _, h := range [][]string{
		{"X-Forwarded-Uri", "/public/page?x=1"},
		{"X-Forwarded-Uri", "/PUBLIC/page"},
		{"X-Original-URL", "https://app.example.com/public/page"},
	} {
		resp := checkForwardAuth(t, g, authRequest(true, headers(h, asAPI)...), http.StatusOK, "")
		if resp.Header.Get("X-Forwarded-User") != "" {
			t.Fatalf("%q: identity headers without a session", h)
		}
	}
	for _, uri := range []string{
		"/public/../secret", "/public/%2e%2e/secret", "/public/%2E%2E/secret", "/public/..%2fsecret/..",
		"/secret?/public/x", "/secret/public/x", "/public", "//public/../secret",
	} {
		resp, _, _ := serve(t, g, authRequest(true, headers([]string{"X-Forwarded-Uri", uri}, asAPI)...))
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s passed as a public path", uri)
		}
	}
}

// A sign-in for Traefik and Caddy's forward_auth: 302 to the login start
// with the original URL, which they pass on to the browser. Only a
// browser navigation, judged on the original method and headers.
func TestForwardAuthAnonymousNavigationRedirects(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), nil)
	traefik := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/reports/2026?sort=date&q=a%2Fb"}
	checkForwardAuth(t, g, authRequest(true, headers(traefik, asNavigation)...), http.StatusFound,
		startURL("https://app.example.com/reports/2026?sort=date&q=a%2Fb"))

	// Not a navigation: an API call, XHR, or a form POST.
	for _, h := range [][]string{
		headers(traefik, asAPI),
		headers(traefik, asNavigation, []string{"X-Requested-With", "XMLHttpRequest"}),
		headers([]string{"X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/form", "Accept", "text/html"}),
	} {
		resp := checkForwardAuth(t, g, authRequest(true, h...), http.StatusUnauthorized, "")
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%q: WWW-Authenticate %q", h, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// An original URL the return-to validator refuses comes back as "/".
	for _, h := range [][]string{{"X-Forwarded-Uri", "/a\\evil.example"}, {"X-Forwarded-Uri", "/x", "X-Forwarded-Host", "me@evil.example"}} {
		checkForwardAuth(t, g, authRequest(true, headers(h, asNavigation)...), http.StatusFound, startURL("/"))
	}
}

// nginx's auth_request turns a 302 into a 500: a navigation it asks about
// (X-Original-URL) gets 401 with the login start in Location, an API call
// 401 without.
func TestForwardAuthAnonymousForNginx(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), nil)
	nginx := []string{"X-Original-URL", "https://app.example.com/reports?q=1", "X-Forwarded-Method", "GET"}
	checkForwardAuth(t, g, authRequest(true, headers(nginx, asNavigation)...), http.StatusUnauthorized,
		startURL("https://app.example.com/reports?q=1"))
	checkForwardAuth(t, g, authRequest(true, headers(nginx, asAPI)...), http.StatusUnauthorized, "")
}

// `unauthenticated` decides as for any request: 401 always, or 200
// without identity (allow).
func TestForwardAuthUnauthenticatedSetting(t *testing.T) {
	idp := newIDP(t)
	for setting, status := range map[string]int{"401": http.StatusUnauthorized, "allow": http.StatusOK} {
		g := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.Unauthenticated = setting })
		resp := checkForwardAuth(t, g, authRequest(false, asNavigation...), status, "")
		if resp.Header.Get("X-Forwarded-User") != "" {
			t.Fatalf("%s: identity headers without a session", setting)
		}
	}
}

func TestForwardAuthRefusedByAllowRules(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), func(g *Gatehouse) { g.AllowGroups = []string{"admins"} })
	bob := aliceSession()
	bob.Identity.User, bob.Identity.Email, bob.Identity.Groups = "bob", "bob@example.com", []string{"staff"}
	for _, h := range [][]string{asAPI, asNavigation} {
		resp := checkForwardAuth(t, g, withSession(t, g, authRequest(true, h...), bob), http.StatusForbidden, "")
		if resp.Header.Get("X-Forwarded-User") != "" {
			t.Fatal("a refused user's identity was answered")
		}
	}
}

// Signed in: 200 with the identity as response headers — gatehouse's
// values, never the client's — and no token unless configured.
func TestForwardAuthSignedIn(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), func(g *Gatehouse) { g.AllowGroups = []string{"admins"} })
	r := authRequest(true, headers(asNavigation, []string{"X-Forwarded-Uri", "/reports",
		"X-Forwarded-User", "mallory", "X_Forwarded_Groups", "root", "X-Forwarded-Access-Token", "forged"})...)
	resp := checkForwardAuth(t, g, withSession(t, g, r, aliceSession()), http.StatusOK, "")
	wantHeaders(t, resp.Header, map[string]string{
		"X-Forwarded-User":               "alice",
		"X-Forwarded-Email":              "alice@example.com",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Groups":             "admins,staff",
		"X-Forwarded-Access-Token":       "",
		"Authorization":                  "",
		"X_Forwarded_Groups":             "",
		"Set-Cookie":                     "",
	})
	if body := readBody(resp); body != "" {
		t.Errorf("body %q", body)
	}
}

func TestForwardAuthPassesTokensWhenConfigured(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), func(g *Gatehouse) {
		g.PassAccessToken, g.PassAuthorization = true, true
		g.Headers = map[string]string{"X-Department": "department"}
	})
	sess := aliceSession()
	sess.Identity.Claims = map[string][]string{"department": {"research"}}
	resp := checkForwardAuth(t, g, withSession(t, g, authRequest(false, asAPI...), sess), http.StatusOK, "")
	wantHeaders(t, resp.Header, map[string]string{
		"X-Forwarded-User":         "alice",
		"X-Forwarded-Access-Token": "at",
		"Authorization":            "Bearer at",
		"X-Department":             "research",
	})
}

// Bearer tokens are checked as on any request, in bearer { only } mode
// too, where the other endpoints answer 404.
func TestForwardAuthBearer(t *testing.T) {
	idp := newIDP(t)
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	for _, only := range []bool{false, true} {
		g := bearerHandler(t, idp, func(g *Gatehouse) { g.Bearer.Only = only })
		resp := checkForwardAuth(t, g, authRequest(false, "Authorization", "Bearer "+tok), http.StatusOK, "")
		if resp.Header.Get("X-Forwarded-User") != "alice" || resp.Header.Get("X-Forwarded-Groups") != "admins,staff" {
			t.Fatalf("only %t: identity %v", only, resp.Header)
		}
		checkForwardAuth(t, g, authRequest(false, "Authorization", "Bearer "+tok+"x"), http.StatusUnauthorized, "")
		checkForwardAuth(t, g, authRequest(false, asAPI...), http.StatusUnauthorized, "")
		weak := mint(t, idp, "alice", []string{apiAudience}, nil, time.Hour)
		checkForwardAuth(t, g, authRequest(false, "Authorization", "Bearer "+weak), http.StatusForbidden, "")
	}
}

// A session whose tokens expired while the provider is down: 503, as for
// any request.
func TestForwardAuthProviderOutage(t *testing.T) {
	idp, down := newSwitchableIDP(t)
	clock := &testClock{t: time.Now()}
	a := newApp(t, offlineHandler(t, idp, clock, nil))
	b := a.login(t, "alice")
	down.Store(true)
	clock.advance(devidp.DefaultAccessTokenTTL + time.Minute)
	resp, _ := b.get(a.URL + "/oauth2/auth")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d", resp.StatusCode)
	}
}

// A refresh re-issues the session cookie on the 200, for the fronting
// proxy to pass on; the upstream behind gatehouse sees nothing.
func TestForwardAuthRefreshSetsCookie(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	a := newApp(t, offlineHandler(t, idp, clock, nil))
	b := a.login(t, "alice")
	seen := len(a.seen)
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	resp, body := b.get(a.URL + "/oauth2/auth")
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("X-Forwarded-User") != "alice" {
		t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
	}
	if idp.Stats().Refresh != 1 || len(resp.Cookies()) == 0 || len(a.seen) != seen {
		t.Fatalf("%d refreshes, cookies %v, upstream reached %t", idp.Stats().Refresh, resp.Cookies(), len(a.seen) != seen)
	}
}

func TestForwardAuthMethods(t *testing.T) {
	g := newHandler(t, newIDP(t).Issuer(), nil)
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		r := authRequest(false, asAPI...)
		r.Method = m
		resp, up, _ := serve(t, g, r)
		if resp.StatusCode != http.StatusMethodNotAllowed || up.called {
			t.Fatalf("%s: %d", m, resp.StatusCode)
		}
	}
	r := authRequest(false, asAPI...)
	r.Method = "HEAD"
	checkForwardAuth(t, g, r, http.StatusUnauthorized, "")
}

// /oauth2/start?rd= logs in and returns to rd when the return-to validator
// accepts it (the same host, as a path or a URL), else to "/": no open
// redirect (CVE-2020-5233, CVE-2020-11053, CVE-2024-21497).
func TestLoginStartReturnsToValidatedRD(t *testing.T) {
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	for rd, want := range map[string]string{
		"https://evil.example/x":   "/",
		"//evil.example/x":         "/",
		"/\\evil.example":          "/",
		"/%09/evil.example":        "/",
		"javascript:alert(1)":      "/",
		"":                         "/",
		"/reports?q=a%2Fb":         "/reports?q=a%2Fb",
		a.URL + "/reports?x=1&y=2": a.URL + "/reports?x=1&y=2",
	} {
		b := newBrowser(t)
		resp, _ := b.get(a.URL + "/oauth2/start?rd=" + url.QueryEscape(rd))
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()+"/authorize?") {
			t.Fatalf("rd %q: %d %q", rd, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "alice"))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Errorf("rd %q: callback %d → %q, want %q", rd, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if len(a.seen) != 0 {
		t.Fatal("the start endpoint reached the upstream")
	}
	r, _ := http.NewRequest("POST", a.URL+"/oauth2/start?rd=/x", nil)
	if resp := newBrowser(t).do(r); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Location") != "" {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

// In bearer { only } mode nobody signs in: /oauth2/start is 404.
func TestLoginStartBearerOnly(t *testing.T) {
	g := bearerHandler(t, newIDP(t), func(g *Gatehouse) { g.Bearer.Only = true })
	resp, up, _ := serve(t, g, navigation("GET", "/oauth2/start?rd=/x"))
	if resp.StatusCode != http.StatusNotFound || up.called {
		t.Fatalf("%d", resp.StatusCode)
	}
}
