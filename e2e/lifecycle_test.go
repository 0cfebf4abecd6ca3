//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRefreshKeepsTheUserSignedIn: with 30-second access tokens the user
// stays signed in past their expiry, because gatehouse refreshed them at
// the provider (with rotation) — and the provider saw the refresh.
func TestRefreshKeepsTheUserSignedIn(t *testing.T) {
	before := env.opShort.count("grant refresh_token")
	tb := newBrowser(t)
	tb.navigate(env.appShort + "/dashboard")
	tb.providerLogin(env.opShortURL, "alice") // with prompt=consent: login, then consent
	tb.waitLocation(env.appShort + "/dashboard")
	signedIn := time.Now()
	first := tb.cookies(env.appShort)[sessionCookie].Value

	// Within the last tenth of the 30-second token's life: the next
	// request refreshes.
	time.Sleep(time.Until(signedIn.Add(28 * time.Second)))
	tb.resetVisits()
	tb.do(chromedp.Reload())
	tb.waitLocation(env.appShort + "/dashboard")
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("after 28s: user %q", got)
	}
	// Past the first access token's expiry.
	time.Sleep(time.Until(signedIn.Add(32 * time.Second)))
	tb.do(chromedp.Reload())
	tb.waitLocation(env.appShort + "/dashboard")
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("32s after login (the first access token lived 30s): user %q", got)
	}
	if tb.visited(env.opShortURL + "/auth") {
		t.Fatalf("the browser was sent to log in again: %v", tb.documentURLs())
	}
	if n := env.opShort.count("grant refresh_token") - before; n < 1 {
		t.Fatalf("the provider saw %d refreshes", n)
	}
	if tb.cookies(env.appShort)[sessionCookie].Value == first {
		t.Fatal("the session cookie was not re-issued with the refreshed tokens")
	}
}

// TestSignOut: sign-out clears the session and goes through the provider's
// end-session endpoint; afterwards the protected page asks for a login.
func TestSignOut(t *testing.T) {
	tb := login(t, "/account")
	tb.resetVisits()
	tb.navigate(env.app + "/oauth2/sign_out")
	tb.waitLocation(env.opURL + "/session/end")
	if !strings.Contains(tb.bodyText(), "sign-out") {
		t.Fatalf("the provider's logout page says: %s", tb.bodyText())
	}
	if c := tb.cookies(env.app)[sessionCookie]; c != nil {
		t.Fatal("the session cookie survived sign-out")
	}
	tb.do(chromedp.Click(chromedp.CSS(`button[name="logout"]`)))
	// The provider ends its session and sends the browser back to the app,
	// which has no session and sends it to log in again.
	tb.atProviderLogin(env.opURL)
	if !tb.visited(env.app + "/") {
		t.Fatalf("the provider did not return to the post-logout URL: %v", tb.documentURLs())
	}
	tb.navigate(env.app + "/account")
	tb.atProviderLogin(env.opURL)
}

// TestAdminAreaForAdminsOnly: per-path rules with two gatehouse blocks
// (handle /admin/* with allow_groups admins, and the rest of the site).
func TestAdminAreaForAdminsOnly(t *testing.T) {
	bob := newBrowser(t)
	bob.navigate(env.app + "/admin/users")
	bob.providerLogin(env.opURL, "bob")
	bob.waitLocation(env.app + "/admin/users")
	body := bob.bodyText()
	if !strings.Contains(body, "Access denied") || !strings.Contains(body, "signed in as bob@example.com") || !strings.Contains(body, "403") {
		t.Fatalf("bob in the admin area: %s", body)
	}
	bob.screenshot("forbidden-page")
	bob.navigate(env.app + "/reports")
	bob.waitLocation(env.app + "/reports")
	if got := bob.text("#user"); got != "bob" {
		t.Fatalf("bob outside the admin area: %q", got)
	}
	// The 403 page's sign-out button signs him out.
	bob.navigate(env.app + "/admin/users")
	bob.do(chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	bob.waitLocation(env.opURL + "/session/end")

	alice := login(t, "/admin/users")
	if got := alice.text("#user"); got != "alice" {
		t.Fatalf("alice in the admin area: %q", got)
	}
}

// TestPrivateKeyJWT: a client that authenticates with private_key_jwt
// (RFC 7523; no client secret anywhere) signs the user in and refreshes
// their 30-second tokens at oidc-provider, which saw both grants from that
// client — and refused none.
func TestPrivateKeyJWT(t *testing.T) {
	codes := env.opShort.count("grant-client authorization_code gatehouse-pkjwt")
	refreshes := env.opShort.count("grant-client refresh_token gatehouse-pkjwt")
	errorsBefore := len(env.opShort.lines("grant error"))
	tb := newBrowser(t)
	tb.navigate(env.appPK + "/reports?q=a%20b")
	tb.providerLogin(env.opShortURL, "alice")
	tb.waitLocation(env.appPK + "/reports?q=a%20b")
	signedIn := time.Now()
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("user %q", got)
	}
	if n := env.opShort.count("grant-client authorization_code gatehouse-pkjwt") - codes; n != 1 {
		t.Fatalf("the provider saw %d code grants from gatehouse-pkjwt", n)
	}
	// Past the first access token's 30 seconds: refreshed, still signed in.
	time.Sleep(time.Until(signedIn.Add(32 * time.Second)))
	tb.do(chromedp.Reload())
	tb.waitLocation(env.appPK + "/reports?q=a%20b")
	if got := tb.text("#user"); got != "alice" {
		t.Fatalf("after 32s: user %q", got)
	}
	if n := env.opShort.count("grant-client refresh_token gatehouse-pkjwt") - refreshes; n < 1 {
		t.Fatalf("the provider saw %d refreshes from gatehouse-pkjwt", n)
	}
	if errs := env.opShort.lines("grant error")[errorsBefore:]; len(errs) > 0 {
		t.Fatalf("the provider refused grants: %v", errs)
	}
}
