package devidp_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

func TestNewRejectsBadConfig(t *testing.T) {
	clock := newFakeClock()
	tests := []struct {
		name   string
		mutate func(*devidp.Config)
		want   string
	}{
		{"no issuer", func(c *devidp.Config) { c.Issuer = "" }, "issuer is required"},
		{"relative issuer", func(c *devidp.Config) { c.Issuer = "/idp" }, "absolute http or https"},
		{"ftp issuer", func(c *devidp.Config) { c.Issuer = "ftp://idp.example" }, "absolute http or https"},
		{"issuer with query", func(c *devidp.Config) { c.Issuer = "https://idp.example/?a=b" }, "query or fragment"},
		{"issuer with empty query", func(c *devidp.Config) { c.Issuer = "https://idp.example/?" }, "query or fragment"},
		{"issuer with fragment", func(c *devidp.Config) { c.Issuer = "https://idp.example/#x" }, "query or fragment"},
		{"issuer with user info", func(c *devidp.Config) { c.Issuer = "https://u:p@idp.example" }, "user info"},
		{"unparsable issuer", func(c *devidp.Config) { c.Issuer = "https://[::1" }, "issuer"},
		{"no clients", func(c *devidp.Config) { c.Clients = nil }, "at least one client"},
		{"client without id", func(c *devidp.Config) { c.Clients[0].ID = "" }, "id is required"},
		{"client without secret", func(c *devidp.Config) { c.Clients[0].Secret = "" }, "secret is required"},
		{"duplicate client", func(c *devidp.Config) { c.Clients[1].ID = appID }, "duplicate id"},
		{"relative redirect", func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"/cb"} }, "redirect URI"},
		{"redirect with fragment", func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"https://a.example/cb#f"} }, "fragment"},
		{"javascript redirect", func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"javascript:alert(1)"} }, "redirect URI"},
		{"no users", func(c *devidp.Config) { c.Users = nil }, "at least one user"},
		{"user without subject", func(c *devidp.Config) { c.Users[0].Subject = "" }, "subject is required"},
		{"duplicate user", func(c *devidp.Config) { c.Users[1].Subject = "alice" }, "duplicate subject"},
		{"negative access TTL", func(c *devidp.Config) { c.AccessTokenTTL = -time.Second }, "must not be negative"},
		{"tiny code TTL", func(c *devidp.Config) { c.CodeTTL = time.Millisecond }, "at least 1s"},
		{"HS256", func(c *devidp.Config) { c.Algorithm = "HS256" }, "unsupported algorithm"},
		{"none", func(c *devidp.Config) { c.Algorithm = "none" }, "unsupported algorithm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("http://127.0.0.1:9000", clock)
			tc.mutate(&cfg)
			p, err := devidp.New(cfg)
			if err == nil {
				t.Fatalf("New succeeded (%v), want error containing %q", p.Issuer(), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "devidp: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %q, want prefix %q and %q", err, "devidp: ", tc.want)
			}
		})
	}

	t.Run("secret never in error", func(t *testing.T) {
		cfg := testConfig("http://127.0.0.1:9000", clock)
		cfg.Clients[0].RedirectURIs = []string{"/relative"}
		_, err := devidp.New(cfg)
		if err == nil || strings.Contains(err.Error(), appSecret) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("config is copied", func(t *testing.T) {
		cfg := testConfig("http://127.0.0.1:9000/", clock)
		p, err := devidp.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Clients[0].Secret = "changed"
		if p.Issuer() != "http://127.0.0.1:9000/" {
			t.Fatalf("Issuer() = %q", p.Issuer())
		}
	})
}

func TestRouting(t *testing.T) {
	e := newEnv(t, "/idp", nil)
	tests := []struct {
		name   string
		method string
		path   string
		want   int
		allow  string
	}{
		{"outside issuer path", http.MethodGet, "/jwks", http.StatusNotFound, ""},
		{"prefix lookalike", http.MethodGet, "/idpx/jwks", http.StatusNotFound, ""},
		{"unknown endpoint", http.MethodGet, "/idp/nope", http.StatusNotFound, ""},
		{"issuer root", http.MethodGet, "/idp", http.StatusNotFound, ""},
		{"trailing slash", http.MethodGet, "/idp/jwks/", http.StatusNotFound, ""},
		{"token GET", http.MethodGet, "/idp/token", http.StatusMethodNotAllowed, "POST"},
		{"jwks POST", http.MethodPost, "/idp/jwks", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"discovery DELETE", http.MethodDelete, "/idp/.well-known/openid-configuration", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"authorize PUT", http.MethodPut, "/idp/authorize", http.StatusMethodNotAllowed, "GET, POST"},
		{"jwks", http.MethodGet, "/idp/jwks", http.StatusOK, ""},
		{"discovery HEAD", http.MethodHead, "/idp/.well-known/openid-configuration", http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.base+tc.path, nil)
			r := e.do(req)
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d", r.status, tc.want)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, "/realms/dev", func(c *devidp.Config) { c.Algorithm = alg })
			r := e.get(e.url("/.well-known/openid-configuration"), nil)
			if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
			}
			doc := r.json(t)
			iss := e.base + "/realms/dev"
			wantStr := map[string]string{
				"issuer":                 iss,
				"authorization_endpoint": iss + "/authorize",
				"token_endpoint":         iss + "/token",
				"userinfo_endpoint":      iss + "/userinfo",
				"jwks_uri":               iss + "/jwks",
				"end_session_endpoint":   iss + "/end_session",
			}
			for k, want := range wantStr {
				if doc[k] != want {
					t.Errorf("%s = %v, want %q", k, doc[k], want)
				}
			}
			wantList := map[string][]string{
				"response_types_supported":              {"code"},
				"grant_types_supported":                 {"authorization_code", "refresh_token"},
				"subject_types_supported":               {"public"},
				"id_token_signing_alg_values_supported": {alg},
				"token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post"},
				"code_challenge_methods_supported":      {"S256"},
			}
			for k, want := range wantList {
				if got := strList(doc[k]); !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", k, got, want)
				}
			}
			for k, want := range map[string]string{"scopes_supported": "offline_access", "claims_supported": "groups"} {
				if !slices.Contains(strList(doc[k]), want) {
					t.Errorf("%s = %v, want it to contain %q", k, doc[k], want)
				}
			}
			if doc["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("authorization_response_iss_parameter_supported = %v", doc["authorization_response_iss_parameter_supported"])
			}
		})
	}
}

