package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// idpOn starts a devidp on clock (handler may wrap it) with users.
func idpOn(t *testing.T, clock *testClock, wrap func(http.Handler) http.Handler, users ...devidp.User) *devidp.Provider {
	srv := httptest.NewUnstartedServer(nil)
	cfg := devidp.Config{
		Issuer:  "http://" + srv.Listener.Addr().String(),
		Clients: []devidp.Client{{ID: testClientID, Secret: testClientSecret}},
		Users:   users,
	}
	if clock != nil {
		cfg.Now = clock.now
	}
	p, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p
	if wrap != nil {
		srv.Config.Handler = wrap(p)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// TestSessionOfAnotherIssuerIsNoSession: two sites with the same
// cookie_secret but different providers: a session made at one is no
// session at the other (a user who registered at a public realm cannot
// walk into the staff site).
func TestSessionOfAnotherIssuerIsNoSession(t *testing.T) {
	public := idpOn(t, nil, nil, devidp.User{Subject: "mallory", Email: "ceo@corp.example", Groups: []string{"admins"}})
	staff := newIDP(t)
	a := newApp(t, newHandler(t, public.Issuer(), nil))
	b := a.login(t, "mallory")
	gStaff := newHandler(t, staff.Issuer(), func(g *Gatehouse) { g.AllowGroups = []string{"admins"} })
	u, _ := url.Parse(a.URL)
	r := apiRequest()
	for _, c := range b.client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	if resp, up, _ := serve(t, gStaff, r); up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session of another issuer got %d (upstream called: %v)", resp.StatusCode, up.called)
	}
}

// TestPerPathBlocksShareOneRefresh: two gatehouse blocks on one cookie (the
// README's per-path rules) both see the pre-refresh cookie; they must not
// both spend the rotating refresh token, or the provider ends the login.
func TestPerPathBlocksShareOneRefresh(t *testing.T) {
	clock := &testClock{t: time.Now()}
	idp := idpOn(t, clock, nil, devidp.User{Subject: "alice", Email: "alice@example.com"})
	admin := newApp(t, offlineHandler(t, idp, clock, func(g *Gatehouse) { g.AllowEmails = []string{"alice@example.com"} }))
	rest := newApp(t, offlineHandler(t, idp, clock, nil))
	b := admin.login(t, "alice")
	u, _ := url.Parse(admin.URL)
	old := b.client.Jar.Cookies(u)
	send := func(base string, cookies []*http.Cookie) *http.Response {
		r, _ := http.NewRequest("GET", base+"/page", nil)
		r.Header.Set("Accept", "application/json")
		for _, c := range cookies {
			r.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
		return resp
	}
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	first := send(admin.URL, old)
	second := send(rest.URL, old)
	var fresh []*http.Cookie
	for _, c := range first.Cookies() {
		if c.MaxAge > 0 {
			fresh = append(fresh, c)
		}
	}
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	later := send(admin.URL, fresh)
	if first.StatusCode != 200 || second.StatusCode != 200 || later.StatusCode != 200 {
		t.Fatalf("statuses %d %d %d, want 200s", first.StatusCode, second.StatusCode, later.StatusCode)
	}
	if n := idp.Stats().Refresh; n != 2 {
		t.Fatalf("%d refreshes at the provider, want 2 (one per expiry)", n)
	}
}

// TestRefreshSurvivesAUserinfoHiccup: the refresh token is spent once the
// exchange succeeded; a failing userinfo call right after must not lose the
// new tokens or end the session.
func TestRefreshSurvivesAUserinfoHiccup(t *testing.T) {
	clock := &testClock{t: time.Now()}
	var failUserinfo atomic.Int32
	idp := idpOn(t, clock, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/userinfo") && failUserinfo.Add(-1) >= 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}, devidp.User{Subject: "alice", Email: "alice@example.com"})
	a := newApp(t, offlineHandler(t, idp, clock, nil))
	b := a.login(t, "alice")
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	failUserinfo.Store(1)
	if resp, body := b.get(a.URL + "/page"); resp.StatusCode != 200 || body != "hello alice" {
		t.Fatalf("refresh with userinfo down: %d %q", resp.StatusCode, body)
	}
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	if resp, _ := b.get(a.URL + "/page"); resp.StatusCode != 200 {
		t.Fatalf("the next refresh: %d (the rotated refresh token was lost)", resp.StatusCode)
	}
	if n := idp.Stats().Refresh; n != 2 {
		t.Fatalf("%d refreshes", n)
	}
}

// TestPassAuthorizationStripsTheClientsHeader: with pass_authorization,
// gatehouse owns the upstream Authorization header: an anonymous request
// (unauthenticated allow) does not carry the client's through.
func TestPassAuthorizationStripsTheClientsHeader(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.PassAuthorization = true
		g.Unauthenticated = "allow"
	})
	r := apiRequest("Bearer forged")
	r.Header["authorization"] = []string{"Bearer forged"}
	_, up, _ := serve(t, g, r)
	if !up.called {
		t.Fatal("upstream not called")
	}
	for name := range up.req.Header {
		if sameHeaderName(name, "Authorization") {
			t.Fatalf("the client's %s reached the upstream", name)
		}
	}
}

// TestLoginIDTokenIsNotABearerToken: with a bearer audience equal to the
// client id (Entra ID style), the ID token of a login is still refused.
func TestLoginIDTokenIsNotABearerToken(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, func(g *Gatehouse) {
		g.Bearer = &BearerConfig{Audiences: []string{testClientID}}
	})
	a := newApp(t, g)
	idToken := a.session(t, a.login(t, "alice")).IDToken
	if resp, up, _ := serve(t, g, apiRequest("Bearer "+idToken)); up.called || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an ID token as bearer: %d", resp.StatusCode)
	}
}

// TestPlaceholdersInRuleAndHeaderValues: {env.*} works in allow_claim
// values and header claim names too ("every value").
func TestPlaceholdersInRuleAndHeaderValues(t *testing.T) {
	t.Setenv("GH_TEST_DEPT", "finance")
	t.Setenv("GH_TEST_CLAIM", "department")
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.AllowClaims = map[string][]string{"department": {"{env.GH_TEST_DEPT}"}}
		g.Headers = map[string]string{"X-Dept": "{env.GH_TEST_CLAIM}"}
	})
	sess := aliceSession()
	sess.Claims = map[string][]string{"department": {"finance"}}
	r := apiRequest()
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	resp, up, _ := serve(t, g, r)
	if !up.called || up.req.Header.Get("X-Dept") != "finance" {
		t.Fatalf("%d, X-Dept %q", resp.StatusCode, up.req.Header.Get("X-Dept"))
	}
}
