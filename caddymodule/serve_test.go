package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/session"
)

// closedURL is an address nothing listens on: a provider that is down.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestSpoofedIdentityHeadersNeverReachUpstream (CVE-2025-64484,
// CVE-2026-52845, CVE-2026-30851): every identity header a client sends,
// in any case and with "_" for "-", is deleted — with a session (where we
// set our own values, or none when the claim is absent), with
// `unauthenticated allow`, and on the way to a 401.
func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	idp := newIDP(t)
	spoofed := []string{
		"X-Forwarded-User", "x-forwarded-user", "X_Forwarded_User", "x_forwarded_user", "X-FORWARDED-USER",
		"X-Forwarded-Email", "X_Forwarded_Email", "X-Forwarded-Preferred-Username", "X_FORWARDED_PREFERRED_USERNAME",
		"X-Forwarded-Groups", "x_forwarded-groups", "X-Forwarded-Access-Token", "X_Forwarded_Access_Token",
	}
	spoof := func(r *http.Request) {
		for _, h := range spoofed {
			r.Header[h] = []string{"mallory"} // raw keys, as an HTTP/1 parser may keep them
		}
	}
	check := func(t *testing.T, up *upstream, want map[string]string) {
		t.Helper()
		if !up.called {
			t.Fatal("upstream not called")
		}
		for name, values := range up.req.Header {
			for _, v := range values {
				if v == "mallory" {
					t.Errorf("spoofed %s reached the upstream", name)
				}
			}
		}
		for name, v := range want {
			if got := up.req.Header.Get(name); got != v {
				t.Errorf("%s = %q, want %q", name, got, v)
			}
		}
	}

	t.Run("with a session", func(t *testing.T) {
		g := newHandler(t, idp.Issuer(), nil)
		sess := aliceSession()
		sess.PreferredUsername = "" // an absent claim must not let a spoofed value through
		r := httptest.NewRequest("GET", "/", nil)
		for _, c := range sessionCookies(t, g, sess) {
			r.AddCookie(c)
		}
		spoof(r)
		_, up, err := serve(t, g, r)
		if err != nil {
			t.Fatal(err)
		}
		check(t, up, map[string]string{
			"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com",
			"X-Forwarded-Groups": "admins,staff", "X-Forwarded-Preferred-Username": "",
			"X-Forwarded-Access-Token": "",
		})
	})
	t.Run("unauthenticated allow", func(t *testing.T) {
		g := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.Unauthenticated = "allow" })
		r := httptest.NewRequest("GET", "/", nil)
		spoof(r)
		_, up, err := serve(t, g, r)
		if err != nil {
			t.Fatal(err)
		}
		check(t, up, map[string]string{"X-Forwarded-User": ""})
	})
	t.Run("unauthenticated 401", func(t *testing.T) {
		g := newHandler(t, idp.Issuer(), nil)
		r := httptest.NewRequest("GET", "/api", nil)
		spoof(r)
		resp, up, _ := serve(t, g, r)
		if up.called || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, upstream called %v", resp.StatusCode, up.called)
		}
		for name := range r.Header {
			if sameHeaderName(name, "X-Forwarded-User") {
				t.Fatalf("%s left on the request", name)
			}
		}
	})
}

