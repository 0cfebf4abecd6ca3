package caddymodule

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// recorder is an upstream app that remembers the headers it was sent.
type recorder struct {
	mu    sync.Mutex
	seen  []http.Header
	paths []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.seen = append(rec.seen, r.Header.Clone())
	rec.paths = append(rec.paths, r.URL.RequestURI())
	rec.mu.Unlock()
	fmt.Fprintf(w, "app: user=%s", r.Header.Get("X-Forwarded-User"))
}

func (rec *recorder) last() (http.Header, string, int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) == 0 {
		return nil, "", 0
	}
	return rec.seen[len(rec.seen)-1], rec.paths[len(rec.paths)-1], len(rec.seen)
}

// TestThroughRealCaddy runs a real Caddy (caddytest, in process) with
// gatehouse in front of an httptest upstream and devidp, and walks a
// browser login with a cookie jar: redirect → provider login → callback →
// upstream, checking what the upstream receives.
func TestThroughRealCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	idp := newIDP(t)
	app := &recorder{}
	upstream := httptest.NewServer(app)
	defer upstream.Close()

	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
		admin localhost:2999
		http_port 9080
		https_port 9443
		grace_period 1ns
		auto_https off
	}
	http://127.0.0.1:9080 {
		bind 127.0.0.1
		gatehouse {
			issuer %[1]s
			client_id %[2]s
			client_secret %[3]s
			cookie_secret %[4]s
			scopes openid email profile groups
			cookie_insecure
		}
		reverse_proxy %[5]s
	}
	http://127.0.0.1:9081 {
		bind 127.0.0.1
		gatehouse {
			issuer %[6]s
			client_id %[2]s
			client_secret %[3]s
			cookie_secret %[4]s
			cookie_insecure
		}
		reverse_proxy %[5]s
	}
	http://127.0.0.1:9082 {
		bind 127.0.0.1
		gatehouse /private/* {
			issuer %[1]s
			client_id %[2]s
			client_secret %[3]s
			cookie_secret %[4]s
			cookie_insecure
			unauthenticated 401
		}
		respond "public {path}"
	}
	(gh) {
		issuer %[1]s
		client_id %[2]s
		client_secret %[3]s
		cookie_secret %[4]s
		cookie_insecure
	}
	http://127.0.0.1:9084 {
		bind 127.0.0.1
		handle /admin/* {
			gatehouse {
				import gh
				allow_groups admins
			}
			reverse_proxy %[5]s
		}
		handle {
			gatehouse {
				import gh
			}
			reverse_proxy %[5]s
		}
	}
	http://127.0.0.1:9083 {
		bind 127.0.0.1
		gatehouse {
			issuer %[1]s
			bearer {
				audience api://orders
				required_scopes orders:read
				only
			}
		}
		reverse_proxy %[5]s
	}
	`, idp.Issuer(), testClientID, testClientSecret, testCookieSecret,
		strings.TrimPrefix(upstream.URL, "http://"), closedURL(t)), "caddyfile")

	const site = "http://127.0.0.1:9080"
	b := newBrowser(t)

	t.Run("API request without a session gets 401 JSON", func(t *testing.T) {
		r, _ := http.NewRequest("GET", site+"/api/items", nil)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("X-Forwarded-User", "mallory")
		resp := b.do(r)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"error":"unauthenticated"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if _, _, n := app.last(); n != 0 {
			t.Fatal("the upstream was reached without a session")
		}
	})

	var callbackURL string
	t.Run("login walks redirect, provider, callback", func(t *testing.T) {
		resp, _ := b.get(site + "/reports/2026?sort=date&q=a%2Fb")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("first visit: %d", resp.StatusCode)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(loc.String(), idp.Issuer()+"/authorize") ||
			loc.Query().Get("redirect_uri") != site+"/oauth2/callback" ||
			loc.Query().Get("code_challenge_method") != "S256" {
			t.Fatalf("authorization URL %s", loc)
		}
		callbackURL = b.loginAt(loc.String(), "alice")
		resp, _ = b.get(callbackURL)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/reports/2026?sort=date&q=a%2Fb" {
			t.Fatalf("callback: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		var session *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "_gatehouse" {
				session = c
			}
		}
		if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
			t.Fatalf("session cookie: %+v", session)
		}
	})

	t.Run("upstream receives the identity, never spoofed headers or our cookies", func(t *testing.T) {
		r, _ := http.NewRequest("GET", site+"/reports/2026?sort=date&q=a%2Fb", nil)
		r.Header.Set("Accept", "text/html")
		r.Header["X-Forwarded-User"] = []string{"mallory"}
		r.Header["X_Forwarded_User"] = []string{"mallory"}
		r.Header["X-Forwarded-Groups"] = []string{"admins,root"}
		r.Header["x_forwarded_email"] = []string{"mallory@evil.example"}
		r.Header["X-Forwarded-Access-Token"] = []string{"forged"}
		r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
		resp := b.do(r)
		body := readBody(resp)
		if resp.StatusCode != http.StatusOK || body != "app: user=alice" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		h, path, _ := app.last()
		if path != "/reports/2026?sort=date&q=a%2Fb" {
			t.Fatalf("upstream path %q", path)
		}
		for name, want := range map[string]string{
			"X-Forwarded-User":               "alice",
			"X-Forwarded-Email":              "alice@example.com",
			"X-Forwarded-Preferred-Username": "alice",
			"X-Forwarded-Groups":             "admins,staff",
			"X-Forwarded-Access-Token":       "",
		} {
			if got := strings.Join(h.Values(name), "|"); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		for name, values := range h {
			for _, v := range values {
				if strings.Contains(v, "mallory") || v == "forged" || v == "admins,root" {
					t.Errorf("spoofed %s: %q reached the upstream", name, v)
				}
			}
		}
		if cookies := strings.Join(h.Values("Cookie"), "; "); cookies != "app_pref=dark" {
			t.Errorf("upstream Cookie header %q", cookies)
		}
	})

	t.Run("replayed callback fails and sets no session", func(t *testing.T) {
		fresh := newBrowser(t)
		resp, body := fresh.get(callbackURL)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Sign-in failed") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if c.Name == "_gatehouse" {
				t.Fatal("a session cookie was set")
			}
		}
	})

	t.Run("tampered cookie is no session", func(t *testing.T) {
		u, _ := url.Parse(site)
		var value string
		for _, c := range b.client.Jar.Cookies(u) {
			if c.Name == "_gatehouse" {
				value = c.Value
			}
		}
		bad := []byte(value)
		bad[10] ^= 0x01
		r, _ := http.NewRequest("GET", site+"/reports", nil)
		r.Header.Set("Accept", "text/html")
		r.Header.Set("Cookie", "_gatehouse="+string(bad))
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("tampered cookie: %d", resp.StatusCode)
		}
	})

	// Skip rules are Caddy matchers on the normalised path: no encoding,
	// case or slash trick reaches /private/* without a session, and the
	// query string never matters (oauth2-proxy CVE-2025-54576,
	// CVE-2026-41059; Caddy CVE-2026-27587).
	t.Run("path tricks do not bypass a protected route", func(t *testing.T) {
		for _, raw := range []string{
			"/private/x", "/PRIVATE/x", "/Private/x", "//private/x", "/./private/x",
			"/public/../private/x", "/public/%2e%2e/private/x", "/public/%2E%2E/private/x",
			"/%70rivate/x", "/private%2Fx", "/private%2fx", "/public%23/../private/x",
			"/private/x?/public", "/private/%2e%2e/private/x", "/private/x#/public",
		} {
			resp := rawGET(t, "127.0.0.1:9082", raw)
			body := readBody(resp)
			if resp.StatusCode != http.StatusUnauthorized && !(resp.StatusCode == http.StatusOK && !strings.Contains(strings.ToLower(body), "/private/")) {
				t.Errorf("%s: %d %q", raw, resp.StatusCode, body)
			}
			if resp.StatusCode == http.StatusOK {
				t.Logf("%s is public: %q", raw, body)
			}
		}
		r, _ := http.NewRequest("GET", "http://127.0.0.1:9082/public?next=/private/secret", nil)
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(resp); resp.StatusCode != http.StatusOK || body != "public /public" {
			t.Errorf("a public path with /private/ in its query: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("API route with bearer only", func(t *testing.T) {
		const api = "http://127.0.0.1:9083/api/orders?page=2"
		_, _, before := app.last()
		good := mint(t, idp, "alice", []string{"api://orders"}, []string{"orders:read"}, time.Hour)
		parts := strings.Split(good, ".")
		for _, tc := range []struct {
			name, auth string
			status     int
		}{
			{"no token", "", 401},
			{"tampered", "Bearer " + parts[0] + "." + parts[1] + "x." + parts[2], 401},
			{"wrong audience", "Bearer " + mint(t, idp, "alice", []string{"api://billing"}, []string{"orders:read"}, time.Hour), 401},
			{"expired", "Bearer " + mint(t, idp, "alice", []string{"api://orders"}, []string{"orders:read"}, -time.Minute), 401},
			{"missing scope", "Bearer " + mint(t, idp, "alice", []string{"api://orders"}, nil, time.Hour), 403},
			{"malformed", "Bearer " + good + " extra", 400},
			{"wrong scheme", "Basic YWxpY2U6cHc=", 401},
		} {
			r, _ := http.NewRequest("GET", api, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			r.Header.Set("X-Forwarded-User", "mallory")
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			readBody(resp)
			if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("%s: %d %q", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
		if _, _, n := app.last(); n != before {
			t.Fatal("the upstream was reached by a refused request")
		}
		r, _ := http.NewRequest("GET", api, nil)
		r.Header.Set("Authorization", "Bearer "+good)
		r.Header.Set("X-Forwarded-User", "mallory")
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(resp)
		h, path, _ := app.last()
		if resp.StatusCode != 200 || body != "app: user=alice" || path != "/api/orders?page=2" || h.Get("X-Forwarded-Groups") != "admins,staff" {
			t.Fatalf("valid token: %d %q %q %v", resp.StatusCode, body, path, h)
		}
	})

	// Per-path rules the Caddy way: two gatehouse blocks under handle
	// matchers, one cookie, the admin area for one group only.
	t.Run("per-path rules", func(t *testing.T) {
		const site = "http://127.0.0.1:9084"
		for user, adminStatus := range map[string]int{"alice": http.StatusOK, "bob": http.StatusForbidden} {
			b := newBrowser(t)
			resp, _ := b.get(site + "/admin/users")
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("%s: first visit %d", user, resp.StatusCode)
			}
			resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), user))
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/admin/users" {
				t.Fatalf("%s: callback %d %s", user, resp.StatusCode, resp.Header.Get("Location"))
			}
			resp, body := b.get(site + "/admin/users")
			if resp.StatusCode != adminStatus {
				t.Fatalf("%s on /admin/users: %d %s", user, resp.StatusCode, body)
			}
			if adminStatus == http.StatusForbidden && !strings.Contains(body, "signed in as "+user+"@example.com") {
				t.Fatalf("403 page: %s", body)
			}
			if resp, body := b.get(site + "/reports"); resp.StatusCode != http.StatusOK || body != "app: user="+user {
				t.Fatalf("%s on /reports: %d %q", user, resp.StatusCode, body)
			}
		}
	})

	t.Run("provider down gives a 503 page", func(t *testing.T) {
		resp, body := newBrowser(t).get("http://127.0.0.1:9081/")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// rawGET sends a request line with target exactly as given (no client-side
// cleaning) and reads the response.
func rawGET(t *testing.T, addr, target string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nConnection: close\r\n\r\n", target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
