package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// badFunc records a configuration error of a sub-directive.
type badFunc func(directive, format string, args ...any)

// Validate checks the configuration; every message names the
// sub-directive at fault and never shows a secret. It is pure: Provision
// runs it before building anything, and Caddy runs it again.
func (g *Gatehouse) Validate() error {
	var errs []error
	bad := func(directive, format string, args ...any) {
		errs = append(errs, fmt.Errorf("gatehouse: %s: %s", directive, fmt.Sprintf(format, args...)))
	}
	apiOnly := g.Bearer != nil && g.Bearer.Only
	g.validateProviders(bad, !apiOnly)
	g.validatePaths(bad)
	g.validateCookies(bad, apiOnly)
	g.validateSessions(bad, apiOnly)
	validateRules(bad, g.AllowEmails, g.AllowDomains, g.AllowClaims)
	for _, v := range g.RequireACR {
		if v == "" || strings.ContainsAny(v, " \t\r\n\"\\") {
			bad("require_acr", "%q is not an acr value (no spaces, quotes or backslashes)", v)
		}
	}
	g.validateHeaders(bad)
	if g.Bearer != nil {
		first := &g.providerConfigs()[0].ProviderConfig
		if first.plain() && g.Bearer.Issuer == "" {
			bad("bearer issuer", "is required: the first provider (kind %s) issues no JWT access tokens", first.Kind)
		}
		g.Bearer.validate(bad, first.Issuer)
		g.validateAPITokens(bad)
	}
	if g.Assertion != nil {
		g.Assertion.validate(bad)
	}
	if g.Store != nil {
		g.Store.validate(bad)
		if apiOnly {
			bad("store", "bearer { only } keeps no sessions: remove the store")
		}
	}
	return errors.Join(errs...)
}

// validatePaths checks path_prefix, trusted_redirect_hosts and
// post_logout_redirect.
func (g *Gatehouse) validatePaths(bad badFunc) {
	if p := g.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p || strings.ContainsAny(p, "?#%*{} ")) {
		bad("path_prefix", "must be a clean absolute path like /oauth2, not %q", p)
	}
	for _, p := range g.PublicPaths {
		if p == "" || p[0] != '/' && p[0] != '*' || strings.ContainsAny(p, " \t?#") {
			bad("public_paths", "%q is not a path pattern like /health, /assets/* or *.css", p)
		}
		if p == "*" || p == "/*" {
			bad("public_paths", "%q makes every path public; use unauthenticated allow", p)
		}
	}
	if _, err := flow.NewHostPatterns(g.TrustedRedirectHosts); err != nil {
		bad("trusted_redirect_hosts", "%v", err)
	}
	if p := g.PostLogoutRedirect; p != "" && !strings.HasPrefix(p, "/") {
		if err := flow.CheckEndpointURL(p); err != nil {
			bad("post_logout_redirect", "must be a path like / or an absolute http(s) URL: %v", err)
		}
	} else if p != "" && (strings.HasPrefix(p, "//") || strings.Contains(p, "\\")) {
		bad("post_logout_redirect", "%q is not a path on this site", p)
	}
}

// validateCookies checks the cookie_* sub-directives.
func (g *Gatehouse) validateCookies(bad badFunc, apiOnly bool) {
	if len(g.CookieSecrets) == 0 && !apiOnly {
		bad("cookie_secret", "is required: one or more random secrets of at least %d bytes (openssl rand -base64 32)", session.MinSecretLength)
	}
	for i, s := range g.CookieSecrets {
		if len(s) < session.MinSecretLength {
			bad("cookie_secret", "secret %d is %d bytes; each must be at least %d", i+1, len(s), session.MinSecretLength)
		}
	}
	if g.CookieName != "" {
		if err := session.CheckCookieName(g.CookieName); err != nil {
			bad("cookie_name", "%v", err)
		}
	}
	if err := session.CheckCookieDomain(g.CookieDomain); err != nil {
		bad("cookie_domain", "%v", err)
	}
	if _, ok := sameSites[g.CookieSameSite]; !ok && g.CookieSameSite != "" {
		bad("cookie_samesite", "must be lax, strict or none, not %q", g.CookieSameSite)
	}
	if g.CookieSameSite == "none" && g.CookieInsecure {
		bad("cookie_samesite", "none requires Secure cookies; remove cookie_insecure")
	}
	if g.CookieInsecure && (strings.HasPrefix(g.CookieName, "__Host-") || strings.HasPrefix(g.CookieName, "__Secure-")) {
		bad("cookie_insecure", "cannot be used with a __Host- or __Secure- cookie_name")
	}
	if strings.HasPrefix(g.CookieName, "__Host-") && g.CookieDomain != "" {
		bad("cookie_domain", "cannot be used with a __Host- cookie_name")
	}
}

