//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Several providers in one gatehouse block (env.appMulti): staff is the
// RS256 provider (env.op, client gatehouse-basic, users at example.com),
// partners a provider of its own (env.opPartners, ES256, client
// gatehouse-post with client_secret_post, users at partners.example).
//
// The allow rules, chosen so that each refusal below has one cause:
//
//	block:    allow_emails alice@example.com carol@example.com alice@partners.example carol@partners.example
//	staff:    allow_groups admins                      (alice is the admin, at either provider)
//	partners: allow_claim preferred_username carol dave

// multiProvider is one of appMulti's providers.
type multiProvider struct {
	name   string // in URLs and {http.auth.user.provider}
	label  string // its button on the sign-in page
	url    string // issuer
	client string // gatehouse's client_id there
	op     *process
}

func multiProviders() (staff, partners multiProvider) {
	return multiProvider{"staff", "Staff <b>sign-in</b> & co", env.opURL, "gatehouse-basic", env.op},
		multiProvider{"partners", "partners", env.opPartnersURL, "gatehouse-post", env.opPartners}
}

// choice is a button of the sign-in page: its text and where it leads.
type choice struct {
	Text string `json:"text"`
	Href string `json:"href"`
}

// choices lists the sign-in page's links and buttons (a button's target
// is its form's, with the form's fields).
func (tb *tab) choices() []choice {
	tb.t.Helper()
	raw := eval[[]byte](tb, `[...document.querySelectorAll('a[href], button')].map(e => {
		let href = e.href || '';
		if (e.tagName === 'BUTTON' && e.form) {
			const u = new URL(e.form.action, location.href);
			for (const [k, v] of new FormData(e.form)) u.searchParams.set(k, v);
			if (e.name) u.searchParams.set(e.name, e.value);
			href = u.href;
		}
		return {text: e.textContent.trim(), href};
	})`)
	var out []choice
	if err := json.Unmarshal(raw, &out); err != nil {
		tb.t.Fatalf("the sign-in page's choices %s: %v", raw, err)
	}
	return out
}

// choose clicks the sign-in page's button labelled label.
func (tb *tab) choose(label string) {
	tb.t.Helper()
	if !eval[bool](tb, `(() => {
		const e = [...document.querySelectorAll('a[href], button')].find(e => e.textContent.trim() === `+jsString(label)+`);
		if (!e) return false;
		e.click();
		return true;
	})()`) {
		tb.t.Fatalf("no button %q on the sign-in page: %v", label, tb.choices())
	}
}

// checkChooser checks the sign-in page tb is on: a button per provider,
// labelled (as text, not markup), each starting that provider's login back
// to rd.
func checkChooser(t *testing.T, tb *tab, rd string) {
	t.Helper()
	staff, partners := multiProviders()
	got := tb.choices()
	if len(got) != 2 {
		t.Fatalf("the sign-in page offers %d choices, want one per provider: %+v", len(got), got)
	}
	for i, p := range []multiProvider{staff, partners} {
		c := got[i]
		if c.Text != p.label {
			t.Errorf("button %d says %q, want %q", i+1, c.Text, p.label)
		}
		u, err := url.Parse(c.Href)
		if err != nil || u.Scheme+"://"+u.Host != env.appMulti || u.Path != "/oauth2/start" {
			t.Errorf("button %q leads to %s, want %s/oauth2/start?provider=%s&rd=…", c.Text, c.Href, env.appMulti, p.name)
			continue
		}
		if q := u.Query(); q.Get("provider") != p.name || !sameTarget(q.Get("rd"), rd) {
			t.Errorf("button %q leads to %s: provider %q, rd %q; want %q, %q", c.Text, c.Href, q.Get("provider"), q.Get("rd"), p.name, rd)
		}
	}
	if eval[bool](tb, `!!document.querySelector('b, script')`) {
		t.Errorf("a display name became markup on the sign-in page")
	}
}

// sameTarget: rd names path on appMulti, written as a path or a URL.
func sameTarget(rd, path string) bool {
	return rd == path || rd == env.appMulti+path
}

// upstreamSaw returns the headers of the upstream's requests for uri (the
// request URI appMulti's reverse_proxy sends as X-Original-Uri).
func upstreamSaw(uri string) []http.Header {
	var out []http.Header
	for _, h := range env.upstream.headers() {
		if h.Get("X-Original-Uri") == uri {
			out = append(out, h)
		}
	}
	return out
}

