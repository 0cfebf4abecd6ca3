//go:build e2e

package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// login signs alice in on a fresh browser at env.app and returns the tab,
// on the protected page.
func login(t *testing.T, path string) *tab {
	t.Helper()
	tb := newBrowser(t)
	tb.navigate(env.app + path)
	tb.providerLogin(env.opURL, "alice")
	tb.waitLocation(env.app + path)
	return tb
}

func TestLogin(t *testing.T) {
	const path = "/reports/2026?sort=date&q=a%2Fb"
	tb := newBrowser(t)
	tb.navigate(env.app + path)
	tb.atProviderLogin(env.opURL)
	tb.screenshot("1-provider-login-page")
	if !strings.Contains(tb.bodyText(), "Sign-in") {
		t.Fatalf("the provider's login page says: %s", tb.bodyText())
	}
	tb.providerLogin(env.opURL, "alice")

	loc := tb.waitLocation(env.app)
	if loc != env.app+path {
		t.Fatalf("after login the browser is at %s, want the original %s", loc, env.app+path)
	}
	tb.screenshot("2-protected-page-after-login")
	for sel, want := range map[string]string{
		"#user":   "alice",
		"#email":  "alice@example.com",
		"#groups": "admins,staff",
		"#path":   path,
	} {
		if got := tb.text(sel); got != want {
			t.Errorf("the upstream saw %s = %q, want %q", sel, got, want)
		}
	}
	if !tb.visited(env.opURL+"/auth?") || !tb.visited(env.app+"/oauth2/callback?") {
		t.Errorf("the login did not go through the provider and the callback: %v", tb.documentURLs())
	}
}

func TestLoginES256ClientSecretPost(t *testing.T) {
	tb := newBrowser(t)
	tb.navigate(env.appES + "/es?x=1")
	tb.providerLogin(env.opESURL, "bob")
	tb.waitLocation(env.appES + "/es?x=1")
	if got := tb.text("#user"); got != "bob" {
		t.Fatalf("user %q after an ES256 login with client_secret_post", got)
	}
	if got := tb.text("#groups"); got != "staff" {
		t.Fatalf("groups %q", got)
	}
}

func TestSessionSurvivesReloadAndNewTab(t *testing.T) {
	tb := login(t, "/home")
	tb.resetVisits()
	tb.do(chromedp.Reload())
	tb.waitLocation(env.app + "/home")
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("after reload: user %q", got)
	}
	second := tb.newTab()
	second.navigate(env.app + "/other?tab=2")
	second.waitLocation(env.app + "/other?tab=2")
	if got := second.text("#user"); got != "alice" {
		t.Fatalf("new tab: user %q", got)
	}
	if tb.visited(env.opURL) || second.visited(env.opURL) {
		t.Fatalf("a signed-in tab went back to the provider: %v %v", tb.documentURLs(), second.documentURLs())
	}
}

// TestTwoTabsLoginAtOnce: both tabs start a login before either finishes;
// each has its own login cookie, so both come back to their own page.
func TestTwoTabsLoginAtOnce(t *testing.T) {
	a := newBrowser(t)
	b := a.newTab()
	a.navigate(env.app + "/tab-a?n=1")
	b.navigate(env.app + "/tab-b?n=2")
	a.atProviderLogin(env.opURL)
	b.atProviderLogin(env.opURL)
	logins := 0
	for name, c := range a.cookies(env.app) {
		if strings.HasPrefix(name, sessionCookie+"_login_") && c.Value != "" {
			logins++
		}
	}
	if logins != 2 {
		t.Fatalf("%d login cookies for two logins in progress", logins)
	}
	a.providerLogin(env.opURL, "alice")
	a.waitLocation(env.app + "/tab-a?n=1")
	b.providerLogin(env.opURL, "alice")
	b.waitLocation(env.app + "/tab-b?n=2")
	for _, tb := range []*tab{a, b} {
		if got := tb.text("#user"); got != "alice" {
			t.Fatalf("%s: user %q", tb.location(), got)
		}
	}
}

