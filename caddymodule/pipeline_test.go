package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSignOutWithBearerTokenSignsOut: gatehouse's own endpoints come before
// authentication, so a sign-out that also carries a valid bearer token
// signs the session out (it used to be proxied as an API call).
func TestSignOutWithBearerTokenSignsOut(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	a := newApp(t, g)
	b := a.login(t, "alice")
	u, _ := url.Parse(a.URL)
	cookies := b.client.Jar.Cookies(u)
	seen := len(a.seen)

	r, _ := http.NewRequest("GET", a.URL+"/oauth2/sign_out", nil)
	r.Header.Set("Authorization", "Bearer "+mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour))
	resp := b.do(r)
	readBody(resp)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()+"/end_session?") {
		t.Fatalf("sign-out with a bearer token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(a.seen) != seen {
		t.Fatal("the sign-out reached the upstream")
	}
	expired := false
	for _, c := range resp.Cookies() {
		expired = expired || c.Name == "_gatehouse" && c.MaxAge < 0
	}
	if !expired {
		t.Fatal("the session cookie was not expired")
	}
	// The old cookie is signed out.
	r, _ = http.NewRequest("GET", a.URL+"/page", nil)
	r.Header.Set("Accept", "application/json")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if resp, _ := http.DefaultClient.Do(r); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the signed-out cookie still works: %d", resp.StatusCode)
	}
}

// TestBearerOnlyAnswersOwnEndpoints: in bearer { only } mode the callback
// and sign-out paths are still gatehouse's — answered here (404: no
// logins on this site), never proxied, with or without a valid token.
func TestBearerOnlyAnswersOwnEndpoints(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, func(g *Gatehouse) { g.Bearer.Only = true })
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	for _, target := range []string{"/oauth2/callback?state=s&code=c", "/oauth2/sign_out"} {
		for _, auth := range []string{"", "Bearer " + tok} {
			r := apiRequest()
			r.URL, _ = url.Parse(target)
			r.RequestURI = target
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			resp, up, err := serve(t, g, r)
			if err != nil || up.called || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s (auth %t): status %d, upstream called %t, err %v", target, auth != "", resp.StatusCode, up.called, err)
			}
		}
	}
	// Other paths under the prefix are the upstream's, as before.
	r := apiRequest("Bearer " + tok)
	r.URL, _ = url.Parse("/oauth2/other")
	if resp, up, _ := serve(t, g, r); resp.StatusCode != http.StatusOK || !up.called {
		t.Fatalf("/oauth2/other: %d", resp.StatusCode)
	}
}
