package caddymodule

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/internal/placeholder"
	"github.com/gatehouse-auth/gatehouse/session"
)

// AllowRules are the allow_* rules (see rules): of the whole block, and
// of each provider block.
type AllowRules struct {
	// AllowEmails lets users with one of these e-mails in.
	AllowEmails []string `json:"allow_emails,omitempty"`
	// AllowDomains lets users whose e-mail is in one of these domains in.
	AllowDomains []string `json:"allow_domains,omitempty"`
	// AllowGroups lets members of one of these groups in.
	AllowGroups []string `json:"allow_groups,omitempty"`
	// AllowClaims lets users in whose claim (the key) has one of the
	// values. With any allow_* set, a user must match at least one rule,
	// else 403. Default: none (every authenticated user).
	AllowClaims map[string][]string `json:"allow_claims,omitempty"`
}

// NamedProvider is one of several identity providers of a block
// (Caddyfile `provider NAME { … }`): a provider with its client, the
// label of its button on the sign-in page, and the allow_* rules its
// users must pass besides the block's.
type NamedProvider struct {
	// Name identifies the provider in URLs (path_prefix/start?provider=,
	// path_prefix/callback/NAME) and {http.auth.user.provider}: 1 to 32
	// of a-z, 0-9, "-" and "_". Required.
	Name string `json:"name"`
	// DisplayName labels its sign-in button. Default: Name.
	DisplayName string `json:"display_name,omitempty"`
	ProviderConfig
	AllowRules
}

// providerNamePattern is what a provider name may be: it goes into paths.
var providerNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// resolve replaces placeholders in the rules.
func (a *AllowRules) resolve(r *placeholder.Resolver, prefix string) {
	r.Many(prefix+"allow_emails", a.AllowEmails)
	r.Many(prefix+"allow_domains", a.AllowDomains)
	r.Many(prefix+"allow_groups", a.AllowGroups)
	for _, values := range a.AllowClaims {
		r.Many(prefix+"allow_claim", values)
	}
}

// rules compiles the allow_* rules.
func (a *AllowRules) rules() rules {
	return newRules(a.AllowEmails, a.AllowDomains, a.AllowGroups, a.AllowClaims)
}

// claimNames are the claims the allow_claim rules read.
func (a *AllowRules) claimNames() []string {
	names := make([]string, 0, len(a.AllowClaims))
	for name := range a.AllowClaims {
		names = append(names, name)
	}
	return names
}

// providerConfigs are the block's providers, named, in order: the named
// ones, or else the flat one with the name "".
func (g *Gatehouse) providerConfigs() []*NamedProvider {
	var named []*NamedProvider
	for _, p := range g.Providers {
		if p != nil { // a JSON null: Validate says so
			named = append(named, p)
		}
	}
	if len(named) > 0 {
		return named
	}
	return []*NamedProvider{{ProviderConfig: g.ProviderConfig}}
}

// validateProviders checks the provider blocks: the flat provider
// directives are not mixed in, names are unique and fit a URL.
func (g *Gatehouse) validateProviders(bad badFunc, withClient bool) {
	if len(g.Providers) == 0 {
		g.ProviderConfig.validate(bad, withClient)
		return
	}
	if !reflect.ValueOf(g.ProviderConfig).IsZero() {
		bad("provider", "with provider blocks, write issuer, client_id and every other provider directive inside them, not in the gatehouse block")
	}
	seen := map[string]bool{}
	for i, p := range g.Providers {
		if p == nil {
			bad("provider", "provider %d is empty", i+1)
			continue
		}
		prefix := "provider " + p.Name + ": "
		switch {
		case !providerNamePattern.MatchString(p.Name):
			bad("provider", "name %q must be 1 to 32 of a-z, 0-9, - and _", p.Name)
		case seen[p.Name]:
			bad("provider", "%s is given more than once", p.Name)
		}
		seen[p.Name] = true
		badHere := func(directive, format string, args ...any) { bad(prefix+directive, format, args...) }
		p.ProviderConfig.validate(badHere, withClient)
		validateRules(badHere, p.AllowEmails, p.AllowDomains, p.AllowClaims)
	}
}

// binding is what the block's sessions are bound to: the provider and
// client, or with several providers every one of them by name — adding,
// removing or changing a provider signs everyone out.
func (g *Gatehouse) binding() string {
	if len(g.Providers) == 0 {
		return g.ProviderConfig.binding()
	}
	var b strings.Builder
	b.WriteString("providers")
	for _, p := range g.providerConfigs() {
		b.WriteString("\x00" + p.Name + "\x00" + p.ProviderConfig.binding())
	}
	return b.String()
}

// sessionProvider is the provider that signed sess in, or nil when this
// block has none of that name (a session cannot then be refreshed or
// trusted).
func (g *Gatehouse) sessionProvider(sess *session.Session) *provider {
	if len(g.idps) == 1 {
		if sess.Provider == g.idp.name {
			return g.idp
		}
		return nil
	}
	for _, p := range g.idps {
		if p.name == sess.Provider {
			return p
		}
	}
	return nil
}

