package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/harness"
	"github.com/gatehouse-auth/gatehouse/internal/testnginx"
)

// nginxSite is the nginx configuration the README gives, for gatehouse
// at gatehouse and the app at app.
const nginxSite = `
server {
	listen %[1]s;

	location / {
		auth_request /oauth2/auth;
		auth_request_set $gatehouse_user   $upstream_http_x_forwarded_user;
		auth_request_set $gatehouse_email  $upstream_http_x_forwarded_email;
		auth_request_set $gatehouse_name   $upstream_http_x_forwarded_preferred_username;
		auth_request_set $gatehouse_groups $upstream_http_x_forwarded_groups;
		auth_request_set $gatehouse_cookie $upstream_http_set_cookie;
		auth_request_set $gatehouse_login  $upstream_http_location;
		add_header Set-Cookie $gatehouse_cookie;
		error_page 401 = @gatehouse_login;

		proxy_set_header X-Forwarded-User               $gatehouse_user;
		proxy_set_header X-Forwarded-Email              $gatehouse_email;
		proxy_set_header X-Forwarded-Preferred-Username $gatehouse_name;
		proxy_set_header X-Forwarded-Groups             $gatehouse_groups;
		proxy_set_header X-Forwarded-Access-Token       "";
		proxy_pass http://%[3]s;
	}

	location = /oauth2/auth {
		internal;
		proxy_pass http://%[2]s;
		proxy_pass_request_body off;
		proxy_set_header Content-Length     "";
		proxy_set_header Host               $http_host;
		proxy_set_header X-Original-URL     $scheme://$http_host$request_uri;
		proxy_set_header X-Forwarded-Method $request_method;
		proxy_set_header X-Forwarded-Uri    "";
	}

	location /oauth2/ {
		proxy_pass http://%[2]s;
		proxy_set_header Host $http_host;
	}

	location @gatehouse_login {
		if ($gatehouse_login) {
			return 302 $gatehouse_login;
		}
		return 401;
	}
}
`

// fromOtherAddress has b connect from 127.0.0.2, a client Caddy does not
// trust as a proxy (trusted_proxies is 127.0.0.1/32, where nginx and
// Caddy's forward_auth connect from).
func fromOtherAddress(b *browser) *browser {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	b.client.Transport = &http.Transport{DialContext: d.DialContext}
	return b
}

