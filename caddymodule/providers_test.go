package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// twoProviders is a block with providers "staff" (only admins allowed)
// and "partners" (any of its users), each a devidp of its own, the
// second's users with other e-mails. Partners is configured by explicit
// endpoints, without discovery: like a provider that does not announce
// RFC 9207, gatehouse does not require its `iss` parameter.
func twoProviders(t *testing.T, mod func(*Gatehouse)) (*app, *devidp.Provider, *devidp.Provider) {
	t.Helper()
	staff := newIDP(t)
	partners, _ := newConfiguredIDP(t, func(c *devidp.Config) {
		c.AccessTokenTTL = 2 * time.Minute
		c.Users = []devidp.User{
			{Subject: "alice", Email: "alice@partner.example", Groups: []string{"vendors"}},
			{Subject: "carol", Email: "carol@partner.example"},
		}
	})
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{}
		g.Providers = []*NamedProvider{
			{Name: "staff", DisplayName: `Staff <b>&</b> "crew"`,
				ProviderConfig: ProviderConfig{Issuer: staff.Issuer(), ClientID: testClientID, ClientSecret: testClientSecret},
				AllowRules:     AllowRules{AllowGroups: []string{"admins"}}},
			{Name: "partners",
				ProviderConfig: ProviderConfig{Issuer: partners.Issuer(), ClientID: testClientID, ClientSecret: testClientSecret,
					Scopes:                []string{"openid", "email", "profile", "offline_access"},
					AuthorizationEndpoint: partners.Issuer() + "/authorize", TokenEndpoint: partners.Issuer() + "/token",
					JWKSURI: partners.Issuer() + "/jwks", UserinfoEndpoint: partners.Issuer() + "/userinfo"}},
		}
		if mod != nil {
			mod(g)
		}
	})
	return newApp(t, g), staff, partners
}

// chooseAndLogin walks from target through the sign-in page's button for
// provider as user, and returns the browser and the callback's redirect.
func chooseAndLogin(t *testing.T, a *app, target, provider, user string) (*browser, *http.Response) {
	t.Helper()
	b := newBrowser(t)
	resp, _ := b.get(a.URL + target)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/oauth2/sign_in?rd=") {
		t.Fatalf("anonymous navigation: %d to %q, want the sign-in page", resp.StatusCode, loc)
	}
	resp, page := b.get(a.URL + loc)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("sign-in page: %d %v", resp.StatusCode, resp.Header)
	}
	var href string
	for _, part := range strings.Split(page, `<a class="provider" `)[1:] {
		if strings.HasPrefix(part, `data-provider="`+provider+`"`) {
			_, rest, _ := strings.Cut(part, `href="`)
			href, _, _ = strings.Cut(rest, `"`)
		}
	}
	if href == "" {
		t.Fatalf("no button for %s on the sign-in page:\n%s", provider, page)
	}
	resp, _ = b.get(a.URL + htmlUnescape(href))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start at %s: %d", provider, resp.StatusCode)
	}
	callback := b.loginAt(resp.Header.Get("Location"), user)
	if !strings.Contains(callback, "/oauth2/callback/"+provider+"?") {
		t.Fatalf("the provider sent the browser to %q, not %s's callback", callback, provider)
	}
	resp, _ = b.get(callback)
	return b, resp
}