// providerNamed is the provider of that name, or nil.
func (g *Gatehouse) providerNamed(name string) *provider {
	for _, p := range g.idps {
		if p.name == name {
			return p
		}
	}
	return nil
}

// errWrongProvider: a callback reached another provider's callback path
// than the one its login was started at (RFC 9700 §4.4, mix-up).
var errWrongProvider = errors.New("gatehouse: the callback is for another provider than the login's")

// signIn starts a login to target: at the one provider, or with several
// by sending the browser to the sign-in page.
func (g *Gatehouse) signIn(w http.ResponseWriter, r *http.Request, target string, hints url.Values) error {
	if len(g.idps) == 1 {
		return g.startLoginTo(w, r, target, g.idp, g.loginParams(hints))
	}
	w.Header().Set("Cache-Control", "no-store")
	redirect(w, g.signInPath+"?rd="+url.QueryEscape(flow.SafeReturnTo(target, r.Host, g.trusted))+hintQuery(hints))
	return nil
}

// loginParams are what a login started here asks for: the login_hint and
// domain_hint of q (flow leaves out one that is too long or not
// printable), and this block's require_acr, so that its users need not
// step up right after signing in — or, when this block has none, the
// acr_values of q (a forward-auth step-up sends the browser here with
// them; asking costs nothing, since whatever acr the session gets, the
// blocks that require one check it).
func (g *Gatehouse) loginParams(q url.Values) flow.LoginParams {
	p := flow.LoginParams{LoginHint: q.Get("login_hint"), DomainHint: q.Get("domain_hint"), ACRValues: g.RequireACR}
	if acr := strings.Fields(q.Get("acr_values")); len(p.ACRValues) == 0 && len(acr) <= maxACRValues {
		for _, v := range acr {
			if len(v) > 128 || strings.ContainsAny(v, "\"\\") || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
				return p
			}
		}
		p.ACRValues = acr
	}
	return p
}

// maxACRValues bounds the acr_values a start URL may ask for.
const maxACRValues = 8

// hintQuery is "&login_hint=…&domain_hint=…" for the hints q has.
func hintQuery(q url.Values) string {
	var b strings.Builder
	for _, name := range []string{"login_hint", "domain_hint"} {
		if v := q.Get(name); v != "" {
			b.WriteString("&" + name + "=" + url.QueryEscape(v))
		}
	}
	return b.String()
}

// serveSignIn answers GET path_prefix/sign_in?rd=URL: with one provider
// it starts the login; with several it shows a page with a button per
// provider, each starting that provider's login back to rd. A login_hint
// or domain_hint goes on to the provider.
func (g *Gatehouse) serveSignIn(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Open the sign-in page with GET."}, errors.New("gatehouse: sign-in method"))
	}
	q := r.URL.Query()
	rd := flow.SafeReturnTo(q.Get("rd"), r.Host, g.trusted)
	if len(g.idps) == 1 {
		return g.startLoginTo(w, r, rd, g.idp, g.loginParams(q))
	}
	w.Header().Set("Cache-Control", "no-store")
	htmlHeaders(w.Header(), "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write([]byte(g.signInPage(rd, hintQuery(q))))
	return nil
}

// signInPage is the provider chooser: a link per provider to its login
// start, with rd; every value escaped.
func (g *Gatehouse) signInPage(rd, hints string) string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`)
	b.WriteString(`<title>Sign in</title>`)
	b.WriteString(`<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}` +
		`a.provider{display:block;margin:.6rem 0;padding:.7rem 1rem;border:1px solid #bbb;border-radius:.4rem;text-decoration:none;color:inherit}a.provider:hover{background:#f3f3f3}</style></head><body>`)
	b.WriteString(`<h1>Sign in</h1><nav>`)
	q := "&rd=" + url.QueryEscape(rd) + hints
	for _, p := range g.idps {
		href := g.startPath + "?provider=" + url.QueryEscape(p.name) + q
		b.WriteString(`<a class="provider" data-provider="` + html.EscapeString(p.name) + `" href="` + html.EscapeString(href) + `">` +
			html.EscapeString(p.display) + `</a>`)
	}
	b.WriteString(`</nav></body></html>` + "\n")
	return b.String()
}

// providerEndpoint returns the handler of a provider's own endpoint at
// path (its callback or back-channel logout), or nil.
func (g *Gatehouse) providerEndpoint(path string) func(http.ResponseWriter, *http.Request) error {
	for _, p := range g.idps {
		switch path {
		case p.callbackPath:
			return func(w http.ResponseWriter, r *http.Request) error { return g.serveCallback(w, r, p) }
		case p.backchannelPath:
			return func(w http.ResponseWriter, r *http.Request) error { return g.serveBackchannelLogout(w, r, p) }
		}
	}
	return nil
}