func strList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestJWKS(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, "", func(c *devidp.Config) { c.Algorithm = alg })
			r := e.get(e.url("/jwks"), nil)
			if cc := r.header.Get("Cache-Control"); cc != "max-age=300" {
				t.Fatalf("Cache-Control = %q", cc)
			}
			if strings.Contains(r.body, `"d"`) {
				t.Fatalf("JWKS leaks private key material: %s", r.body)
			}
			set := e.jwks()
			if set.Len() != 1 {
				t.Fatalf("JWKS has %d keys, want 1", set.Len())
			}
			key, _ := set.Key(0)
			if key.KeyID() == "" || key.Algorithm().String() != alg || key.KeyUsage() != "sig" {
				t.Fatalf("key kid=%q alg=%q use=%q", key.KeyID(), key.Algorithm(), key.KeyUsage())
			}

			verifier, challenge := pkce("jwks")
			tr := e.token(codeForm(e.code(authzParams(challenge), "alice"), verifier))
			idt, _ := tr.json(t)["id_token"].(string)
			tok := e.parseJWT(idt, appID)
			if tok.Subject() != "alice" {
				t.Fatalf("sub = %q", tok.Subject())
			}
			if h := header(t, idt); h["kid"] != key.KeyID() || h["alg"] != alg {
				t.Fatalf("ID token header = %v", h)
			}
		})
	}
}