// TestSignInWithEitherProvider: with two providers an unauthenticated
// navigation gets the sign-in page; each provider's button signs its
// user in at that provider alone, back at the original URL, and the
// upstream is told which provider.
func TestSignInWithEitherProvider(t *testing.T) {
	staff, partners := multiProviders()
	for _, c := range []struct {
		p, other            multiProvider
		user, email, groups string
	}{
		{staff, partners, "alice", "alice@example.com", "admins,staff"},
		{partners, staff, "carol", "carol@partners.example", "staff"},
	} {
		t.Run(c.p.name, func(t *testing.T) {
			path := "/reports/2026?sort=date&q=a%2Fb&via=" + c.p.name
			codes := c.p.op.count("grant-client authorization_code " + c.p.client)
			otherGrants := len(c.other.op.lines("grant"))

			// What the browser is sent: a 302 to the sign-in page, with
			// the original URL.
			req, _ := http.NewRequest("GET", env.appMulti+path, nil)
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			resp, err := insecureClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := resp.Location()
			if resp.StatusCode != http.StatusFound || loc == nil || loc.Path != "/oauth2/sign_in" || !sameTarget(loc.Query().Get("rd"), path) {
				t.Fatalf("an unauthenticated navigation: %d, Location %q; want 302 to /oauth2/sign_in?rd=%s", resp.StatusCode, resp.Header.Get("Location"), path)
			}

			tb := newBrowser(t)
			tb.navigate(env.appMulti + path)
			tb.waitLocation(env.appMulti + "/oauth2/sign_in?")
			tb.screenshot("1-sign-in-page")
			checkChooser(t, tb, path)
			tb.choose(c.p.label)
			tb.providerLogin(c.p.url, c.user)
			if loc := tb.waitLocation(env.appMulti); loc != env.appMulti+path {
				t.Fatalf("after login the browser is at %s, want the original %s", loc, env.appMulti+path)
			}
			tb.screenshot("2-protected-page")
			for sel, want := range map[string]string{"#user": c.user, "#email": c.email, "#groups": c.groups, "#path": path} {
				if got := tb.text(sel); got != want {
					t.Errorf("the upstream saw %s = %q, want %q", sel, got, want)
				}
			}
			if !tb.visited(c.p.url+"/auth?") || !tb.visited(env.appMulti+"/oauth2/callback/"+c.p.name+"?") {
				t.Errorf("the login did not go through %s and its callback: %v", c.p.name, tb.documentURLs())
			}
			if tb.visited(c.other.url) {
				t.Errorf("a login at %s visited %s: %v", c.p.name, c.other.name, tb.documentURLs())
			}
			if tb.cookies(env.appMulti)[sessionCookie] == nil {
				t.Errorf("no session cookie %s after the login", sessionCookie)
			}

			// The upstream was told the provider; the providers saw one
			// code redeemed, at the chosen one.
			saw := upstreamSaw(path)
			if len(saw) == 0 {
				t.Fatalf("the upstream saw no request for %s", path)
			}
			for _, h := range saw {
				if h.Get("X-Provider") != c.p.name || h.Get("X-Forwarded-User") != c.user || h.Get("X-Forwarded-Email") != c.email {
					t.Errorf("the upstream saw X-Provider %q, X-Forwarded-User %q, X-Forwarded-Email %q; want %q, %q, %q",
						h.Get("X-Provider"), h.Get("X-Forwarded-User"), h.Get("X-Forwarded-Email"), c.p.name, c.user, c.email)
				}
			}
			if n := c.p.op.count("grant-client authorization_code "+c.p.client) - codes; n != 1 {
				t.Errorf("%s saw %d code grants from %s, want 1", c.p.name, n, c.p.client)
			}
			if l := c.other.op.lines("grant")[otherGrants:]; len(l) > 0 {
				t.Errorf("%s saw token requests during a login at %s: %v", c.other.name, c.p.name, l)
			}

			// Signed in: the next page goes straight to the upstream, with
			// the same provider.
			tb.resetVisits()
			next := "/next?via=" + c.p.name
			tb.navigate(env.appMulti + next)
			tb.waitLocation(env.appMulti + next)
			if tb.visited(env.appMulti+"/oauth2/") || tb.visited(c.p.url) {
				t.Errorf("a signed-in browser was sent to sign in again: %v", tb.documentURLs())
			}
			if saw := upstreamSaw(next); len(saw) == 0 || saw[0].Get("X-Provider") != c.p.name || saw[0].Get("X-Forwarded-User") != c.user {
				t.Errorf("the next page's request reached the upstream as %v", saw)
			}
		})
	}
}