// TestSeveralProvidersChooserAndLogins: an anonymous navigation goes to the
// sign-in page, which lists both providers (labels escaped); each login
// lands on the original URL, and the upstream sees which provider.
func TestSeveralProvidersChooserAndLogins(t *testing.T) {
	a, _, _ := twoProviders(t, func(g *Gatehouse) { g.Headers = map[string]string{"X-Sub": "sub"} })
	const target = "/reports/2026?sort=date&q=a%2Fb"

	b := newBrowser(t)
	resp, _ := b.get(a.URL + target)
	resp, page := b.get(a.URL + resp.Header.Get("Location"))
	if !strings.Contains(page, `Staff &lt;b&gt;&amp;&lt;/b&gt; &#34;crew&#34;</a>`) || !strings.Contains(page, `>partners</a>`) {
		t.Fatalf("sign-in page labels:\n%s", page)
	}
	if strings.Contains(page, "<b>") {
		t.Fatal("a display name reached the page unescaped")
	}
	if !strings.Contains(page, "rd="+url.QueryEscape(url.QueryEscape(target))) && !strings.Contains(page, htmlEscapeAttr("rd="+url.QueryEscape(target))) {
		t.Fatalf("the buttons do not carry the return-to:\n%s", page)
	}

	for _, tc := range []struct{ provider, user, wantUser string }{
		{"staff", "alice", "alice"},
		{"partners", "carol", "carol"},
	} {
		b, resp := chooseAndLogin(t, a, target, tc.provider, tc.user)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != target {
			t.Fatalf("%s: callback %d to %q, want %q", tc.provider, resp.StatusCode, resp.Header.Get("Location"), target)
		}
		if s := a.session(t, b); s.Provider != tc.provider || s.User != tc.wantUser {
			t.Fatalf("%s: session of provider %q user %q", tc.provider, s.Provider, s.User)
		}
		a.seen = nil
		resp, body := b.get(a.URL + target)
		if resp.StatusCode != http.StatusOK || body != "hello "+tc.wantUser {
			t.Fatalf("%s: signed-in request %d %q", tc.provider, resp.StatusCode, body)
		}
		resp, body = b.get(a.URL + "/oauth2/userinfo")
		var info userinfo
		if err := json.Unmarshal([]byte(body), &info); err != nil || info.Provider != tc.provider {
			t.Fatalf("%s: userinfo %d %s", tc.provider, resp.StatusCode, body)
		}
	}
}

func htmlEscapeAttr(s string) string { return strings.ReplaceAll(s, "&", "&amp;") }

// TestProviderPlaceholderAndRules: {http.auth.user.provider} names the
// provider; one provider's allow rule does not admit the other's users,
// and does not apply to them either.
func TestProviderPlaceholderAndRules(t *testing.T) {
	a, _, _ := twoProviders(t, nil)
	// alice at partners has the same sub as alice at staff but is not an
	// admin there: staff's rule is not hers to pass, and partners has none.
	b, resp := chooseAndLogin(t, a, "/", "partners", "alice")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	r := httptestRequestWithCookies(a, b, "/")
	_, up, err := serve(t, a.g, r)
	if err != nil || !up.called {
		t.Fatalf("partners' alice refused: %v", err)
	}
	if v, _ := up.repl.Get("http.auth.user.provider"); v != "partners" {
		t.Fatalf("{http.auth.user.provider} = %v", v)
	}
	// bob at staff is not an admin: staff's rule refuses him.
	b, resp = chooseAndLogin(t, a, "/", "staff", "bob")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	a.seen = nil
	if resp, _ := b.get(a.URL + "/"); resp.StatusCode != http.StatusForbidden || len(a.seen) != 0 {
		t.Fatalf("staff's bob: %d, upstream saw %d requests", resp.StatusCode, len(a.seen))
	}
}

