package caddymodule

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/placeholder"
	"github.com/gatehouse-auth/gatehouse/session"
)

// mode is what a gatehouse block authenticates.
type mode uint8

const (
	// modeLogin: browser sessions (and bearer tokens, with a bearer block).
	modeLogin mode = iota
	// modeAPI: bearer { only } — bearer tokens alone; no sessions, no logins.
	modeAPI
)

// unauthenticatedAction is the parsed `unauthenticated`.
type unauthenticatedAction uint8

const (
	// unauthDefault: browser navigations log in, other requests get 401.
	unauthDefault unauthenticatedAction = iota
	unauthRedirect
	unauth401
	unauthAllow
)

var unauthenticatedActions = map[string]unauthenticatedAction{
	"": unauthDefault, "redirect": unauthRedirect, "401": unauth401, "allow": unauthAllow,
}

var sameSites = map[string]http.SameSite{
	"lax": http.SameSiteLaxMode, "strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode,
}

// resolvePlaceholders resolves every string field once, at provisioning.
func (g *Gatehouse) resolvePlaceholders() error {
	r := placeholder.NewResolver("gatehouse")
	g.ProviderConfig.resolve(r)
	for _, p := range g.Providers {
		if p != nil {
			prefix := "provider " + p.Name + ": "
			r.One(prefix+"display_name", &p.DisplayName)
			p.ProviderConfig.resolveAs(r, prefix)
			p.AllowRules.resolve(r, prefix)
		}
	}
	r.One("path_prefix", &g.PathPrefix)
	r.Secrets("cookie_secret", g.CookieSecrets)
	r.One("cookie_name", &g.CookieName)
	r.One("cookie_domain", &g.CookieDomain)
	r.One("cookie_samesite", &g.CookieSameSite)
	r.Many("trusted_redirect_hosts", g.TrustedRedirectHosts)
	r.Many("public_paths", g.PublicPaths)
	r.One("unauthenticated", &g.Unauthenticated)
	r.One("post_logout_redirect", &g.PostLogoutRedirect)
	g.AllowRules.resolve(r, "")
	r.Many("require_acr", g.RequireACR)
	for name, claim := range g.Headers {
		r.One("header", &claim)
		g.Headers[name] = claim
	}
	if g.Bearer != nil {
		g.Bearer.resolve(r)
	}
	if g.Store != nil {
		g.Store.resolve(r)
	}
	if a := g.Assertion; a != nil {
		for _, f := range []stringField{{"assertion header", &a.Header}, {"assertion audience", &a.Audience}, {"assertion signing_key", &a.SigningKey}, {"assertion algorithm", &a.Algorithm}} {
			r.One(f.name, f.value)
		}
		r.Many("assertion claims", a.Claims)
	}
	return r.Err()
}

// resolve replaces placeholders in the bearer block's values.
func (b *BearerConfig) resolve(r *placeholder.Resolver) {
	for _, f := range []stringField{{"bearer issuer", &b.Issuer}, {"bearer jwks_uri", &b.JWKSURI}, {"bearer jwks_file", &b.JWKSFile}, {"bearer resource", &b.Resource}, {"bearer dpop", &b.DPoP}} {
		r.One(f.name, f.value)
	}
	r.Many("bearer audience", b.Audiences)
	r.Many("bearer algorithms", b.Algorithms)
	r.Many("bearer required_scopes", b.RequiredScopes)
	if b.Introspection != nil {
		r.One("bearer introspection endpoint", &b.Introspection.Endpoint)
	}
}