// validateSessions checks the session lifecycle and what an
// unauthenticated request gets.
func (g *Gatehouse) validateSessions(bad badFunc, apiOnly bool) {
	if g.SessionCacheSize < -1 {
		bad("session_cache_size", "must be a number of entries, 0 for the default or -1 for none")
	}
	if g.SessionLifetime != 0 && time.Duration(g.SessionLifetime) < time.Minute {
		bad("session_lifetime", "must be at least 1m")
	}
	if d := time.Duration(g.SessionIdleTimeout); d != 0 && (d < time.Minute || g.SessionLifetime != 0 && d >= time.Duration(g.SessionLifetime)) {
		bad("session_idle_timeout", "must be at least 1m and shorter than session_lifetime")
	}
	if d := time.Duration(g.RefreshBefore); d < 0 || d > 24*time.Hour {
		bad("refresh_before", "must be between 0 and 24h")
	}
	if _, ok := unauthenticatedActions[g.Unauthenticated]; !ok {
		bad("unauthenticated", "must be redirect, 401 or allow, not %q", g.Unauthenticated)
	} else if apiOnly && g.Unauthenticated == "redirect" {
		bad("unauthenticated", "redirect contradicts bearer { only }")
	}
}

// validateHeaders checks `header` and pass_authorization.
func (g *Gatehouse) validateHeaders(bad badFunc) {
	canonical := map[string]bool{}
	for name, claim := range g.Headers {
		if err := checkHeaderName(name); err != nil {
			bad("header", "%v", err)
		}
		if c := http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-")); canonical[c] {
			bad("header", "%s is given more than once", name)
		} else {
			canonical[c] = true
		}
		if claim == "" || strings.ContainsAny(claim, " \t{}") {
			bad("header", "%s: invalid claim name %q", name, claim)
		}
	}
	if g.PassAuthorization && g.Bearer != nil {
		bad("pass_authorization", "cannot be combined with bearer: a bearer request's Authorization header is passed as it is")
	}
}

// validate checks the bearer block; issuer is the gateway's.
func (b *BearerConfig) validate(bad badFunc, issuer string) {
	if len(b.Audiences) == 0 || slices.Contains(b.Audiences, "") {
		bad("bearer audience", "is required: the audience your API's tokens are issued for")
	}
	if b.Issuer != "" {
		if err := flow.CheckEndpointURL(b.Issuer); err != nil {
			bad("bearer issuer", "%v", err)
		}
		if b.Issuer != issuer && b.JWKSURI == "" && b.JWKSFile == "" {
			bad("bearer jwks_uri", "is required when the bearer issuer is not the gateway's issuer (or jwks_file)")
		}
	}
	if b.JWKSURI != "" {
		if err := flow.CheckEndpointURL(b.JWKSURI); err != nil {
			bad("bearer jwks_uri", "%v", err)
		}
		if b.JWKSFile != "" {
			bad("bearer jwks_file", "cannot be combined with jwks_uri")
		}
	}
	for _, a := range b.Algorithms {
		if !slices.Contains(verify.AsymmetricAlgorithms, a) {
			bad("bearer algorithms", "%q is not one of %s", a, strings.Join(verify.AsymmetricAlgorithms, " "))
		}
	}
	if d := time.Duration(b.ClockSkew); d < 0 || d > 10*time.Minute {
		bad("bearer clock_skew", "must be between 0 and 10m")
	}
	if b.CacheSize < 0 {
		bad("bearer cache_size", "must not be negative")
	}
	if b.Resource != "" {
		if err := checkResource(b.Resource); err != nil {
			bad("bearer resource", "%v", err)
		}
	}
}
