package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
)

// offlineHandler is a handler on devidp that gets refresh tokens, on clock.
func offlineHandler(t *testing.T, idp *devidp.Provider, clock *testClock, mod func(*Gatehouse)) *Gatehouse {
	return newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.Scopes = []string{"openid", "email", "profile", "offline_access"}
		g.now = clock.now
		if mod != nil {
			mod(g)
		}
	})
}

func TestRefreshThroughHandler(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	a := newApp(t, g)
	b := a.login(t, "alice")
	before := a.session(t, b)
	if before.RefreshToken == "" || before.IDToken == "" || before.AccessExpiry == 0 {
		t.Fatalf("login kept no refresh token, ID token or expiry: %+v", before)
	}

	resp, body := b.get(a.URL + "/page")
	if resp.StatusCode != 200 || idp.Stats().Refresh != 0 {
		t.Fatalf("fresh session: %d %q, %d refreshes", resp.StatusCode, body, idp.Stats().Refresh)
	}

	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second) // within refresh_before
	resp, body = b.get(a.URL + "/page")
	if resp.StatusCode != 200 || body != "hello alice" {
		t.Fatalf("after the refresh: %d %q", resp.StatusCode, body)
	}
	if n := idp.Stats().Refresh; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	after := a.session(t, b)
	if after.RefreshToken == before.RefreshToken || after.AccessIssued <= before.AccessIssued || after.AccessExpiry <= before.AccessExpiry {
		t.Fatal("the rotated tokens were not stored in the cookie")
	}
	if after.ID != before.ID || after.Created != before.Created {
		t.Fatal("refresh changed the session's ID or login time")
	}
}

// TestConcurrentRefreshThroughHandler: 50 concurrent requests of one
// expiring session: one refresh at the provider, every request served.
func TestConcurrentRefreshThroughHandler(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	a := newApp(t, g)
	b := a.login(t, "alice")
	u, _ := url.Parse(a.URL)
	cookies := b.client.Jar.Cookies(u)
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)

	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := http.NewRequest("GET", a.URL+"/page", nil)
			for _, c := range cookies {
				r.AddCookie(c)
			}
			resp, err := http.DefaultClient.Do(r)
			if err == nil {
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 {
		t.Fatalf("%d of 50 requests succeeded", ok.Load())
	}
	if n := idp.Stats().Refresh; n != 1 {
		t.Fatalf("%d token-endpoint refreshes for 50 concurrent requests, want 1", n)
	}
}

// TestRefreshRejectedEndsTheSession: someone else spent the refresh token
// (devidp then revokes the whole family, RFC 9700 §4.14.2): the session
// ends — a browser is sent to log in again, an API call gets 401, and the
// cookie is expired.
func TestRefreshRejectedEndsTheSession(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	a := newApp(t, g)
	b := a.login(t, "alice")
	stolen := a.session(t, b).RefreshToken
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {stolen}}
	req, _ := http.NewRequest("POST", idp.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("spending the refresh token elsewhere: %v", err)
	}

	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	r, _ := http.NewRequest("GET", a.URL+"/api/x", nil)
	r.Header.Set("Accept", "application/json")
	resp := b.do(r)
	readBody(resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API call after a refused refresh: %d", resp.StatusCode)
	}
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || c.Name == "_gatehouse" && c.MaxAge < 0
	}
	if !cleared {
		t.Fatal("the ended session's cookie was not expired")
	}
	resp, _ = b.get(a.URL + "/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()) {
		t.Fatalf("navigation after the session ended: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestProviderDownKeepsAValidSession: an unreachable provider does not log
// anyone out while the access token is valid; after it expires the request
// gets 503 and the session is kept for when the provider is back.
func TestProviderDownKeepsAValidSession(t *testing.T) {
	clock := &testClock{t: epochNow()}
	g := newHandler(t, closedURL(t), func(g *Gatehouse) { g.now = clock.now })
	sess := aliceSession()
	sess.Created = clock.now().Unix()
	sess.RefreshToken = "rt"
	sess.AccessExpiry = clock.now().Add(30 * time.Second).Unix() // due for a refresh
	cookies := sessionCookies(t, g, sess)
	req := func() *http.Request {
		r := navigation("GET", "/page")
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return r
	}
	resp, up, err := serve(t, g, req())
	if err != nil || !up.called || resp.StatusCode != 200 {
		t.Fatalf("valid access token, provider down: %d %v", resp.StatusCode, err)
	}
	clock.advance(31 * time.Second)
	resp, up, _ = serve(t, g, req())
	if up.called || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("expired access token, provider down: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "_gatehouse" {
			t.Fatal("the session cookie was touched while the provider is down")
		}
	}
}

func TestSessionWithoutRefreshTokenEndsAtExpiry(t *testing.T) {
	clock := &testClock{t: epochNow()}
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.now = clock.now })
	sess := aliceSession()
	sess.Created = clock.now().Unix()
	sess.AccessExpiry = clock.now().Add(10 * time.Minute).Unix()
	cookies := sessionCookies(t, g, sess)
	req := func() *http.Request {
		r := apiRequest()
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return r
	}
	if resp, _, _ := serve(t, g, req()); resp.StatusCode != 200 {
		t.Fatalf("before expiry: %d", resp.StatusCode)
	}
	clock.advance(10 * time.Minute)
	if resp, up, _ := serve(t, g, req()); up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("at expiry without a refresh token: %d", resp.StatusCode)
	}
}

