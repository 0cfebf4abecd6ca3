package caddymodule

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestPublicPathsStillStrip (review SA2-01): public_paths need no sign-in,
// but gatehouse still runs there, so a client's identity headers never
// reach the upstream — what keeping the path out of gatehouse with a
// matcher cannot give. A valid session still passes its identity; path
// tricks do not make a private path public.
func TestPublicPathsStillStrip(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.PublicPaths = []string{"/public/*", "/health", "*.css"}
	})
	spoofed := func(target string) *http.Request {
		r := navigation("GET", target)
		r.Header.Set("X-Forwarded-User", "mallory")
		r.Header.Set("X_Forwarded_Groups", "admins")
		r.Header.Set("X-Forwarded-Email", "ceo@corp.example")
		return r
	}
	for _, target := range []string{"/public/page", "/health", "/PUBLIC/x", "/app/site.css"} {
		resp, up, err := serve(t, g, spoofed(target))
		if err != nil || resp.StatusCode != http.StatusOK || !up.called {
			t.Fatalf("%s: status %d, upstream %v, err %v", target, resp.StatusCode, up.called, err)
		}
		for name := range up.req.Header {
			if sameHeaderName(name, "X-Forwarded-User") || sameHeaderName(name, "X-Forwarded-Groups") || sameHeaderName(name, "X-Forwarded-Email") {
				t.Fatalf("%s: the client's %s reached the upstream", target, name)
			}
		}
		if got, _ := up.repl.GetString("http.auth.user.id"); got != "" {
			t.Fatalf("%s: {http.auth.user.id} = %q", target, got)
		}
	}
	// A signed-in user keeps the identity on a public path.
	r := spoofed("/public/page")
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	if _, up, _ := serve(t, g, r); up.req.Header.Get("X-Forwarded-User") != "alice" {
		t.Fatalf("a session on a public path: X-Forwarded-User %q", up.req.Header.Get("X-Forwarded-User"))
	}
	// Private paths, written any way, still need a login (CVE-2026-27587).
	for _, target := range []string{"/private", "/public/../private", "/healthz", "/health/x", "/public"} {
		r := navigation("GET", "/")
		r.URL = &url.URL{Path: target}
		resp, up, _ := serve(t, g, r)
		if up.called || resp.StatusCode == http.StatusOK {
			t.Fatalf("%s passed as public", target)
		}
	}
}

// TestNonCanonicalAuthorizationRefused (review SA2-02): with a bearer
// block, an Authorization header that names Bearer in any form but the
// canonical one is a 400 — it used to be "no token" and went upstream
// unchecked, where a lenient parser finds the token. The session does not
// rescue it, nor does `unauthenticated allow`.
func TestNonCanonicalAuthorizationRefused(t *testing.T) {
	keys := newKeyServer(t)
	stranger := newKeyServer(t) // its tokens are not trusted
	tok := stranger.sign(nil)
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = keys.bearer()
		g.Unauthenticated = "allow"
	})
	for _, auth := range [][]string{
		{"Bearer\t" + tok},
		{"Bearer\t " + tok},
		{"Basic eA==, Bearer " + tok},
		{"XBearer " + tok},
		{"Basic eA==", "bearer\t" + tok},
	} {
		r := apiRequest(auth...)
		for _, c := range sessionCookies(t, g, aliceSession()) {
			r.AddCookie(c)
		}
		resp, up, _ := serve(t, g, r)
		if up.called || resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_request") {
			t.Errorf("%q: status %d, upstream called %v", auth, resp.StatusCode, up.called)
		}
	}
	// On a public path such a request passes, without the header.
	pub := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = keys.bearer()
		g.PublicPaths = []string{"/api/*"}
	})
	resp, up, _ := serve(t, pub, apiRequest("Bearer\t"+tok))
	if !up.called || up.req.Header.Get("Authorization") != "" {
		t.Fatalf("public path: status %d, Authorization upstream %q", resp.StatusCode, up.req.Header.Get("Authorization"))
	}
}

// TestPlaceholdersResolvedWhenAnonymous (review SA2-03): on a request that
// goes on without an identity, every {http.auth.user.*} placeholder is
// empty — Caddy used to leave it as literal text in header values, so
// `request_header Remote-User {http.auth.user.id}` sent every anonymous
// visitor as one user named "{http.auth.user.id}". The same for a claim
// the configuration does not map.
func TestPlaceholdersResolvedWhenAnonymous(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.Unauthenticated = "allow" })
	_, up, _ := serve(t, g, httptest.NewRequest("GET", "/", nil))
	if !up.called {
		t.Fatal("anonymous request not passed")
	}
	for _, name := range []string{"id", "email", "groups", "department"} {
		if got := up.repl.ReplaceKnown("{http.auth.user."+name+"}", ""); got != "" {
			t.Errorf("anonymous {http.auth.user.%s} = %q, want empty", name, got)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	_, up, _ = serve(t, g, r)
	if got := up.repl.ReplaceKnown("{http.auth.user.id}/{http.auth.user.department}", ""); got != "alice/" {
		t.Errorf("signed in: %q, want %q", got, "alice/")
	}
}

// TestConnectionHeaderCannotDropIdentity (review SA2-08): a client's
// Connection header naming the identity headers would have reverse_proxy
// remove the ones gatehouse sets (upstreams that treat "no groups" as a
// default role); gatehouse drops such tokens and keeps the others.
func TestConnectionHeaderCannotDropIdentity(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Connection", "keep-alive, X-Forwarded-Groups, x_forwarded_user")
	r.Header.Add("Connection", "X-Forwarded-Email")
	for _, c := range sessionCookies(t, g, aliceSession()) {
		r.AddCookie(c)
	}
	_, up, _ := serve(t, g, r)
	if got := up.req.Header.Values("Connection"); len(got) != 1 || got[0] != "keep-alive" {
		t.Fatalf("Connection upstream: %q", got)
	}
	if up.req.Header.Get("X-Forwarded-Groups") != "admins,staff" {
		t.Fatal("identity headers missing")
	}
}

// TestTrailersCannotCarryIdentity (review SA2-09): identity headers sent
// as trailers of a chunked request are stripped once the body is read.
func TestTrailersCannotCarryIdentity(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.Unauthenticated = "allow" })
	raw := "POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-User\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Forwarded-User: mallory\r\nX_Forwarded_Groups: admins\r\nX-Checksum: ok\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	_, up, _ := serve(t, g, r)
	if !up.called {
		t.Fatal("not passed")
	}
	if _, err := io.ReadAll(up.req.Body); err != nil {
		t.Fatal(err)
	}
	if up.req.Trailer.Get("X-Forwarded-User") != "" || len(up.req.Trailer["X_forwarded_groups"]) > 0 || up.req.Trailer.Get("X-Checksum") != "ok" {
		t.Fatalf("trailers after the body: %v", up.req.Trailer)
	}
}