// applyDefaults fills the documented defaults, so JSON and Caddyfile
// configs behave alike.
func (g *Gatehouse) applyDefaults() {
	if len(g.Providers) == 0 {
		g.ProviderConfig.applyDefaults()
	}
	for _, p := range g.Providers {
		if p != nil {
			p.ProviderConfig.applyDefaults()
		}
	}
	setDefault(&g.PathPrefix, "/oauth2")
	if g.CookieDomain == "" && !g.CookieInsecure {
		// A __Host- cookie cannot be set or shadowed by a sibling
		// subdomain (cookie tossing, review SA2-18).
		setDefault(&g.CookieName, session.DefaultHostName)
	}
	setDefault(&g.CookieName, session.DefaultName)
	setDefault(&g.CookieSameSite, "lax")
	setDefault(&g.PostLogoutRedirect, "/")
	if g.SessionLifetime == 0 {
		g.SessionLifetime = caddy.Duration(session.DefaultLifetime)
	}
	if g.RefreshBefore == 0 {
		g.RefreshBefore = caddy.Duration(flow.DefaultRefreshBefore)
	}
}

func setDefault(v *string, d string) {
	if *v == "" {
		*v = d
	}
}

// parse turns the checked config into what the request path reads: typed
// enums, paths, host patterns, rules, and the headers to strip and set.
func (g *Gatehouse) parse() {
	g.mode = modeLogin
	if g.Bearer != nil && g.Bearer.Only {
		g.mode = modeAPI
	}
	g.unauthenticated = unauthenticatedActions[g.Unauthenticated]
	g.sameSite = sameSites[g.CookieSameSite]
	g.signOutPath = g.PathPrefix + "/sign_out"
	g.userinfoPath = g.PathPrefix + "/userinfo"
	g.forwardAuthPath = g.PathPrefix + "/auth"
	g.startPath = g.PathPrefix + "/start"
	g.signInPath = g.PathPrefix + "/sign_in"
	g.trusted, _ = flow.NewHostPatterns(g.TrustedRedirectHosts) // checked by Validate
	g.public = publicPaths{slices.Clone(g.PublicPaths)}
	g.rules = g.AllowRules.rules()
	g.strip = slices.Clone(identityHeaders)
	if g.PassAuthorization {
		// gatehouse sets it: a client's own never reaches the upstream.
		g.strip = append(g.strip, "Authorization")
	}
	for name, claim := range g.Headers {
		name = http.CanonicalHeaderKey(name)
		g.headerMap = append(g.headerMap, headerMapping{header: name, claim: claim})
		g.strip = append(g.strip, name)
	}
	slices.SortFunc(g.headerMap, func(a, b headerMapping) int { return strings.Compare(a.header, b.header) })
	for _, m := range g.headerMap {
		g.claimsNeeded = append(g.claimsNeeded, m.claim)
	}
	g.claimsNeeded = append(g.claimsNeeded, g.AllowRules.claimNames()...)
	if len(g.RequireACR) > 0 {
		g.claimsNeeded = append(g.claimsNeeded, "acr")
	}
	for _, p := range g.providerConfigs() {
		g.claimsNeeded = append(g.claimsNeeded, p.AllowRules.claimNames()...)
	}
	if g.Assertion != nil {
		g.strip = append(g.strip, http.CanonicalHeaderKey(cmp.Or(g.Assertion.Header, defaultAssertionHeader)))
		g.claimsNeeded = append(g.claimsNeeded, g.Assertion.Claims...)
		g.jwksPath = g.PathPrefix + "/jwks.json"
	}
	slices.Sort(g.claimsNeeded)
	g.claimsNeeded = slices.Compact(g.claimsNeeded)
}

// publicPaths are the public_paths, matched like Caddy's path matcher
// (case-insensitive, on the cleaned path).
type publicPaths struct{ m caddyhttp.MatchPath }

// match reports whether r is for a public path.
func (p publicPaths) match(r *http.Request) bool {
	return len(p.m) > 0 && p.m.Match(r)
}

// Provision prepares the patterns.
func (p publicPaths) Provision(ctx caddy.Context) error { return p.m.Provision(ctx) }

// claimSet is the set of further claims identities keep: the session
// group's (every block of the login) with sessions, this block's alone
// in bearer { only } mode.
func (g *Gatehouse) claimSet() *identity.ClaimSet {
	if g.group != nil {
		return g.group.claims
	}
	s := &identity.ClaimSet{}
	s.Add(g.claimsNeeded...)
	return s
}