// TestForwardAuthBehindProxies puts gatehouse's /oauth2/auth behind a real
// nginx (auth_request) and behind Caddy's own forward_auth, in front of an
// upstream that records what it sees, with devidp logins.
func TestForwardAuthBehindProxies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy and nginx")
	}
	idp := newIDP(t)
	// nginx's gatehouse: access tokens of a second, so that a request a
	// second later refreshes and re-issues the session cookie.
	shortIDP, _ := newConfiguredIDP(t, func(c *devidp.Config) { c.AccessTokenTTL = time.Second })
	app := &recorder{}
	upstream := httptest.NewServer(app)
	defer upstream.Close()
	upstreamAddr := strings.TrimPrefix(upstream.URL, "http://")
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	gatehouse := fmt.Sprintf("127.0.0.1:%d", ports[0])    // forward auth for Caddy, and a direct client
	forNginx := fmt.Sprintf("127.0.0.1:%d", ports[1])     // forward auth for nginx
	front := fmt.Sprintf("http://127.0.0.1:%d", ports[2]) // a Caddy site with forward_auth
	nginx := testnginx.Start(t, func(addr string) string {
		return fmt.Sprintf(nginxSite, addr, forNginx, upstreamAddr)
	})

	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
		admin localhost:2999
		grace_period 1ns
		auto_https off
		servers {
			trusted_proxies static 127.0.0.1/32
		}
	}
	(gh) {
		client_id %[2]s
		client_secret %[3]s
		cookie_secret %[4]s
		cookie_insecure
		public_paths /public/*
	}
	http://:%[5]d {
		bind 127.0.0.1
		gatehouse {
			import gh
			issuer %[1]s
			scopes openid email profile groups
		}
		respond "gatehouse's own site"
	}
	http://:%[6]d {
		bind 127.0.0.1
		gatehouse {
			import gh
			issuer %[10]s
			scopes openid email profile groups offline_access
			cookie_name nginx_session
		}
		respond "gatehouse's own site"
	}
	http://:%[7]d {
		bind 127.0.0.1
		handle /oauth2/* {
			reverse_proxy %[8]s
		}
		handle {
			forward_auth %[8]s {
				uri /oauth2/auth
				copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Preferred-Username X-Forwarded-Groups
			}
			reverse_proxy %[9]s
		}
	}
	`, idp.Issuer(), testClientID, testClientSecret, testCookieSecret,
		ports[0], ports[1], ports[2], gatehouse, upstreamAddr, shortIDP.Issuer()), "caddyfile")

	// identity checks what the upstream saw last: path and identity.
	identity := func(t *testing.T, path, user string) {
		t.Helper()
		h, got, _ := app.last()
		if got != path {
			t.Fatalf("upstream path %q, want %q", got, path)
		}
		want := map[string]string{"X-Forwarded-User": user, "X-Forwarded-Email": "", "X-Forwarded-Preferred-Username": "", "X-Forwarded-Groups": ""}
		if user == "alice" {
			want = map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com",
				"X-Forwarded-Preferred-Username": "alice", "X-Forwarded-Groups": "admins,staff"}
		}
		wantHeaders(t, h, want)
		if h.Get("X-Forwarded-Access-Token") != "" {
			t.Error("upstream got an access token")
		}
	}
	unreached := func(t *testing.T, do func()) {
		t.Helper()
		_, _, before := app.last()
		do()
		if _, _, after := app.last(); after != before {
			t.Fatal("the upstream was reached")
		}
	}
	// login follows a sign-in from resp (302 to the login start) through
	// devidp as alice, back to want.
	login := func(t *testing.T, b *browser, base string, resp *http.Response, want string) {
		t.Helper()
		start, err := url.Parse(base)
		if err == nil {
			start, err = start.Parse(resp.Header.Get("Location"))
		}
		if resp.StatusCode != http.StatusFound || err != nil || start.Path != "/oauth2/start" {
			t.Fatalf("not sent to the login start: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = b.get(start.String())
		if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/authorize?") {
			t.Fatalf("login start: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "alice"))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("callback: %d → %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	// CVE-2026-40575, CVE-2026-34457: straight to Caddy from a client it
	// does not trust as a proxy, neither header names the request asked
	// about — not a public path, not the return-to.
	for _, tc := range []struct{ header, value, addr string }{
		{"X-Forwarded-Uri", "/public/page", gatehouse},
		{"X-Original-URL", "http://evil.example/public/page", forNginx},
	} {
		t.Run("a client's own "+tc.header+" is not believed", func(t *testing.T) {
			b := fromOtherAddress(newBrowser(t))
			auth := "http://" + tc.addr + "/oauth2/auth"
			r, _ := http.NewRequest("GET", auth, nil)
			r.Header.Set(tc.header, tc.value)
			r.Header.Set("X-Forwarded-Host", "evil.example")
			r.Header.Set("Accept", "application/json")
			if resp := b.do(r); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("API: %d", resp.StatusCode)
			}
			resp, _ := b.get(auth, tc.header, tc.value, "X-Forwarded-Host", "evil.example")
			if want := "http://" + tc.addr + "/oauth2/start?rd=" + url.QueryEscape(auth); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
				t.Fatalf("navigation: %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}

	browsers := map[string]*browser{}
	for _, proxy := range []struct {
		name, site string
		// A client's own header naming the original URL the other way:
		// nginx's config drops it (401); through Caddy gatehouse refuses
		// the two ways at once (400).
		spoof       string
		spoofStatus int
	}{
		{"nginx auth_request", nginx.URL(), "X-Forwarded-Uri", http.StatusUnauthorized},
		{"Caddy forward_auth", front, "X-Original-URL", http.StatusBadRequest},
	} {
		site := proxy.site
		b := fromOtherAddress(newBrowser(t))
		browsers[proxy.name] = b
		t.Run(proxy.name+": an API call gets 401", func(t *testing.T) {
			unreached(t, func() {
				r, _ := http.NewRequest("GET", site+"/api/items", nil)
				r.Header.Set("Accept", "application/json")
				if resp := b.do(r); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
					t.Fatalf("%d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), nginx.ErrorLog())
				}
				r.Header.Set(proxy.spoof, site+"/public/x")
				if resp := b.do(r); resp.StatusCode != proxy.spoofStatus {
					t.Fatalf("with the client's %s: %d", proxy.spoof, resp.StatusCode)
				}
			})
		})
		t.Run(proxy.name+": a public path passes anonymously", func(t *testing.T) {
			resp, body := b.get(site+"/public/page?x=1", "X-Forwarded-User", "mallory")
			if resp.StatusCode != http.StatusOK || body != "app: user=" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			identity(t, "/public/page?x=1", "")
		})
		t.Run(proxy.name+": a browser signs in and comes back to the original URL", func(t *testing.T) {
			const path = "/reports/2026?sort=date&q=a%2Fb"
			var resp *http.Response
			unreached(t, func() { resp, _ = b.get(site + path) })
			login(t, b, site, resp, site+path)
			resp, body := b.get(site+path, "X-Forwarded-User", "mallory", "X-Forwarded-Groups", "root")
			if resp.StatusCode != http.StatusOK || body != "app: user=alice" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			identity(t, path, "alice")
		})
	}

	// nginx passes the auth answer's Set-Cookie on with add_header (Caddy's
	// forward_auth cannot: see the README).
	t.Run("nginx auth_request: a refreshed session cookie reaches the browser", func(t *testing.T) {
		b := browsers["nginx auth_request"]
		time.Sleep(1100 * time.Millisecond) // the access token expires
		refreshes := shortIDP.Stats().Refresh
		resp, body := b.get(nginx.URL() + "/again")
		if resp.StatusCode != http.StatusOK || body != "app: user=alice" || shortIDP.Stats().Refresh == refreshes {
			t.Fatalf("%d %q, refreshes %d → %d", resp.StatusCode, body, refreshes, shortIDP.Stats().Refresh)
		}
		var renewed bool
		for _, c := range resp.Cookies() {
			renewed = renewed || c.Name == "nginx_session" && c.Value != ""
		}
		if !renewed {
			t.Fatalf("no session cookie through nginx: %q", resp.Header.Values("Set-Cookie"))
		}
	})
}