// TestSignInPageEscapes: the sign-in page is HTML with the display names
// and rd as text, whatever they hold.
func TestSignInPageEscapes(t *testing.T) {
	for _, rd := range []string{"/x", `/q?x="><script>alert(1)</script>`, `/q?x='><b>bold</b>`} {
		resp, err := insecureClient.Get(env.appMulti + "/oauth2/sign_in?rd=" + url.QueryEscape(rd))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("sign-in page for rd %q: %d %s", rd, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, markup := range []string{"<b>", "<script", `"><script`, `'><b`} {
			if strings.Contains(string(body), markup) {
				t.Errorf("the sign-in page for rd %q holds %q unescaped:\n%s", rd, markup, body)
			}
		}
		if !strings.Contains(string(body), "/oauth2/start?provider=staff") || !strings.Contains(string(body), "/oauth2/start?provider=partners") {
			t.Errorf("the sign-in page for rd %q does not start both logins:\n%s", rd, body)
		}
	}
}

// TestProviderAllowRules: a provider's allow rule admits only its own
// users, and the block's rule applies to every provider's users too.
// Each user below is refused by exactly one rule; the login itself
// succeeds (the provider redeems the code), the upstream is never reached.
func TestProviderAllowRules(t *testing.T) {
	staff, partners := multiProviders()
	for _, c := range []struct {
		p           multiProvider
		user, email string
		why         string
	}{
		{staff, "carol", "carol@example.com", "staff's allow_groups admins (partners' rule would admit a carol)"},
		{partners, "alice", "alice@partners.example", "partners' allow_claim (staff's rule would admit an admin)"},
		{partners, "dave", "dave@partners.example", "the block's allow_emails (partners' rule admits a dave)"},
	} {
		t.Run(c.p.name+"-"+c.user, func(t *testing.T) {
			path := "/denied?who=" + c.p.name + "-" + c.user
			codes := c.p.op.count("grant-client authorization_code " + c.p.client)
			tb := newBrowser(t)
			tb.navigate(env.appMulti + path)
			tb.waitLocation(env.appMulti + "/oauth2/sign_in?")
			tb.choose(c.p.label)
			tb.providerLogin(c.p.url, c.user)
			tb.waitLocation(env.appMulti + path)
			body := tb.bodyText()
			if !strings.Contains(body, "403") || !strings.Contains(body, "Access denied") || !strings.Contains(body, c.email) {
				t.Fatalf("%s of %s, refused by %s, sees: %s", c.user, c.p.name, c.why, body)
			}
			if n := c.p.op.count("grant-client authorization_code "+c.p.client) - codes; n != 1 {
				t.Errorf("%s saw %d code grants from %s, want 1 (the login itself works)", c.p.name, n, c.p.client)
			}
			tb.do(chromedp.Reload())
			tb.waitLocation(env.appMulti + path)
			if body := tb.bodyText(); !strings.Contains(body, "403") {
				t.Errorf("reloaded, %s of %s sees: %s", c.user, c.p.name, body)
			}
			if saw := upstreamSaw(path); len(saw) > 0 {
				t.Fatalf("the upstream was reached by %s of %s (refused by %s): %v", c.user, c.p.name, c.why, saw)
			}
		})
	}
}

// agent stands in for a browser where a test forges or moves callbacks:
// net/http with a cookie jar, following no redirect by itself.
type agent struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newAgent(t *testing.T) *agent {
	jar, _ := cookiejar.New(nil)
	return &agent{t: t, jar: jar, c: &http.Client{
		Timeout:       insecureClient.Timeout,
		Transport:     insecureClient.Transport,
		CheckRedirect: insecureClient.CheckRedirect,
		Jar:           jar,
	}}
}

// do sends a request and reads the answer; a redirect's Location comes
// back resolved.
func (a *agent) do(method, u string, form url.Values) (status int, location, body string) {
	a.t.Helper()
	var r io.Reader
	if form != nil {
		r = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if l, err := resp.Location(); err == nil {
		location = l.String()
	}
	return resp.StatusCode, location, string(b)
}

func (a *agent) get(u string) (status int, location, body string) {
	a.t.Helper()
	return a.do("GET", u, nil)
}

// startLogin starts p's login back to rd, and returns where gatehouse
// sends the browser: p's authorization endpoint.
func (a *agent) startLogin(p multiProvider, rd string) string {
	a.t.Helper()
	status, loc, body := a.get(env.appMulti + "/oauth2/start?provider=" + p.name + "&rd=" + url.QueryEscape(rd))
	if status != http.StatusFound && status != http.StatusSeeOther || !strings.HasPrefix(loc, p.url+"/auth?") {
		a.t.Fatalf("starting a login at %s: %d, Location %q, %s", p.name, status, loc, body)
	}
	return loc
}

// signInAt goes through provider's login (and consent) pages from its
// authorization endpoint as user, and returns where the provider sends
// the browser back to: the callback URL, not requested.
func (a *agent) signInAt(auth, provider, user string) string {
	a.t.Helper()
	u := auth
	for range 12 {
		if !strings.HasPrefix(u, provider+"/") {
			return u
		}
		status, loc, body := a.get(u)
		switch {
		case status >= 300 && status < 400 && loc != "":
		case status == http.StatusOK && strings.Contains(body, `name="prompt" value="login"`):
			status, loc, body = a.do("POST", u, url.Values{"prompt": {"login"}, "login": {user}, "password": {"any password"}})
		case status == http.StatusOK && strings.Contains(body, `name="prompt" value="consent"`):
			status, loc, body = a.do("POST", u, url.Values{"prompt": {"consent"}})
		default:
			a.t.Fatalf("at the provider, %s: %d %s", u, status, body)
		}
		if loc == "" {
			a.t.Fatalf("the provider did not redirect from %s: %d %s", u, status, body)
		}
		u = loc
	}
	a.t.Fatalf("the provider's login did not end; last at %s", u)
	return ""
}

// login signs user in at p and returns the callback URL, not requested.
func (a *agent) login(p multiProvider, rd, user string) string {
	a.t.Helper()
	cb := a.signInAt(a.startLogin(p, rd), p.url, user)
	if !strings.HasPrefix(cb, env.appMulti+"/oauth2/callback/"+p.name+"?") {
		a.t.Fatalf("%s sent the browser back to %s, want the callback of %s", p.name, cb, p.name)
	}
	return cb
}

// session is the agent's session cookie at appMulti, or "".
func (a *agent) session() string {
	u, _ := url.Parse(env.appMulti + "/")
	for _, c := range a.jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// withQuery returns u with query values replaced.
func withQuery(t *testing.T, u string, set map[string]string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	for k, v := range set {
		q.Set(k, v)
	}
	p.RawQuery = q.Encode()
	return p.String()
}

// expectCallbackRefused checks a callback's answer: a 4xx, no session, nothing
// at the upstream for rd.
func expectCallbackRefused(t *testing.T, a *agent, what string, status int, body, rd string) {
	t.Helper()
	if status < 400 || status > 499 {
		t.Errorf("%s: %d, want a 4xx refusal; body: %s", what, status, body)
	}
	if s := a.session(); s != "" {
		t.Errorf("%s created a session", what)
	}
	if saw := upstreamSaw(rd); len(saw) > 0 {
		t.Errorf("%s: the upstream was reached: %v", what, saw)
	}
}

// grantsSince returns p's grant log lines from the nth on.
func grantsSince(p *process, n int) []string {
	return p.lines("grant")[n:]
}

// TestCallbackWithAnotherProvidersIss: a staff login's callback that
// carries partners' issuer is refused before the code is redeemed
// (RFC 9207): neither provider sees a token request.
func TestCallbackWithAnotherProvidersIss(t *testing.T) {
	staff, partners := multiProviders()
	const rd = "/iss-mixup?x=1"
	a := newAgent(t)
	cb := a.login(staff, rd, "alice")
	if iss := mustQuery(t, cb).Get("iss"); iss != staff.url {
		t.Fatalf("staff's callback carries iss %q, want %q (RFC 9207)", iss, staff.url)
	}
	staffGrants, partnersGrants := len(staff.op.lines("grant")), len(partners.op.lines("grant"))
	status, _, body := a.get(withQuery(t, cb, map[string]string{"iss": partners.url}))
	expectCallbackRefused(t, a, "staff's callback with partners' iss", status, body, rd)
	if l := grantsSince(staff.op, staffGrants); len(l) > 0 {
		t.Errorf("the code went to staff's token endpoint though the callback's iss was partners': %v", l)
	}
	if l := grantsSince(partners.op, partnersGrants); len(l) > 0 {
		t.Errorf("partners saw token requests: %v", l)
	}
}

// TestCodeFromAnotherProvider: the mix-up attacks of RFC 9700 §4.4.
func TestCodeFromAnotherProvider(t *testing.T) {
	staff, partners := multiProviders()

	// A code partners issued, brought to staff's callback with the state
	// of the victim's staff login (and staff's iss): it is not staff's
	// code, so no session; and it never reaches partners.
	t.Run("partners-code-with-staff-state", func(t *testing.T) {
		attacker := newAgent(t)
		const attackerRd = "/mixup-control"
		cbPartners := attacker.login(partners, attackerRd, "carol")
		code := mustQuery(t, cbPartners).Get("code")

		victim := newAgent(t)
		const rd = "/mixup-victim"
		state := mustQuery(t, victim.startLogin(staff, rd)).Get("state")
		if code == "" || state == "" {
			t.Fatalf("code %q, state %q", code, state)
		}
		staffCodes := staff.op.count("grant-client authorization_code " + staff.client)
		partnersGrants := len(partners.op.lines("grant"))
		forged := env.appMulti + "/oauth2/callback/staff?" + url.Values{"code": {code}, "state": {state}, "iss": {staff.url}}.Encode()
		status, _, body := victim.get(forged)
		expectCallbackRefused(t, victim, "partners' code at staff's callback", status, body, rd)
		if n := staff.op.count("grant-client authorization_code "+staff.client) - staffCodes; n != 0 {
			t.Errorf("staff redeemed %d codes for partners' code", n)
		}
		if l := grantsSince(partners.op, partnersGrants); len(l) > 0 {
			t.Errorf("partners' code went to partners from staff's callback: %v", l)
		}

		// The code was good and is still unspent: at its own callback it
		// signs carol in, at partners.
		status, loc, body := attacker.get(cbPartners)
		if status != http.StatusFound && status != http.StatusSeeOther || loc != env.appMulti+attackerRd {
			t.Fatalf("partners' callback at its own path: %d, Location %q, %s", status, loc, body)
		}
		if attacker.session() == "" {
			t.Fatal("no session after partners' own callback")
		}
		if l := grantsSince(partners.op, partnersGrants); !slices.Contains(l, "grant-client authorization_code "+partners.client) {
			t.Errorf("partners did not redeem its code at its own callback: %v", l)
		}
		if status, _, body := attacker.get(env.appMulti + attackerRd); status != http.StatusOK {
			t.Fatalf("signed in with partners: %d %s", status, body)
		}
		if saw := upstreamSaw(attackerRd); len(saw) != 1 || saw[0].Get("X-Provider") != "partners" || saw[0].Get("X-Forwarded-User") != "carol" {
			t.Errorf("the upstream saw %v for carol of partners", saw)
		}
	})

	// partners' whole callback (its code, state, iss and login cookie)
	// sent to staff's callback path: the login was partners', so it is
	// refused before any token request.
	t.Run("partners-callback-at-staff-path", func(t *testing.T) {
		a := newAgent(t)
		const rd = "/mixup-path"
		cb := a.login(partners, rd, "carol")
		moved := strings.Replace(cb, "/oauth2/callback/partners?", "/oauth2/callback/staff?", 1)
		staffGrants, partnersGrants := len(staff.op.lines("grant")), len(partners.op.lines("grant"))
		status, _, body := a.get(moved)
		expectCallbackRefused(t, a, "partners' callback at staff's path", status, body, rd)
		if l := grantsSince(staff.op, staffGrants); len(l) > 0 {
			t.Errorf("staff saw token requests: %v", l)
		}
		if l := grantsSince(partners.op, partnersGrants); len(l) > 0 {
			t.Errorf("partners saw token requests for a callback at staff's path: %v", l)
		}
	})
}

// TestStartWithAProvider: /oauth2/start?provider= starts that provider's
// login; an unknown name is a 400 that starts nothing; rd is checked like
// any return-to.
func TestStartWithAProvider(t *testing.T) {
	_, partners := multiProviders()
	for _, name := range []string{"nope", "Staff", "<script>alert(1)</script>"} {
		a := newAgent(t)
		status, loc, body := a.get(env.appMulti + "/oauth2/start?provider=" + url.QueryEscape(name) + "&rd=%2Fx")
		if status != http.StatusBadRequest || loc != "" {
			t.Errorf("start with provider %q: %d, Location %q; want 400", name, status, loc)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("start with provider %q: the error page holds markup: %s", name, body)
		}
		u, _ := url.Parse(env.appMulti + "/oauth2/callback/staff")
		for _, c := range a.jar.Cookies(u) {
			t.Errorf("start with provider %q set cookie %s", name, c.Name)
		}
	}

	// An off-site rd: the login works and ends on this site's front page.
	a := newAgent(t)
	cb := a.login(partners, "https://evil.example/steal?x=1", "carol")
	status, loc, body := a.get(cb)
	if status != http.StatusFound && status != http.StatusSeeOther || loc != env.appMulti+"/" {
		t.Fatalf("a login started with an off-site rd ends at %d, Location %q; want %s/: %s", status, loc, env.appMulti, body)
	}
	if a.session() == "" {
		t.Fatal("no session")
	}
}

func mustQuery(t *testing.T, u string) url.Values {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query()
}