// TestSpoofedIdentityHeaders: headers the browser adds itself never reach
// the upstream (CVE-2025-64484, CVE-2026-30851).
func TestSpoofedIdentityHeaders(t *testing.T) {
	tb := newBrowser(t)
	tb.setExtraHeaders(map[string]string{
		"X-Forwarded-User":   "mallory",
		"X_Forwarded_User":   "mallory",
		"X-Forwarded-Groups": "admins,root",
		"X-Forwarded-Email":  "mallory@evil.example",
	})
	tb.navigate(env.app + "/spoof")
	tb.providerLogin(env.opURL, "alice")
	tb.waitLocation(env.app + "/spoof")
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("user %q", got)
	}
	if got := tb.text("#groups"); got != "admins,staff" {
		t.Fatalf("groups %q", got)
	}
	for _, h := range env.upstream.headers() {
		for name, values := range h {
			for _, v := range values {
				if strings.Contains(v, "mallory") || v == "admins,root" {
					t.Fatalf("the upstream received %s: %q", name, v)
				}
			}
		}
	}
}

func TestTamperedCookieGoesBackToTheProvider(t *testing.T) {
	tb := login(t, "/before")
	c := tb.cookies(env.app)[sessionCookie]
	if c == nil {
		t.Fatal("no session cookie")
	}
	v := []byte(c.Value)
	i := len(v) / 2
	if v[i] == 'A' {
		v[i] = 'B'
	} else {
		v[i] = 'A'
	}
	tb.setCookie(env.app, c, string(v))
	tb.resetVisits()
	tb.navigate(env.app + "/after")
	tb.waitLocation(env.app + "/after")
	if !tb.visited(env.opURL + "/auth?") {
		t.Fatalf("a tampered cookie did not send the browser to the provider: %v", tb.documentURLs())
	}
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("user %q after signing in again", got)
	}
	if tb.cookies(env.app)[sessionCookie].Value == string(v) {
		t.Fatal("the tampered cookie is still there")
	}
}

func TestUserAbortsAtTheProvider(t *testing.T) {
	tb := newBrowser(t)
	tb.navigate(env.app + "/abort")
	tb.atProviderLogin(env.opURL)
	tb.do(chromedp.Click(chromedp.CSS(`.login-help a`)))
	tb.waitLocation(env.app + "/oauth2/callback")
	if body := tb.bodyText(); !strings.Contains(body, "Sign-in cancelled") || !strings.Contains(body, "403") {
		t.Fatalf("the abort page says: %s", body)
	}
	if c := tb.cookies(env.app)[sessionCookie]; c != nil {
		t.Fatalf("a session cookie exists after an aborted login: %+v", c)
	}
}

func TestForgedAndReplayedCallback(t *testing.T) {
	forged := newBrowser(t)
	forged.navigate(env.app + "/oauth2/callback?code=forged-code&state=forged-state")
	if body := forged.bodyText(); !strings.Contains(body, "Sign-in failed") || !strings.Contains(body, "400") {
		t.Fatalf("forged callback page: %s", body)
	}
	if forged.cookies(env.app)[sessionCookie] != nil {
		t.Fatal("a forged callback created a session")
	}

	tb := login(t, "/replay")
	var callback string
	for _, u := range tb.documentURLs() {
		if strings.HasPrefix(u, env.app+"/oauth2/callback?") {
			callback = u
		}
	}
	if callback == "" {
		t.Fatalf("no callback URL seen: %v", tb.documentURLs())
	}
	session := tb.cookies(env.app)[sessionCookie].Value

	// Replayed in the same browser: the login cookie is gone.
	tb.navigate(callback)
	if body := tb.bodyText(); !strings.Contains(body, "Sign-in failed") {
		t.Fatalf("replayed callback page: %s", body)
	}
	if tb.cookies(env.app)[sessionCookie].Value != session {
		t.Fatal("a replayed callback changed the session")
	}
	// Replayed by someone else, who holds no login cookie.
	other := newBrowser(t)
	other.navigate(callback)
	if body := other.bodyText(); !strings.Contains(body, "Sign-in failed") {
		t.Fatalf("replay in another browser: %s", body)
	}
	if other.cookies(env.app)[sessionCookie] != nil {
		t.Fatal("a replayed callback created a session in another browser")
	}
}

