package caddymodule

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// loginFrom walks a whole login that starts at target on a and returns
// where the callback sent the browser.
func loginFrom(t *testing.T, a *app, target string) string {
	t.Helper()
	b := newBrowser(t)
	resp, _ := b.get(a.URL + target)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%.60s…: first visit answered %d", target, resp.StatusCode)
	}
	resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "alice"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%.60s…: callback answered %d", target, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// TestLoginKeepsTheEncodedQuery (issue 10, defect 1): a login started from
// a URL whose query holds percent-encoded characters ends on exactly that
// URL (the return-to validator used to decode the query and refuse it).
func TestLoginKeepsTheEncodedQuery(t *testing.T) {
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	for _, target := range []string{
		"/search?q=hello%20world",
		"/search?q=a%2Fb+c&path=%2F%2Fnot-a-host&tab=%09",
		"/caf%C3%A9/list?sort=%E2%82%AC&q=x%0Ay",
	} {
		if got := loginFrom(t, a, target); got != target {
			t.Errorf("login from %q landed on %q", target, got)
		}
	}
}

// TestLongURLLogin (issue 10, defect 7): an unauthenticated navigation to a
// long URL starts a login (it used to answer 500 above about 960 bytes: the
// return-to did not fit the login cookie). What fits is kept; a query too
// long for a cookie is dropped, then a path too long.
func TestLongURLLogin(t *testing.T) {
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	query := func(n int) string { return "filter=" + strings.Repeat("status%3Dopen%26", n/16) }
	for _, tc := range []struct{ target, want string }{
		{"/reports/open?" + query(1000), "/reports/open?" + query(1000)},
		{"/reports/open?" + query(1900), "/reports/open?" + query(1900)},
		{"/reports/open?" + query(3900), "/reports/open"},
		{"/" + strings.Repeat("p", 3900), "/"},
	} {
		if got := loginFrom(t, a, tc.target); got != tc.want {
			t.Errorf("login from a %d-byte URL landed on %.80q…, want %.80q…", len(tc.target), got, tc.want)
		}
	}
}

// TestNewLoginWhileProviderDown (issue 10, defect 9): once gatehouse has
// seen the provider fail (here a refresh at the token endpoint), a new
// login answers 503 instead of sending the browser to a dead provider —
// the discovery document, cached for good, used to say nothing of that —
// and logins resume within one JWKS refetch interval after it is back.
func TestNewLoginWhileProviderDown(t *testing.T) {
	idp, down := newSwitchableIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	a := newApp(t, g)
	alice := a.login(t, "alice")
	if resp, _ := newBrowser(t).get(a.URL + "/page"); resp.StatusCode != http.StatusFound {
		t.Fatalf("a new login while the provider is up: %d", resp.StatusCode)
	}

	down.Store(true)
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second) // alice's tokens are due
	if resp, _ := alice.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's still-valid session while the refresh fails: %d", resp.StatusCode)
	}
	resp, body := newBrowser(t).get(a.URL + "/page")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Location") != "" {
		t.Fatalf("a new login while the provider is down: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.Contains(body, "cannot be reached") {
		t.Fatalf("page: %s", body)
	}
	jwks := idp.Stats().JWKS
	for range 5 {
		newBrowser(t).get(a.URL + "/page")
	}
	if n := idp.Stats().JWKS - jwks; n != 0 {
		t.Fatalf("5 logins during the outage probed the provider %d more times, want 0 within the refetch interval", n)
	}

	down.Store(false)
	clock.advance(verify.DefaultMinRefetchInterval)
	if resp, _ := newBrowser(t).get(a.URL + "/page"); resp.StatusCode != http.StatusFound {
		t.Fatalf("a new login once the provider is back: %d", resp.StatusCode)
	}
}