func TestSessionIdentityAndPlaceholders(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	r := httptest.NewRequest("GET", "/app", nil)
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	r.AddCookie(&http.Cookie{Name: "app_session", Value: "keep-me"})
	r.AddCookie(&http.Cookie{Name: "_gatehouse_login_0123456789abcdef", Value: "x"})
	resp, up, err := serve(t, g, r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	for name, want := range map[string]string{
		"http.auth.user.id":                 "alice",
		"http.auth.user.sub":                "alice-sub",
		"http.auth.user.email":              "alice@example.com",
		"http.auth.user.groups":             "admins,staff",
		"http.auth.user.preferred_username": "alice",
		"http.auth.user.name":               "Alice",
	} {
		if got, _ := up.repl.GetString(name); got != want {
			t.Errorf("{%s} = %q, want %q", name, got, want)
		}
	}
	// gatehouse's cookies stay here; the app's own cookies pass.
	if got := strings.Join(up.req.Header["Cookie"], "; "); got != "app_session=keep-me" {
		t.Fatalf("upstream Cookie header: %q", got)
	}
}

func TestUnauthenticatedModes(t *testing.T) {
	idp := newIDP(t)
	xhr := func() *http.Request {
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.Header.Set("X-Requested-With", "XMLHttpRequest")
		r.Header.Set("Accept", "text/html")
		return r
	}
	jsonReq := func() *http.Request {
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.Header.Set("Accept", "application/json")
		return r
	}
	fetch := func() *http.Request {
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.Header.Set("Accept", "*/*")
		r.Header.Set("Sec-Fetch-Mode", "cors")
		return r
	}
	post := func() *http.Request {
		r := httptest.NewRequest("POST", "/form", strings.NewReader("a=b"))
		r.Header.Set("Accept", "text/html")
		return r
	}
	curl := func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", "*/*")
		return r
	}
	for _, tc := range []struct {
		name   string
		mode   string
		req    func() *http.Request
		status int
	}{
		{"XHR gets 401", "", xhr, http.StatusUnauthorized},
		{"JSON gets 401", "", jsonReq, http.StatusUnauthorized},
		{"fetch() gets 401", "", fetch, http.StatusUnauthorized},
		{"POST gets 401", "", post, http.StatusUnauthorized},
		{"curl gets 401", "", curl, http.StatusUnauthorized},
		{"navigation is redirected", "", func() *http.Request { return navigation("GET", "/page") }, http.StatusFound},
		{"HEAD navigation is redirected", "", func() *http.Request { return navigation("HEAD", "/page") }, http.StatusFound},
		{"old browser without Sec-Fetch", "", func() *http.Request {
			r := httptest.NewRequest("GET", "/page", nil)
			r.Header.Set("Accept", "text/html")
			return r
		}, http.StatusFound},
		{"401 mode, navigation", "401", func() *http.Request { return navigation("GET", "/page") }, http.StatusUnauthorized},
		{"redirect mode, XHR", "redirect", xhr, http.StatusFound},
		{"allow mode", "allow", jsonReq, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.Unauthenticated = tc.mode })
			resp, up, err := serve(t, g, tc.req())
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if up.called != (tc.status == http.StatusOK) {
				t.Fatalf("upstream called: %v", up.called)
			}
			switch tc.status {
			case http.StatusUnauthorized:
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case http.StatusFound:
				if !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()+"/authorize?") {
					t.Errorf("Location %q", resp.Header.Get("Location"))
				}
				if resp.Header.Get("Cache-Control") != "no-store" {
					t.Error("login redirect is cacheable")
				}
			}
		})
	}
}

func TestUnauthorizedJSONBody(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	r := httptest.NewRequest("GET", "/api?q=<script>", nil)
	r.Header.Set("Accept", "application/json")
	resp, _, _ := serve(t, g, r)
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] != "unauthenticated" {
		t.Fatalf("body %v, err %v", body, err)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// TestHandleErrorsGetsTheError: with handle_errors routes, failures are
// returned as caddyhttp errors for them to render.
func TestHandleErrorsGetsTheError(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	r := httptest.NewRequest("GET", "/api", nil)
	srv := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	r = r.WithContext(contextWithServer(r, srv))
	resp, _, err := serve(t, g, r)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v", err)
	}
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("WWW-Authenticate not set for handle_errors")
	}
}

func TestProviderDownGives503(t *testing.T) {
	g := newHandler(t, closedURL(t), nil)
	resp, up, err := serve(t, g, navigation("GET", "/page"))
	if err != nil || up.called {
		t.Fatalf("err %v, upstream %v", err, up.called)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body := readBody(resp)
	if !strings.Contains(body, "identity provider cannot be reached") {
		t.Fatalf("page: %s", body)
	}
	// An existing session keeps working while the provider is down.
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	if resp, up, _ := serve(t, g, r); !up.called || resp.StatusCode != http.StatusOK {
		t.Fatalf("session during outage: %d", resp.StatusCode)
	}
}

// TestLoginReturnTo: the original URL (path and query) is kept; anything
// that could leave the site is replaced by "/" (CVE-2020-5233 and friends).
func TestLoginReturnTo(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	for _, tc := range []struct{ target, want string }{
		{"/app/page?x=1&y=%2F", "/app/page?x=1&y=%2F"},
		{"/", "/"},
		{"//evil.example/", "/"},
		{"/%2F%2Fevil.example", "/"},
		{"/\\evil.example", "/"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			r := navigation("GET", "/")
			r.URL, _ = url.Parse(tc.target)
			r.RequestURI = tc.target
			resp, _, err := serve(t, g, r)
			if err != nil || resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d err %v", resp.StatusCode, err)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			cb := httptest.NewRequest("GET", "/oauth2/callback", nil)
			for _, c := range resp.Cookies() {
				cb.AddCookie(c)
			}
			login, err := g.sessions.TakeLogin(httptest.NewRecorder(), cb, loc.Query().Get("state"))
			if err != nil {
				t.Fatal(err)
			}
			if login.ReturnTo != tc.want {
				t.Fatalf("return-to %q, want %q", login.ReturnTo, tc.want)
			}
		})
	}
}

// TestRedirectURIIgnoresForwardedHeaders (CVE-2024-21498, CVE-2024-21499):
// the callback URL comes from the connection and Host, never from
// X-Forwarded-Host or X-Forwarded-Proto.
func TestRedirectURIIgnoresForwardedHeaders(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	r := navigation("GET", "http://app.example/page")
	r.Header.Set("X-Forwarded-Host", "evil.example")
	r.Header.Set("X-Forwarded-Proto", "evil_protocol")
	r.Header.Set("X-Forwarded-Uri", "/admin")
	resp, _, _ := serve(t, g, r)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("redirect_uri"); got != "http://app.example/oauth2/callback" {
		t.Fatalf("redirect_uri %q", got)
	}
}

func TestTamperedCookieStartsALogin(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	cookies := sessionCookies(t, g, aliceSession())
	v := []byte(cookies[0].Value)
	v[len(v)/2] ^= 1
	r := navigation("GET", "/page")
	r.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: string(v)})
	resp, up, err := serve(t, g, r)
	if err != nil || up.called || resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, upstream %v, err %v", resp.StatusCode, up.called, err)
	}
	// GHSA-f24x-5g9q-753f: the unusable session cookie is expired.
	expired := false
	for _, c := range resp.Cookies() {
		expired = expired || c.Name == "_gatehouse" && c.MaxAge < 0
	}
	if !expired {
		t.Fatal("stale session cookie not cleared when a login starts")
	}
}

func TestCallbackRejects(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
	}{
		{"no parameters", func() *http.Request { return navigation("GET", "/oauth2/callback") }, http.StatusBadRequest},
		{"forged state", func() *http.Request { return navigation("GET", "/oauth2/callback?state=forged&code=x") }, http.StatusBadRequest},
		// The state comes first (review SA2-21): an error response that
		// belongs to no login here is just an invalid link. (A real
		// cancellation: TestCancelledLogin.)
		{"provider error access_denied for no login", func() *http.Request {
			return navigation("GET", "/oauth2/callback?error=access_denied&state=x")
		}, http.StatusBadRequest},
		{"unknown provider error code is not shown", func() *http.Request {
			return navigation("GET", "/oauth2/callback?error=forged_Call_555_1234&state=x")
		}, http.StatusBadRequest},
		{"provider error with markup", func() *http.Request {
			return navigation("GET", "/oauth2/callback?error=%3Cscript%3Ealert(1)%3C/script%3E&error_description=%3Cb%3Ehi")
		}, http.StatusBadRequest},
		{"POST", func() *http.Request { return httptest.NewRequest("POST", "/oauth2/callback?state=x&code=y", nil) }, http.StatusMethodNotAllowed},
		{"HEAD", func() *http.Request { return httptest.NewRequest("HEAD", "/oauth2/callback?state=x&code=y", nil) }, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			resp, up, err := serve(t, g, r)
			if err != nil || up.called || resp.StatusCode != tc.status {
				t.Fatalf("status %d (want %d), upstream %v, err %v", resp.StatusCode, tc.status, up.called, err)
			}
			body := readBody(resp)
			// CVE-2023-52430: nothing from the request is echoed into the page.
			if strings.Contains(body, "<script>") || strings.Contains(body, "<b>hi") || strings.Contains(body, "forged") {
				t.Fatalf("request data echoed: %s", body)
			}
			for _, c := range resp.Cookies() {
				if c.Name == "_gatehouse" && c.MaxAge >= 0 {
					t.Fatal("a session cookie was set")
				}
			}
		})
	}
}

// TestCancelledLogin: the provider's access_denied for a login in progress
// is a "cancelled" page (403), once its state and iss check out.
func TestCancelledLogin(t *testing.T) {
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	b := newBrowser(t)
	resp, _ := b.get(a.URL + "/page")
	authURL, _ := url.Parse(resp.Header.Get("Location"))
	state := authURL.Query().Get("state")
	for _, tc := range []struct {
		iss    string
		status int
	}{
		{"https://evil.example", http.StatusBadRequest}, // a mix-up, not a cancellation
		{idp.Issuer(), http.StatusForbidden},
	} {
		if tc.status == http.StatusForbidden {
			resp, _ = b.get(a.URL + "/page") // the first callback used the login up
			authURL, _ = url.Parse(resp.Header.Get("Location"))
			state = authURL.Query().Get("state")
		}
		resp, body := b.get(a.URL + "/oauth2/callback?error=access_denied&state=" + url.QueryEscape(state) + "&iss=" + url.QueryEscape(tc.iss))
		if resp.StatusCode != tc.status {
			t.Fatalf("access_denied with iss %s: %d %s", tc.iss, resp.StatusCode, body)
		}
	}
}

// TestLoginThroughHandler walks a whole login against devidp with the
// handler under httptest, and replays the callback.
func TestLoginThroughHandler(t *testing.T) {
	idp := newIDP(t)
	var g *Gatehouse
	var seen http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(contextWithReplacer(r, repl))
		err := g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r.Header.Clone()
			_, _ = w.Write([]byte("hello " + r.Header.Get("X-Forwarded-User")))
			return nil
		}))
		if err != nil {
			var he caddyhttp.HandlerError
			errors.As(err, &he)
			w.WriteHeader(he.StatusCode)
		}
	}))
	defer app.Close()
	g = newHandler(t, idp.Issuer(), nil)

	b := newBrowser(t)
	resp, _ := b.get(app.URL + "/reports?year=2026")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("first visit: %d", resp.StatusCode)
	}
	callbackURL := b.loginAt(resp.Header.Get("Location"), "alice")
	resp, _ = b.get(callbackURL)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/reports?year=2026" {
		t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.get(app.URL+"/reports?year=2026", "X-Forwarded-User", "mallory")
	if resp.StatusCode != http.StatusOK || body != "hello alice" {
		t.Fatalf("after login: %d %q", resp.StatusCode, body)
	}
	if seen.Get("X-Forwarded-Groups") != "admins,staff" || seen.Get("X-Forwarded-Email") != "alice@example.com" {
		t.Fatalf("upstream headers: %v", seen)
	}

	// The same callback URL again: the login cookie is gone, so it fails
	// and no new session is issued.
	resp, _ = b.get(callbackURL)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "_gatehouse" {
			t.Fatal("replayed callback touched the session cookie")
		}
	}
	_ = session.ErrNoSession
}

// TestRedirectURIBehindTLSTerminator: a plain-HTTP request that a proxy in
// trusted_proxies marks X-Forwarded-Proto: https gets an https callback
// (a load balancer terminating TLS); the same header from an untrusted
// client, or any other value, changes nothing, and X-Forwarded-Host is
// never read.
func TestRedirectURIBehindTLSTerminator(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	for _, tc := range []struct {
		trusted bool
		proto   string
		want    string
	}{
		{false, "https", "http://app.example/oauth2/callback"},
		{true, "https", "https://app.example/oauth2/callback"},
		{true, "HTTPS", "https://app.example/oauth2/callback"},
		{true, "http", "http://app.example/oauth2/callback"},
		{true, "https, http", "http://app.example/oauth2/callback"},
	} {
		r := navigation("GET", "http://app.example/page")
		r.Header.Set("X-Forwarded-Proto", tc.proto)
		r.Header.Set("X-Forwarded-Host", "evil.example")
		if tc.trusted {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: true}))
		}
		resp, _, _ := serve(t, g, r)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if got := loc.Query().Get("redirect_uri"); got != tc.want {
			t.Errorf("trusted %v, X-Forwarded-Proto %q: redirect_uri %q, want %q", tc.trusted, tc.proto, got, tc.want)
		}
	}
}