// TestCodeFlow walks the whole authorization code flow by hand, as a relying
// party and a browser would.
func TestCodeFlow(t *testing.T) {
	tests := []struct {
		name string
		alg  string
		auth string // "basic" or "post"
	}{
		{"RS256 basic", "RS256", "basic"},
		{"RS256 post", "RS256", "post"},
		{"ES256 basic", "ES256", "basic"},
		{"ES256 post", "ES256", "post"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", func(c *devidp.Config) { c.Algorithm = tc.alg })
			verifier, challenge := pkce("flow-" + tc.auth)
			params := authzParams(challenge)
			params.Set("login_hint", "alice")

			// The login page.
			page, form := e.loginForm(params)
			for _, want := range []string{
				devidp.Banner, "Sign in to app", `value="alice"`, "Alice Example", "alice@example.com",
				"admins, staff", `value="bob"`, "bob@example.com", `value="cancel"`, "Cancel",
			} {
				if !strings.Contains(page.body, want) {
					t.Errorf("login page lacks %q", want)
				}
			}
			if !strings.Contains(page.body, `value="alice" autofocus`) {
				t.Errorf("login_hint user is not focused")
			}
			if page.header.Get("Cache-Control") != "no-store" || page.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("login page headers = %v", page.header)
			}
			for k := range params {
				if form.Get(k) != params.Get(k) {
					t.Errorf("hidden field %s = %q, want %q", k, form.Get(k), params.Get(k))
				}
			}

			// Choosing a user redirects back with code, state and iss, keeping
			// the registered URI's own query.
			form.Set("user", "alice")
			r := e.postForm(e.url("/authorize"), form, nil)
			if r.status != http.StatusFound {
				t.Fatalf("POST authorize: %d %q", r.status, r.body)
			}
			loc := r.location(t)
			q := loc.Query()
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://app.example.test/oauth2/callback" {
				t.Fatalf("redirected to %s", loc)
			}
			if q.Get("tenant") != "t1" || q.Get("state") != "st-123" || q.Get("iss") != e.p.Issuer() {
				t.Fatalf("redirect query = %v", q)
			}
			code := q.Get("code")
			if len(code) != 43 {
				t.Fatalf("code %q is not 32 base64url bytes", code)
			}

			// Token exchange.
			tf := codeForm(code, verifier)
			var hdr http.Header
			if tc.auth == "basic" {
				hdr = basicAuth(appID, appSecret)
			} else {
				tf.Set("client_id", appID)
				tf.Set("client_secret", appSecret)
			}
			tr := e.postForm(e.url("/token"), tf, hdr)
			if tr.status != http.StatusOK {
				t.Fatalf("token: %d %q", tr.status, tr.body)
			}
			if tr.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("token Cache-Control = %q", tr.header.Get("Cache-Control"))
			}
			body := tr.json(t)
			if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["scope"] != "openid email profile groups" {
				t.Fatalf("token response = %v", body)
			}
			if _, ok := body["refresh_token"]; ok {
				t.Fatalf("refresh_token issued without offline_access")
			}
			at, _ := body["access_token"].(string)
			idt, _ := body["id_token"].(string)

			// ID token.
			e.parseJWT(idt, appID)
			ic := claims(t, idt)
			now := float64(e.clock.Now().Unix())
			wantID := map[string]any{
				"iss": e.p.Issuer(), "sub": "alice", "aud": appID, "azp": appID,
				"iat": now, "exp": now + 3600, "auth_time": now, "nonce": "n-456",
				"at_hash": atHash(at), "email": "alice@example.com", "email_verified": true,
				"name": "Alice Example", "preferred_username": "alice",
			}
			for k, want := range wantID {
				if ic[k] != want {
					t.Errorf("ID token %s = %v, want %v", k, ic[k], want)
				}
			}
			if sid, _ := ic["sid"].(string); sid == "" {
				t.Errorf("ID token has no sid")
			}
			if got := strList(ic["groups"]); !slices.Equal(got, []string{"admins", "staff"}) {
				t.Errorf("ID token groups = %v", got)
			}
			if h := header(t, idt); h["typ"] != "JWT" {
				t.Errorf("ID token typ = %v", h["typ"])
			}

			// Access token.
			atok := e.parseJWT(at, appAudience)
			if !slices.Equal(atok.Audience(), []string{appID, appAudience}) {
				t.Errorf("access token aud = %v", atok.Audience())
			}
			ac := claims(t, at)
			wantAT := map[string]any{
				"iss": e.p.Issuer(), "sub": "alice", "client_id": appID, "scope": "openid email profile groups",
				"email": "alice@example.com", "preferred_username": "alice", "iat": now, "exp": now + 3600,
			}
			for k, want := range wantAT {
				if ac[k] != want {
					t.Errorf("access token %s = %v, want %v", k, ac[k], want)
				}
			}
			if jti, _ := ac["jti"].(string); jti == "" {
				t.Errorf("access token has no jti")
			}
			if h := header(t, at); h["typ"] != "at+jwt" || h["kid"] == nil || h["alg"] != tc.alg {
				t.Errorf("access token header = %v", h)
			}

			// Userinfo, by GET and POST.
			bearer := http.Header{"Authorization": {"Bearer " + at}}
			for _, ui := range []response{
				e.get(e.url("/userinfo"), bearer),
				e.postForm(e.url("/userinfo"), url.Values{}, bearer),
			} {
				if ui.status != http.StatusOK {
					t.Fatalf("userinfo: %d %q", ui.status, ui.body)
				}
				u := ui.json(t)
				if u["sub"] != "alice" || u["email"] != "alice@example.com" || u["email_verified"] != true ||
					u["name"] != "Alice Example" || u["preferred_username"] != "alice" ||
					!slices.Equal(strList(u["groups"]), []string{"admins", "staff"}) {
					t.Fatalf("userinfo = %v", u)
				}
			}
		})
	}
}

func TestLoginPageEscapes(t *testing.T) {
	e := newEnv(t, "", nil)
	_, challenge := pkce("esc")
	params := authzParams(challenge)
	params.Set("state", `"><script>alert(1)</script>`)
	page, form := e.loginForm(params)
	if strings.Contains(page.body, "<script>") {
		t.Fatalf("login page contains unescaped markup:\n%s", page.body)
	}
	if !strings.Contains(page.body, "&lt;script&gt;") {
		t.Fatalf("user name not rendered escaped")
	}
	if form.Get("state") != params.Get("state") {
		t.Fatalf("state round trip = %q", form.Get("state"))
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, "", nil)
	verifier, challenge := pkce("stats")
	params := authzParams(challenge)
	params.Set("scope", "openid offline_access")
	e.get(e.url("/.well-known/openid-configuration"), nil)
	code := e.code(params, "bob") // GET + POST authorize
	tr := e.token(codeForm(code, verifier)).json(t)
	e.jwks()
	rt, _ := tr["refresh_token"].(string)
	e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	e.get(e.url("/userinfo"), nil)
	e.get(e.url("/end_session"), nil)
	e.get(e.url("/token"), nil) // 405: not counted
	want := devidp.Stats{Discovery: 1, JWKS: 1, Authorize: 2, Token: 2, Refresh: 1, Userinfo: 1, EndSession: 1}
	if got := e.p.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}
