//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestLoginKeepsTheEncodedQuery (issue 10, defect 1): a login started from
// a URL whose query holds %20, %2F and + lands on exactly that URL, and
// the upstream sees that query.
func TestLoginKeepsTheEncodedQuery(t *testing.T) {
	const path = "/search?q=hello%20world&dir=a%2Fb&tag=x+y"
	tb := newBrowser(t)
	tb.navigate(env.app + path)
	tb.providerLogin(env.opURL, "alice")
	if loc := tb.waitLocation(env.app); loc != env.app+path {
		t.Fatalf("after login the browser is at %s, want %s", loc, env.app+path)
	}
	if got := tb.text("#path"); got != path {
		t.Fatalf("the upstream saw %q, want %q", got, path)
	}
}

// TestLongURLLogin (issue 10, defect 7): an unauthenticated navigation to a
// long report URL starts a login (it used to answer 500) and comes back to
// it; one too long for the login cookie comes back to its path.
func TestLongURLLogin(t *testing.T) {
	filter := strings.Repeat("status%3Dopen%26owner%3Dalice%26", 40) // 1280 bytes
	for _, tc := range []struct{ path, want string }{
		{"/reports/open?filter=" + filter, "/reports/open?filter=" + filter},
		{"/reports/open?filter=" + strings.Repeat(filter, 3), "/reports/open"},
	} {
		tb := newBrowser(t)
		tb.navigate(env.app + tc.path)
		tb.providerLogin(env.opURL, "alice")
		if loc := tb.waitLocation(env.app); loc != env.app+tc.want {
			t.Fatalf("a login from a %d-byte URL ended at %.100s…, want %.100s…", len(tc.path), loc, env.app+tc.want)
		}
		if got := tb.text("#user"); got != "alice" {
			t.Fatalf("user %q", got)
		}
	}
}

// TestShortTokensRefreshOncePerLifetime (issue 10, defect 2): with
// 30-second access tokens and the default refresh_before (1m, longer than
// the tokens live), a user browsing for 65 seconds costs the provider a
// refresh grant per token lifetime — not one per page load.
func TestShortTokensRefreshOncePerLifetime(t *testing.T) {
	tb := newBrowser(t)
	tb.navigate(env.appShort + "/browse")
	tb.providerLogin(env.opShortURL, "alice")
	tb.waitLocation(env.appShort + "/browse")
	before := env.opShort.count("grant refresh_token")
	start := time.Now()
	loads := 0
	for time.Since(start) < 65*time.Second {
		time.Sleep(2 * time.Second)
		tb.do(chromedp.Reload())
		tb.waitLocation(env.appShort + "/browse")
		if got := tb.text("#user"); got != "alice" {
			t.Fatalf("after %s: user %q", time.Since(start).Round(time.Second), got)
		}
		loads++
	}
	n := env.opShort.count("grant refresh_token") - before
	if n < 1 || n > 3 {
		t.Fatalf("%d page loads over 65s of 30-second tokens made %d refresh grants, want 2 (at most one per token lifetime)", loads, n)
	}
	t.Logf("%d page loads, %d refresh grants", loads, n)
}