func TestSessionLifetimeEnforced(t *testing.T) {
	clock := &testClock{t: epochNow()}
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.now = clock.now
		g.SessionLifetime = caddyDuration(2 * time.Hour)
	})
	sess := aliceSession()
	sess.Created = clock.now().Unix()
	cookies := sessionCookies(t, g, sess)
	req := func() *http.Request {
		r := apiRequest()
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return r
	}
	clock.advance(2*time.Hour - time.Second)
	if resp, _, _ := serve(t, g, req()); resp.StatusCode != 200 {
		t.Fatalf("within the lifetime: %d", resp.StatusCode)
	}
	clock.advance(time.Second)
	if resp, up, _ := serve(t, g, req()); up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("at the end of the lifetime: %d", resp.StatusCode)
	}
}

func TestSignOut(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	a := newApp(t, g)
	b := a.login(t, "alice")
	u, _ := url.Parse(a.URL)
	oldCookies := b.client.Jar.Cookies(u)
	idToken := a.session(t, b).IDToken
	// A login still in progress in another tab.
	oldCookies = append(oldCookies, &http.Cookie{Name: "_gatehouse_login_0123456789abcdef", Value: "x"})

	for i, tc := range []struct {
		method, rd, want string
	}{
		{"POST", "/bye?x=1", a.URL + "/bye?x=1"},
		{"GET", "//evil.example/", a.URL + "/"},
		{"GET", "https://evil.example/", a.URL + "/"},
	} {
		r, _ := http.NewRequest(tc.method, a.URL+"/oauth2/sign_out?rd="+url.QueryEscape(tc.rd), nil)
		for _, c := range oldCookies {
			r.AddCookie(c)
		}
		resp := b.do(r)
		readBody(resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		// Only the first sign-out knows the session: the cookie is signed
		// out after it (and its refresh token revoked once, not again).
		hint := ""
		if i == 0 {
			hint = idToken
		}
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), idp.Issuer()+"/end_session?") ||
			q.Get("post_logout_redirect_uri") != tc.want || q.Get("id_token_hint") != hint || q.Get("client_id") != testClientID || q.Get("state") == "" {
			t.Fatalf("%s sign-out with rd=%q: %d %s", tc.method, tc.rd, resp.StatusCode, loc)
		}
		expired := map[string]bool{}
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 {
				expired[c.Name] = true
			}
		}
		logins := 0
		for name := range expired {
			if strings.HasPrefix(name, "_gatehouse_login_") {
				logins++
			}
		}
		if !expired["_gatehouse"] || logins == 0 {
			t.Fatalf("sign-out did not expire every gatehouse cookie: %v", expired)
		}
	}

	// The old cookie no longer works (caddy-security #272), here at least.
	r, _ := http.NewRequest("GET", a.URL+"/page", nil)
	r.Header.Set("Accept", "application/json")
	for _, c := range oldCookies {
		r.AddCookie(c)
	}
	if resp, _ := http.DefaultClient.Do(r); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a signed-out cookie still works: %d", resp.StatusCode)
	}
}

func TestSignOutWithoutEndSession(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.AuthorizationEndpoint, g.TokenEndpoint, g.JWKSURI = "https://idp.example/a", "https://idp.example/t", "https://idp.example/k"
		g.PostLogoutRedirect = "/goodbye"
	})
	resp, _, err := serve(t, g, httptest.NewRequest("GET", "/oauth2/sign_out", nil))
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/goodbye" {
		t.Fatalf("%d %q %v", resp.StatusCode, resp.Header.Get("Location"), err)
	}
	resp, _, _ = serve(t, g, httptest.NewRequest("DELETE", "/oauth2/sign_out", nil))
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
}

