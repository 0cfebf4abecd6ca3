package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

const apiAudience = "api://orders"

func bearerHandler(t testing.TB, idp *devidp.Provider, mod func(*Gatehouse)) *Gatehouse {
	return newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.Bearer = &BearerConfig{Audiences: []string{apiAudience}, RequiredScopes: []string{"orders:read"}}
		if mod != nil {
			mod(g)
		}
	})
}

func mint(t testing.TB, idp *devidp.Provider, sub string, aud []string, scopes []string, ttl time.Duration) string {
	t.Helper()
	tok, err := idp.MintAccessToken(sub, aud, scopes, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func apiRequest(auth ...string) *http.Request {
	r := httptest.NewRequest("GET", "/api/orders", nil)
	r.Header.Set("Accept", "application/json")
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func TestBearerIdentity(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	r := apiRequest("Bearer " + tok)
	r.Header.Set("X-Forwarded-User", "mallory")
	r.Header.Set("X_Forwarded_Groups", "root")
	resp, up, err := serve(t, g, r)
	if err != nil || resp.StatusCode != http.StatusOK || !up.called {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User":   "alice",
		"X-Forwarded-Email":  "alice@example.com",
		"X-Forwarded-Groups": "admins,staff",
	} {
		if got := up.req.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := up.req.Header.Get("X_Forwarded_Groups"); got != "" {
		t.Errorf("spoofed underscore header kept: %q", got)
	}
	if id, _ := up.repl.GetString("http.auth.user.id"); id != "alice" {
		t.Errorf("{http.auth.user.id} = %q", id)
	}
	// The token is passed on untouched for the API to use.
	if up.req.Header.Get("Authorization") != "Bearer "+tok {
		t.Error("Authorization header not passed upstream")
	}
}

// TestBearerIdentityMappedOnce: a token seen before gets the identity
// mapped the first time (the same one, not a copy) until the claims the
// identities keep change, as when another block of the login starts
// mapping a further claim.
func TestBearerIdentityMappedOnce(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	auth := func() principal {
		t.Helper()
		p, err := g.authenticateBearer(apiRequest("Bearer "+tok), tok, false)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := auth()
	if again := auth(); again.id != first.id || first.id.User != "alice" {
		t.Fatalf("mapped again, or wrongly: %+v", first.id)
	}
	keep := g.idp.mapper.Keep
	keep.Add("email")
	defer keep.Remove("email")
	if p := auth(); p.id == first.id || len(p.id.Claims["email"]) != 1 || p.id.Claims["email"][0] != "alice@example.com" {
		t.Fatalf("after a kept claim was added: %+v", p.id)
	}
	if first.id.Claims != nil {
		t.Fatalf("the earlier identity changed: %+v", first.id)
	}
}

// TestBearerRefusals: each bad token → the RFC 6750 answer, and the
// upstream sees nothing (mod_auth_openidc GHSA-wcvh-g65p-v576: a token for
// another resource server, or one without exp, must be refused).
func TestBearerRefusals(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	good := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	parts := strings.Split(good, ".")
	stranger := jwttest.NewKey("stranger", "RS256")
	for _, tc := range []struct {
		name      string
		auth      []string
		status    int
		challenge string
	}{
		{"bad signature", []string{"Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))}, 401, `error="invalid_token"`},
		{"another audience", []string{"Bearer " + mint(t, idp, "alice", []string{"api://billing"}, []string{"orders:read"}, time.Hour)}, 401, `error="invalid_token"`},
		{"expired", []string{"Bearer " + mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, -time.Hour)}, 401, `error="invalid_token"`},
		{"unknown key", []string{"Bearer " + stranger.Sign(map[string]any{"iss": idp.Issuer(), "aud": apiAudience, "sub": "x", "exp": time.Now().Add(time.Hour).Unix()}, nil)}, 401, `error="invalid_token"`},
		{"alg none", []string{"Bearer " + jwttest.Raw(map[string]any{"alg": "none"}, map[string]any{"iss": idp.Issuer(), "aud": apiAudience}, nil)}, 401, `error="invalid_token"`},
		{"garbage", []string{"Bearer abc"}, 401, `error="invalid_token"`},
		{"oversize", []string{"Bearer " + strings.Repeat("a", 70000)}, 401, `error="invalid_token"`},
		{"missing scope", []string{"Bearer " + mint(t, idp, "alice", []string{apiAudience}, []string{"orders:write"}, time.Hour)}, 403, `error="insufficient_scope", scope="orders:read"`},
		{"Bearer alone", []string{"Bearer"}, 400, `error="invalid_request"`},
		{"two tokens", []string{"Bearer " + good + " " + good}, 400, `error="invalid_request"`},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, 400, `error="invalid_request"`},
		{"non-ASCII", []string{"Bearer " + good + "ü"}, 400, `error="invalid_request"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, up, err := serve(t, g, apiRequest(tc.auth...))
			if err != nil || up.called || resp.StatusCode != tc.status {
				t.Fatalf("status %d (want %d), upstream %v, err %v", resp.StatusCode, tc.status, up.called, err)
			}
			if ch := resp.Header.Get("WWW-Authenticate"); ch != `Bearer realm="gatehouse", `+tc.challenge+`, resource_metadata="http://example.com/.well-known/oauth-protected-resource"` {
				t.Fatalf("WWW-Authenticate %q", ch)
			}
			body := readBody(resp)
			if !strings.HasPrefix(body, `{"error":`) || strings.Contains(body, "aud") || strings.Contains(body, "signature") {
				t.Fatalf("body %q", body)
			}
		})
	}
}

// TestBearerNoExp (review SA2-34; mod_auth_openidc GHSA-wcvh-g65p-v576): a
// token signed by a trusted key but without exp is refused — the handler
// case above with alg none proved the algorithm check, not this one.
func TestBearerNoExp(t *testing.T) {
	keys := newKeyServer(t)
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.Bearer = keys.bearer() })
	valid := keys.sign(nil)
	noExp := keys.key.Sign(map[string]any{"iss": keys.URL, "aud": apiAudience, "sub": "u1", "scope": "orders:read", "iat": time.Now().Unix()}, nil)
	if resp, up, _ := serve(t, g, apiRequest("Bearer "+valid)); resp.StatusCode != http.StatusOK || !up.called {
		t.Fatalf("the same key's valid token: %d", resp.StatusCode)
	}
	if resp, up, _ := serve(t, g, apiRequest("Bearer "+noExp)); resp.StatusCode != http.StatusUnauthorized || up.called {
		t.Fatalf("a trusted token without exp: %d", resp.StatusCode)
	}
}

// TestBearerNeverFallsBackToTheCookie: a request with a bearer token is
// decided by the token; a valid session cookie does not rescue a bad one.
func TestBearerNeverFallsBackToTheCookie(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	r := apiRequest("Bearer not.a.token")
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	resp, up, _ := serve(t, g, r)
	if up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, upstream %v", resp.StatusCode, up.called)
	}
	// Without a token the same cookie is a session (bearer is not `only`).
	r = apiRequest()
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	if resp, up, _ := serve(t, g, r); !up.called || resp.StatusCode != http.StatusOK {
		t.Fatalf("cookie without token: %d", resp.StatusCode)
	}
}

func TestBearerOnly(t *testing.T) {
	idp := newIDP(t)
	only := func(g *Gatehouse) {
		g.Bearer.Only = true
		g.ClientID, g.ClientSecret, g.CookieSecrets = "", "", nil // not needed for an API
	}
	g := bearerHandler(t, idp, only)
	tok := mint(t, idp, "bob", []string{apiAudience}, []string{"orders:read"}, time.Hour)

	// No token: 401 with a bare challenge, never a redirect, even for a browser.
	for _, r := range []*http.Request{apiRequest(), navigation("GET", "/api/orders")} {
		resp, up, _ := serve(t, g, r)
		if up.called || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="gatehouse", resource_metadata="http://example.com/.well-known/oauth-protected-resource"` {
			t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// The token is read from the header only: never the query string or a cookie.
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/api/orders?access_token="+tok, nil),
		func() *http.Request {
			r := apiRequest()
			r.AddCookie(&http.Cookie{Name: "_gatehouse", Value: tok})
			return r
		}(),
	} {
		if resp, up, _ := serve(t, g, r); up.called || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token outside the header accepted: %d", resp.StatusCode)
		}
	}
	resp, up, _ := serve(t, g, apiRequest("bearer "+tok))
	if !up.called || resp.StatusCode != http.StatusOK || up.req.Header.Get("X-Forwarded-User") != "bob" {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}

	// only + allow: anonymous requests continue without identity.
	anon := bearerHandler(t, idp, func(g *Gatehouse) { only(g); g.Unauthenticated = "allow" })
	r := apiRequest()
	r.Header.Set("X-Forwarded-User", "mallory")
	resp, up, _ = serve(t, anon, r)
	if !up.called || up.req.Header.Get("X-Forwarded-User") != "" {
		t.Fatalf("anonymous: %d", resp.StatusCode)
	}
}

func TestBearerProviderDown(t *testing.T) {
	g := newHandler(t, closedURL(t), func(g *Gatehouse) {
		g.Bearer = &BearerConfig{Audiences: []string{apiAudience}, Only: true}
	})
	resp, up, err := serve(t, g, apiRequest("Bearer a.b.c"))
	if err != nil || up.called || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
}

// TestNoGoroutineLeakOnReload: provisioning and cleaning up handler
// instances (what every Caddy reload does) leaves no goroutines behind —
// the JWKS caches are shared and stopped with their last user, and the
// verified-token cache has no janitor goroutine.
func TestNoGoroutineLeakOnReload(t *testing.T) {
	idp := newIDP(t)
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	cycle := func() {
		g := &Gatehouse{ProviderConfig: ProviderConfig{Issuer: idp.Issuer()}, Bearer: &BearerConfig{Audiences: []string{apiAudience}, Only: true}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := g.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if resp, _, _ := serve(t, g, apiRequest("Bearer "+tok)); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		g.Cleanup()
		cancel()
	}
	cycle() // warm up shared transports
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	for range 20 {
		cycle()
	}
	// Every instance gave its JWKS cache back: the last one destroyed it.
	if n, held := keyRegistries.References(idp.Issuer()); held {
		t.Errorf("JWKS caches still held (%d references) after every instance was cleaned up", n)
	}
	var after int
	for range 100 {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		after = runtime.NumGoroutine()
		if after <= before+2 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("goroutines: %d before 20 reloads, %d after", before, after)
}

// TestReloadSharesTheJWKSCache: while the old config still serves, the
// new one uses the same JWKS cache (no refetch), and the cache outlives
// the old config's cleanup.
func TestReloadSharesTheJWKSCache(t *testing.T) {
	idp := newIDP(t)
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	old := bearerHandler(t, idp, nil)
	if resp, _, _ := serve(t, old, apiRequest("Bearer "+tok)); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.StatusCode)
	}
	fetches := idp.Stats().JWKS
	next := bearerHandler(t, idp, nil)
	old.Cleanup()
	if resp, _, _ := serve(t, next, apiRequest("Bearer "+tok)); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.StatusCode)
	}
	if n := idp.Stats().JWKS; n != fetches {
		t.Fatalf("the reloaded config fetched the JWKS again (%d → %d)", fetches, n)
	}
}