// TestDefaultCookieIsHostPrefixed (review SA2-18): on a Secure, host-only
// site the session and login cookies are __Host- prefixed, so a sibling
// subdomain can neither set a session of its own (login CSRF) nor shadow
// ours; with cookie_domain or cookie_insecure that cannot hold, and the
// plain name stays.
func TestDefaultCookieIsHostPrefixed(t *testing.T) {
	idp := newIDP(t)
	for _, tc := range []struct {
		mod  func(*Gatehouse)
		want string
	}{
		{func(g *Gatehouse) { g.CookieInsecure = false }, "__Host-gatehouse"},
		{func(g *Gatehouse) { g.CookieInsecure, g.CookieDomain = false, "example.com" }, "_gatehouse"},
		{nil, "_gatehouse"}, // cookie_insecure
		{func(g *Gatehouse) { g.CookieInsecure, g.CookieName = false, "app" }, "app"},
	} {
		g := newHandler(t, idp.Issuer(), tc.mod)
		resp, _, _ := serve(t, g, navigation("GET", "/page"))
		var login *http.Cookie
		for _, c := range resp.Cookies() {
			login = c
		}
		if login == nil || !strings.HasPrefix(login.Name, tc.want+"_login_") {
			t.Fatalf("want %s: login cookie %v", tc.want, login)
		}
		if strings.HasPrefix(login.Name, "__Host-") && (!login.Secure || login.Path != "/" || login.Domain != "") {
			t.Fatalf("a __Host- cookie without its attributes: %+v", login)
		}
		w := httptest.NewRecorder()
		if err := g.sessions.Save(w, httptest.NewRequest("GET", "/", nil), aliceSession()); err != nil {
			t.Fatal(err)
		}
		if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != tc.want {
			t.Fatalf("session cookie %v, want %s", c, tc.want)
		}
	}
}

// TestSignOutCSRF (review SA2-15): another site cannot sign the user out:
// a cross-site GET only shows a page whose button posts the sign-out, a
// cross-site POST is refused; the session stays. The site's own sign-out
// (same-origin, or a browser that says nothing) works.
func TestSignOutCSRF(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.AuthorizationEndpoint, g.TokenEndpoint, g.JWKSURI = "https://idp.example/a", "https://idp.example/t", "https://idp.example/k"
	})
	sess := aliceSession()
	cookies := sessionCookies(t, g, sess)
	signOut := func(method string, headers ...string) *http.Response {
		r := httptest.NewRequest(method, "http://app.example/oauth2/sign_out?rd=/bye", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		resp, _, _ := serve(t, g, r)
		return resp
	}
	stillSignedIn := func(when string) {
		r := httptest.NewRequest("GET", "/", nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		if _, up, _ := serve(t, g, r); !up.called {
			t.Fatalf("%s: the session was ended", when)
		}
	}
	resp := signOut("GET", "Sec-Fetch-Site", "cross-site")
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post" action="/oauth2/sign_out"`) || !strings.Contains(body, `value="/bye"`) || len(resp.Cookies()) != 0 {
		t.Fatalf("cross-site GET: %d %v %s", resp.StatusCode, resp.Cookies(), body)
	}
	stillSignedIn("cross-site GET")
	if resp := signOut("POST", "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	if resp := signOut("POST", "Sec-Fetch-Site", "same-site"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST from a sibling subdomain: %d", resp.StatusCode)
	}
	stillSignedIn("cross-site POST")
	if resp := signOut("POST", "Sec-Fetch-Site", "same-origin", "Origin", "http://app.example"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("same-origin POST: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestListValuesWithCommas (review SA2-26): a group or claim value that
// holds a comma would split into two at the upstream; it is left out of
// the joined header, and the rules still see it.
func TestListValuesWithCommas(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.AllowGroups = []string{"admins,root"}
		g.Headers = map[string]string{"X-Roles": "roles"}
	})
	sess := aliceSession()
	sess.Groups = []string{"staff", "admins,root"}
	sess.Claims = map[string][]string{"roles": {"a,b", "c"}}
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	_, up, _ := serve(t, g, r)
	if !up.called {
		t.Fatal("the allow rule did not see the group with a comma")
	}
	if got := up.req.Header.Get("X-Forwarded-Groups"); got != "staff" {
		t.Errorf("X-Forwarded-Groups %q", got)
	}
	if got := up.req.Header.Get("X-Roles"); got != "c" {
		t.Errorf("X-Roles %q", got)
	}
}