func TestAllowRules(t *testing.T) {
	type user struct {
		email      string
		unverified bool
		groups     []string
		claims     map[string][]string
	}
	alice := user{email: "alice@example.com", groups: []string{"admins", "staff"}, claims: map[string][]string{"department": {"finance"}}}
	bob := user{email: "bob@partner.example", groups: []string{"staff"}}
	for _, tc := range []struct {
		name  string
		rules func(*Gatehouse)
		who   user
		allow bool
	}{
		{"no rules", nil, bob, true},
		{"email listed", func(g *Gatehouse) { g.AllowEmails = []string{"Alice@Example.com"} }, alice, true},
		{"email not listed", func(g *Gatehouse) { g.AllowEmails = []string{"alice@example.com"} }, bob, false},
		{"unverified email", func(g *Gatehouse) { g.AllowEmails = []string{"alice@example.com"} }, user{email: "alice@example.com", unverified: true}, false},
		{"domain", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, alice, true},
		{"other domain", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, bob, false},
		{"subdomain is not the domain", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, user{email: "eve@evil.example.com"}, false},
		{"look-alike domain", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, user{email: "eve@evilexample.com"}, false},
		// oauth2-proxy CVE-2026-40574
		{"two @", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, user{email: "attacker@evil.com@example.com"}, false},
		{"unverified domain", func(g *Gatehouse) { g.AllowDomains = []string{"example.com"} }, user{email: "alice@example.com", unverified: true}, false},
		{"group", func(g *Gatehouse) { g.AllowGroups = []string{"admins"} }, alice, true},
		{"not in group", func(g *Gatehouse) { g.AllowGroups = []string{"admins"} }, bob, false},
		{"group case matters", func(g *Gatehouse) { g.AllowGroups = []string{"Admins"} }, alice, false},
		// oauth2-proxy CVE-2021-21411: a missing group source denies.
		{"no groups at all", func(g *Gatehouse) { g.AllowGroups = []string{"admins"} }, user{email: "x@example.com"}, false},
		{"claim", func(g *Gatehouse) { g.AllowClaims = map[string][]string{"department": {"finance", "ops"}} }, alice, true},
		{"claim absent", func(g *Gatehouse) { g.AllowClaims = map[string][]string{"department": {"finance"}} }, bob, false},
		{"either rule (domain or group)", func(g *Gatehouse) {
			g.AllowDomains = []string{"example.com"}
			g.AllowGroups = []string{"partners"}
		}, bob, false},
		{"either rule, second matches", func(g *Gatehouse) {
			g.AllowDomains = []string{"corp.example"}
			g.AllowGroups = []string{"staff"}
		}, bob, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newHandler(t, "https://idp.example", tc.rules)
			sess := aliceSession()
			sess.Email, sess.EmailUnverified, sess.Groups, sess.Claims = tc.who.email, tc.who.unverified, tc.who.groups, tc.who.claims
			r := navigation("GET", "/page")
			for _, c := range sessionCookies(t, g, sess) {
				r.AddCookie(c)
			}
			resp, up, err := serve(t, g, r)
			if err != nil || up.called != tc.allow {
				t.Fatalf("allowed = %v, want %v (%v)", up.called, tc.allow, err)
			}
			if !tc.allow {
				body := readBody(resp)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "signed in as "+tc.who.email) ||
					!strings.Contains(body, `action="/oauth2/sign_out"`) {
					t.Fatalf("403 page: %d %s", resp.StatusCode, body)
				}
			}
		})
	}
	// An API request gets JSON.
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.AllowGroups = []string{"nobody"} })
	r := apiRequest()
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	resp, _, _ := serve(t, g, r)
	if body := readBody(resp); resp.StatusCode != 403 || !strings.HasPrefix(body, `{"error":"forbidden"`) {
		t.Fatalf("API 403: %d %s", resp.StatusCode, body)
	}
}

func TestAllowRulesOnBearerTokens(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, func(g *Gatehouse) { g.AllowGroups = []string{"admins"} })
	for user, want := range map[string]int{"alice": 200, "bob": 403} {
		tok := mint(t, idp, user, []string{apiAudience}, []string{"orders:read"}, time.Hour)
		if resp, _, _ := serve(t, g, apiRequest("Bearer "+tok)); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", user, resp.StatusCode, want)
		}
	}
}

func TestHeaderMapping(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Headers = map[string]string{"X-Dept": "department", "x-employee-id": "employee_id"}
		g.PassAccessToken = true
		g.PassAuthorization = true
	})
	sess := aliceSession()
	sess.AccessToken = "the-access-token"
	sess.Claims = map[string][]string{"department": {"finance", "ops"}}
	r := httptest.NewRequest("GET", "/page", nil)
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	r.Header["X-Dept"] = []string{"forged"}
	r.Header["X_dept"] = []string{"forged"}
	r.Header["X-Employee-Id"] = []string{"forged"}
	r.Header.Set("Authorization", "Basic Zm9yZ2Vk")
	resp, up, err := serve(t, g, r)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, err)
	}
	h := up.req.Header
	if got := h.Values("X-Dept"); len(got) != 1 || got[0] != "finance,ops" {
		t.Errorf("X-Dept = %q", got)
	}
	if h.Get("X_dept") != "" || h.Get("X-Employee-Id") != "" {
		t.Errorf("spoofed mapped headers kept: %v", h)
	}
	if v, _ := up.repl.GetString("http.auth.user.department"); v != "finance,ops" {
		t.Errorf("{http.auth.user.department} = %q", v)
	}
	if h.Get("X-Forwarded-Access-Token") != "the-access-token" || h.Get("Authorization") != "Bearer the-access-token" {
		t.Errorf("access token headers: %q %q", h.Get("X-Forwarded-Access-Token"), h.Get("Authorization"))
	}
}