// httptestRequestWithCookies is a navigation to path on a with b's cookies.
func httptestRequestWithCookies(a *app, b *browser, path string) *http.Request {
	r := navigation("GET", a.URL+path)
	u, _ := url.Parse(a.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	return r
}

// TestCallbackMixUp (RFC 9700 §4.4, RFC 9207): a login started at staff
// cannot be finished at partners' callback, with partners' iss, or with
// a code partners issued; no session results.
func TestCallbackMixUp(t *testing.T) {
	a, staff, partners := twoProviders(t, nil)
	start := func(provider string) (*browser, string) {
		b := newBrowser(t)
		resp, _ := b.get(a.URL + "/oauth2/start?provider=" + provider + "&rd=%2Fx")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start %s: %d", provider, resp.StatusCode)
		}
		return b, b.loginAt(resp.Header.Get("Location"), "alice")
	}
	noSession := func(name string, b *browser, callback string) {
		t.Helper()
		resp, _ := b.get(callback)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: %d, want a 4xx", name, resp.StatusCode)
		}
		for _, c := range resp.Cookies() {
			if c.Name == a.g.CookieName && c.MaxAge >= 0 {
				t.Errorf("%s: a session cookie was set", name)
			}
		}
	}

	// At the other provider's callback path, without the iss that partners
	// would not check: the code goes to no token endpoint at all.
	b, cb := start("staff")
	before := [2]uint64{staff.Stats().Token, partners.Stats().Token}
	u, _ := url.Parse(strings.Replace(cb, "/callback/staff", "/callback/partners", 1))
	q := u.Query()
	q.Del("iss")
	u.RawQuery = q.Encode()
	noSession("other callback path", b, u.String())
	if after := [2]uint64{staff.Stats().Token, partners.Stats().Token}; after != before {
		t.Errorf("token requests (staff, partners) went from %v to %v: a code reached a token endpoint", before, after)
	}

	// With the other provider's iss.
	b, cb = start("staff")
	u, _ = url.Parse(cb)
	q = u.Query()
	q.Set("iss", partners.Issuer())
	u.RawQuery = q.Encode()
	noSession("other iss", b, u.String())

	// With a code the other provider issued, on this login's state.
	b, cb = start("staff")
	_, foreign := start("partners")
	fu, _ := url.Parse(foreign)
	u, _ = url.Parse(cb)
	q = u.Query()
	q.Set("code", fu.Query().Get("code"))
	u.RawQuery = q.Encode()
	before = [2]uint64{staff.Stats().Token, partners.Stats().Token}
	noSession("other provider's code", b, u.String())
	if after := [2]uint64{staff.Stats().Token, partners.Stats().Token}; after != [2]uint64{before[0] + 1, before[1]} {
		t.Errorf("token requests (staff, partners) went from %v to %v: want the login's provider asked once, the other never", before, after)
	}

	// An unknown provider, and one asked twice.
	for _, query := range []string{"provider=nope&rd=%2F", "provider=staff&provider=partners"} {
		if resp, _ := newBrowser(t).get(a.URL + "/oauth2/start?" + query); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("start?%s: %d, want 400", query, resp.StatusCode)
		}
	}
}

// TestProvidersConfig: the Caddyfile's provider blocks, and what
// Validate refuses.
func TestProvidersConfig(t *testing.T) {
	var g Gatehouse
	d := caddyfile.NewTestDispenser(`gatehouse {
		provider staff {
			issuer https://staff.example
			client_id a
			client_secret s
			display_name "Staff"
			allow_groups admins
			allow_claim tenant t1 t2
		}
		provider partners {
			issuer https://partners.example
			client_id b
			client_auth private_key_jwt
			client_key {file./k.pem}
		}
		cookie_secret 0123456789abcdef0123456789abcdef
		allow_domains example.com
	}`)
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if len(g.Providers) != 2 || g.Providers[0].Name != "staff" || g.Providers[0].DisplayName != "Staff" ||
		g.Providers[0].AllowClaims["tenant"][1] != "t2" || g.Providers[1].ClientAuth != "private_key_jwt" || g.AllowDomains[0] != "example.com" {
		t.Fatalf("parsed %+v", g)
	}

	x := func(lines ...string) string {
		return "provider x {\n" + strings.Join(lines, "\n") + "\n}\n"
	}
	full := []string{"issuer https://b.example", "client_id c", "client_secret s"}
	for _, tc := range []struct{ name, block, want string }{
		{"flat and named", "issuer https://a.example\n" + x(full...), "with provider blocks, write issuer"},
		{"bad name", strings.Replace(x(full...), "provider x", `provider "Bad Name"`, 1), `name "Bad Name"`},
		{"twice", x(full...) + x(full...), "x is given more than once"},
		{"missing issuer", x(full[1:]...), "provider x: issuer: is required"},
		{"bad rule", x(append(full, "allow_emails nope")...), "provider x: allow_emails"},
	} {
		var g Gatehouse
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n" + tc.block + "\ncookie_secret 0123456789abcdef0123456789abcdef\n}"))
		if err == nil {
			g.applyDefaults()
			err = g.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	var bad Gatehouse
	if err := bad.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n" + x("cookie_secret nope") + "}")); err == nil || !strings.Contains(err.Error(), `provider x: unrecognized subdirective "cookie_secret"`) {
		t.Errorf("a block directive inside provider: %v", err)
	}
}

