//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// tab is one browser tab, in a browser context of its own unless made with
// newTab (which shares cookies, like a second tab of the same window).
type tab struct {
	t      *testing.T
	ctx    context.Context
	parent *tab // set by with: the tab whose request log this one shares

	mu        sync.Mutex
	documents []string // URLs of the documents the tab requested, in order
}

// log is the tab that keeps the request log.
func (tb *tab) log() *tab {
	if tb.parent != nil {
		return tb.parent
	}
	return tb
}

// newBrowser opens a fresh browser context (no cookies, like a new
// private window) with one tab.
func newBrowser(t *testing.T) *tab {
	t.Helper()
	return newBrowserFor(t, tabTimeout)
}

// tabTimeout bounds a test's tab.
const tabTimeout = 2 * time.Minute

// newBrowserFor is newBrowser for a test that needs its tab for d.
func newBrowserFor(t *testing.T, d time.Duration) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(env.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return startTab(t, ctx, d)
}

// newTab opens another tab in the same browser context as tb.
func (tb *tab) newTab() *tab {
	tb.t.Helper()
	ctx, cancel := chromedp.NewContext(tb.ctx)
	tb.t.Cleanup(cancel)
	return startTab(tb.t, ctx, tabTimeout)
}

func startTab(t *testing.T, ctx context.Context, d time.Duration) *tab {
	ctx, cancel := context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // creates the tab
		t.Fatalf("opening a tab: %v", err)
	}
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			if ev.Type == network.ResourceTypeDocument {
				tb.mu.Lock()
				tb.documents = append(tb.documents, ev.Request.URL)
				tb.mu.Unlock()
			}
		}
	}()
	return tb
}

// with returns tb for use in subtest t (failures are reported there).
func (tb *tab) with(t *testing.T) *tab {
	return &tab{t: t, ctx: tb.ctx, parent: tb}
}

// visited reports whether the tab requested a document whose URL starts
// with prefix since the last resetVisits.
func (tb *tab) visited(prefix string) bool {
	l := tb.log()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.documents {
		if strings.HasPrefix(u, prefix) {
			return true
		}
	}
	return false
}

func (tb *tab) resetVisits() {
	l := tb.log()
	l.mu.Lock()
	l.documents = nil
	l.mu.Unlock()
}

func (tb *tab) documentURLs() []string {
	l := tb.log()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.documents...)
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v (at %s)", err, tb.location())
	}
}

func (tb *tab) navigate(u string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(u))
}

func (tb *tab) location() string {
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return loc
}

// eval runs JavaScript (awaiting a promise) and decodes its result into T.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluating %q: %v", js, err)
	}
	return v
}

// waitFor polls until cond holds, for at most 20 seconds.
func (tb *tab) waitFor(what string, cond func() bool) {
	tb.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.t.Fatalf("timed out waiting for %s; the tab is at %s and requested %v", what, tb.location(), tb.documentURLs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLocation waits until the tab's document is at a URL starting with
// prefix and has loaded, and returns the URL.
func (tb *tab) waitLocation(prefix string) string {
	tb.t.Helper()
	var loc string
	tb.waitFor("a page at "+prefix, func() bool {
		loc = tb.location()
		ready, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.readyState`))
		return strings.HasPrefix(loc, prefix) && ready == "complete"
	})
	return loc
}

// text returns the text of the first element matching a CSS selector.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("reading %s: %v (at %s)", sel, err, tb.location())
	}
	return strings.TrimSpace(v)
}

func (tb *tab) bodyText() string {
	return eval[string](tb, `document.body ? document.body.innerText : ""`)
}

// atProviderLogin waits for the provider's login form.
func (tb *tab) atProviderLogin(provider string) {
	tb.t.Helper()
	tb.waitLocation(provider + "/interaction/")
	tb.do(chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)))
}

// providerLogin signs in at the provider's development login page as
// user (any password), gives consent if asked, and waits until the
// browser has left the provider.
func (tb *tab) providerLogin(provider, user string) {
	tb.t.Helper()
	tb.atProviderLogin(provider)
	tb.do(
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	consented := false
	tb.waitFor("the provider to send the browser back", func() bool {
		if loc := tb.location(); !strings.HasPrefix(loc, provider) && !strings.HasPrefix(loc, "about:") {
			return true
		}
		if !consented && eval[bool](tb, `!!document.querySelector('input[name="prompt"][value="consent"]')`) {
			consented = true
			tb.do(chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
		}
		return false
	})
}

// cookies returns the browser's cookies for site.
func (tb *tab) cookies(site string) map[string]*network.Cookie {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{site + "/"}})
	if err != nil {
		tb.t.Fatal(err)
	}
	out := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		out[c.Name] = c
	}
	return out
}

// setCookie overwrites a cookie of site, keeping its attributes.
func (tb *tab) setCookie(site string, c *network.Cookie, value string) {
	tb.t.Helper()
	_, err := chromedp.Call(tb.ctx, network.SetCookie, network.SetCookieParams{
		Name: c.Name, Value: value, URL: site + "/", Path: c.Path,
		Secure: &c.Secure, HTTPOnly: &c.HTTPOnly, SameSite: c.SameSite,
	})
	if err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *tab) deleteCookie(site, name string) {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: site + "/"}); err != nil {
		tb.t.Fatal(err)
	}
}

// setExtraHeaders makes the tab send headers with every request.
func (tb *tab) setExtraHeaders(h map[string]string) {
	tb.t.Helper()
	headers := network.Headers{}
	for k, v := range h {
		headers[k] = v
	}
	if _, err := chromedp.Call(tb.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers}); err != nil {
		tb.t.Fatal(err)
	}
}

// fetchResult is what the page's fetch() saw.
type fetchResult struct {
	Status    int    `json:"status"`
	Type      string `json:"type"`
	Body      string `json:"body"`
	Challenge string `json:"challenge"`
}

// fetch runs fetch(url) in the page with headers and no redirect following.
func (tb *tab) fetch(u string, headers map[string]string) fetchResult {
	tb.t.Helper()
	h, _ := json.Marshal(headers)
	raw := eval[[]byte](tb, `fetch(`+jsString(u)+`, {headers: `+string(h)+`, redirect: "manual", credentials: "include"})
		.then(async r => ({status: r.status, type: r.type, body: await r.text(), challenge: r.headers.get("WWW-Authenticate") || ""}))`)
	var res fetchResult
	if err := json.Unmarshal(raw, &res); err != nil {
		tb.t.Fatalf("fetch result %s: %v", raw, err)
	}
	return res
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// screenshot saves a full-page PNG in the test's artifact directory.
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(tb.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s", path)
	return path
}