// TestSessionKeepsClaimsOtherBlocksNeed: the claims every block sharing
// the cookie maps or checks are kept in the session, whichever block
// handled the login (per-path rules in other blocks can use them).
func TestSessionKeepsClaimsOtherBlocksNeed(t *testing.T) {
	loginBlock := newHandler(t, "https://idp.example", nil)
	newHandler(t, "https://idp.example", func(g *Gatehouse) { g.AllowClaims = map[string][]string{"department": {"finance"}} })
	res := &flow.Result{
		IDToken: nil,
		Claims: map[string]any{
			"sub": "u1", "department": "finance", "unrelated": "not kept",
		},
		Tokens: flow.Tokens{AccessToken: "at", Expiry: time.Now().Add(time.Hour)},
	}
	old := &session.Session{ID: "s", Identity: identity.Identity{Subject: "u1", User: "u1"}, Created: time.Now().Unix()}
	id, err := loginBlock.idp.mapper.Map(res.Claims)
	if err != nil {
		t.Fatal(err)
	}
	res.Identity = &id
	sess := flow.Refreshed(old, res, time.Now())
	if sess.Claims["department"][0] != "finance" || sess.Claims["unrelated"] != nil {
		t.Fatalf("claims kept: %v", sess.Claims)
	}
}

func epochNow() time.Time { return time.Now().Truncate(time.Second) }

// TestSecretRotation: a cookie sealed with an older cookie_secret is
// accepted and re-sealed with the first; one sealed with a removed secret
// is no session.
func TestSecretRotation(t *testing.T) {
	const oldSecret = "the-old-cookie-secret-0123456789abcdef"
	old := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.CookieSecrets = []string{oldSecret} })
	cookies := sessionCookies(t, old, aliceSession())

	rotated := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.CookieSecrets = []string{testCookieSecret, oldSecret} })
	r := apiRequest()
	for _, c := range cookies {
		r.AddCookie(c)
	}
	resp, up, _ := serve(t, rotated, r)
	if !up.called || resp.StatusCode != 200 {
		t.Fatalf("old-secret cookie after rotation: %d", resp.StatusCode)
	}
	var resealed []*http.Cookie
	for _, c := range resp.Cookies() {
		if c.MaxAge > 0 {
			resealed = append(resealed, c)
		}
	}
	if len(resealed) == 0 {
		t.Fatal("the cookie was not re-sealed with the current secret")
	}
	current := newHandler(t, "https://idp.example", nil) // only the new secret
	r = apiRequest()
	for _, c := range resealed {
		r.AddCookie(c)
	}
	if resp, up, _ := serve(t, current, r); !up.called || resp.StatusCode != 200 {
		t.Fatalf("re-sealed cookie under the new secret alone: %d", resp.StatusCode)
	}
	r = apiRequest()
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if resp, up, _ := serve(t, current, r); up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie sealed with a removed secret: %d", resp.StatusCode)
	}
}

// TestSessionKeepsAccessTokenOnlyWhenForwarded (issue 15): the cookie
// carries the access token only when a block forwards it upstream; either
// way the upstream gets what is configured, also after a refresh.
func TestSessionKeepsAccessTokenOnlyWhenForwarded(t *testing.T) {
	for _, forward := range []bool{false, true} {
		idp := newIDP(t)
		clock := &testClock{t: time.Now()}
		a := newApp(t, offlineHandler(t, idp, clock, func(g *Gatehouse) { g.PassAccessToken = forward }))
		b := a.login(t, "alice")
		if got := a.session(t, b).AccessToken != ""; got != forward {
			t.Fatalf("pass_access_token %v: the session keeps the access token: %v", forward, got)
		}
		clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second) // refreshed on the next request
		if resp, body := b.get(a.URL + "/page"); resp.StatusCode != 200 || body != "hello alice" {
			t.Fatalf("after the refresh: %d %q", resp.StatusCode, body)
		}
		if got := a.session(t, b).AccessToken != ""; got != forward {
			t.Fatalf("pass_access_token %v: after a refresh the session keeps the access token: %v", forward, got)
		}
		a.mu.Lock()
		last := a.seen[len(a.seen)-1]
		a.mu.Unlock()
		if got := last.Get("X-Forwarded-Access-Token") != ""; got != forward {
			t.Fatalf("pass_access_token %v: the upstream got an access token: %v", forward, got)
		}
	}
}