// TestOpenRedirectPayloads: whatever the original URL, the browser ends
// on this site after login (CVE-2020-5233, CVE-2020-11053, CVE-2022-23527).
func TestOpenRedirectPayloads(t *testing.T) {
	browser := login(t, "/")
	site, _ := url.Parse(env.app)
	provider, _ := url.Parse(env.opURL)
	for _, payload := range []string{
		"//evil.example/",
		"///evil.example/",
		"/%2F%2Fevil.example",
		"/%5Cevil.example",
		"/%5C%5Cevil.example",
		"/%09/evil.example",
		"/%2F%5Cevil.example",
		"/%252F%252Fevil.example",
		"/.%2F%2Fevil.example",
	} {
		t.Run(payload, func(t *testing.T) {
			tb := browser.with(t)
			tb.deleteCookie(env.app, sessionCookie)
			tb.resetVisits()
			// The navigation fails if the browser is sent to evil.example
			// (which does not resolve); what it visited tells.
			_ = chromedp.Do(tb.ctx, chromedp.Navigate(env.app+payload))
			tb.waitFor("the login round trip", func() bool { return tb.visited(env.app + "/oauth2/callback?") })
			for _, u := range tb.documentURLs() {
				if p, err := url.Parse(u); err != nil || p.Host != site.Host && p.Host != provider.Host {
					t.Fatalf("after login from %q the browser was sent off-site, to %s", payload, u)
				}
			}
			loc := tb.waitLocation(env.app)
			if u, _ := url.Parse(loc); u.Path != "/" {
				t.Fatalf("after login from %q the browser is at %s, want %s/", payload, loc, env.app)
			}
		})
	}
}

func TestXHRWithoutSessionGets401(t *testing.T) {
	tb := newBrowser(t)
	tb.navigate(env.app + "/public/") // a page of the site's origin to fetch() from
	for _, headers := range []map[string]string{
		{"X-Requested-With": "XMLHttpRequest"},
		{"Accept": "application/json"},
		{},
	} {
		res := tb.fetch(env.app+"/api/orders", headers)
		if res.Status != http.StatusUnauthorized || res.Type == "opaqueredirect" || !strings.Contains(res.Body, `"unauthenticated"`) {
			t.Fatalf("fetch %v without a session: %+v", headers, res)
		}
	}
}

func TestBearerTokenFromTheProvider(t *testing.T) {
	token := clientCredentialsToken(t, "orders:read")
	tb := newBrowser(t)
	tb.navigate(env.api + "/public/") // a page of the API's origin to fetch() from
	res := tb.fetch(env.api+"/api/orders?page=1", map[string]string{"Authorization": "Bearer " + token})
	if res.Status != http.StatusOK || !strings.Contains(res.Body, `"user":"gatehouse-basic"`) {
		t.Fatalf("a provider-signed token: %+v", res)
	}
	parts := strings.Split(token, ".")
	payload := []byte(parts[1])
	payload[5] ^= 1
	tampered := parts[0] + "." + string(payload) + "." + parts[2]
	res = tb.fetch(env.api+"/api/orders", map[string]string{"Authorization": "Bearer " + tampered})
	if res.Status != http.StatusUnauthorized || !strings.Contains(res.Challenge, `error="invalid_token"`) {
		t.Fatalf("a tampered token: %+v", res)
	}
	res = tb.fetch(env.api+"/api/orders", map[string]string{"Authorization": "Bearer " + clientCredentialsToken(t, "")})
	if res.Status != http.StatusForbidden || !strings.Contains(res.Challenge, `insufficient_scope`) {
		t.Fatalf("a token without the required scope: %+v", res)
	}
}

func TestCookieAttributes(t *testing.T) {
	tb := login(t, "/cookies")
	c := tb.cookies(env.app)[sessionCookie]
	if c == nil {
		t.Fatal("no session cookie")
	}
	if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Domain != "127.0.0.1" || c.Session {
		t.Fatalf("session cookie attributes: %+v", c)
	}
	if js := eval[string](tb, `document.cookie`); strings.Contains(js, "gatehouse") {
		t.Fatalf("page scripts can read the session cookie: %q", js)
	}
	for name := range tb.cookies(env.app) {
		if strings.HasPrefix(name, sessionCookie+"_login_") {
			t.Fatalf("login cookie %s left after the login finished", name)
		}
	}
}