// TestSeveralProvidersRefreshAndBackchannel: a session is refreshed at its
// own provider; a back-channel logout at one provider's endpoint ends
// that provider's sessions only, though the other has a user with the
// same sub, and the other's endpoint refuses its token.
func TestSeveralProvidersRefreshAndBackchannel(t *testing.T) {
	clock := &testClock{t: time.Now()}
	a, staff, partners := twoProviders(t, func(g *Gatehouse) { g.now = clock.now })
	atStaff, resp := chooseAndLogin(t, a, "/", "staff", "alice")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("staff login: %d", resp.StatusCode)
	}
	atPartners, resp := chooseAndLogin(t, a, "/", "partners", "alice")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("partners login: %d", resp.StatusCode)
	}

	clock.advance(2 * time.Minute) // partners' access token has expired
	if !signedIn(t, a, atPartners) || !signedIn(t, a, atStaff) {
		t.Fatal("a session ended at its refresh")
	}
	if s, p := staff.Stats().Refresh, partners.Stats().Refresh; s != 0 || p != 1 {
		t.Fatalf("refresh grants: staff %d, partners %d; want 0 and 1", s, p)
	}

	token, err := partners.MintLogoutToken(testClientID, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	post := func(path string) int {
		resp, err := http.Post(a.URL+path, "application/x-www-form-urlencoded", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
		return resp.StatusCode
	}
	if code := post("/oauth2/backchannel_logout/staff"); code != http.StatusBadRequest {
		t.Fatalf("partners' logout token at staff's endpoint: %d, want 400", code)
	}
	if !signedIn(t, a, atStaff) || !signedIn(t, a, atPartners) {
		t.Fatal("a refused logout token ended a session")
	}
	if code := post("/oauth2/backchannel_logout/partners"); code != http.StatusOK {
		t.Fatalf("partners' logout token at its endpoint: %d", code)
	}
	if signedIn(t, a, atPartners) || !signedIn(t, a, atStaff) {
		t.Fatal("the logout of partners' alice did not end exactly her session")
	}
}

// TestOAuth2KindWithAllowGroups: an oauth2-kind provider takes its groups
// from its user-info answer, so allow_groups needs no membership API (it
// used to fail at provisioning: "ReadGroups does not apply").
func TestOAuth2KindWithAllowGroups(t *testing.T) {
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{Kind: kindOAuth2, ClientID: testClientID, ClientSecret: testClientSecret,
			AuthorizationEndpoint: "https://sso.example/authorize", TokenEndpoint: "https://sso.example/token",
			UserinfoEndpoint: "https://sso.example/api/me"}
		g.AllowGroups = []string{"staff"}
	})
	if g.idp.readGroups || g.idp.cfg.Issuer != "https://sso.example" {
		t.Fatalf("readGroups %v, issuer %q", g.idp.readGroups, g.idp.cfg.Issuer)
	}
}

// TestSeveralProvidersSignOut: sign-out ends the session at its own
// provider: staff's user goes to staff's end-session endpoint, partners'
// (configured without one) straight to the target; without a session,
// nobody's end-session is visited.
func TestSeveralProvidersSignOut(t *testing.T) {
	a, staff, _ := twoProviders(t, nil)
	signOut := func(b *browser) string {
		r, _ := http.NewRequest("POST", a.URL+"/oauth2/sign_out", strings.NewReader("rd=%2Fbye"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		resp := b.do(r)
		readBody(resp)
		return resp.Header.Get("Location")
	}
	atStaff, _ := chooseAndLogin(t, a, "/", "staff", "alice")
	if loc := signOut(atStaff); !strings.HasPrefix(loc, staff.Issuer()+"/") {
		t.Fatalf("staff's sign-out went to %q, not staff's end-session endpoint", loc)
	}
	atPartners, _ := chooseAndLogin(t, a, "/", "partners", "carol")
	if loc := signOut(atPartners); loc != "/bye" {
		t.Fatalf("partners' sign-out went to %q", loc)
	}
	if loc := signOut(newBrowser(t)); loc != "/bye" {
		t.Fatalf("a sign-out without a session went to %q", loc)
	}
}
