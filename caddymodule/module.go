package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

func init() {
	caddy.RegisterModule(Gatehouse{})
}

// Gatehouse is an OpenID Connect authentication gateway: it signs browser
// users in with the authorization code flow (PKCE, state, nonce) at an
// OpenID provider, keeps their session in sealed cookies and hands their
// identity to the next handler as headers and placeholders, after removing
// any identity headers the client sent.
//
// Every string field accepts Caddy placeholders such as {env.X} and
// {file./path}, resolved once at provisioning.
type Gatehouse struct {
	// Issuer is the OpenID provider's issuer URL, exactly as in its tokens.
	// Its endpoints come from Issuer/.well-known/openid-configuration.
	// Required.
	Issuer string `json:"issuer,omitempty"`
	// AuthorizationEndpoint overrides the discovered authorization endpoint.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	// TokenEndpoint overrides the discovered token endpoint.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// UserinfoEndpoint overrides the discovered userinfo endpoint.
	UserinfoEndpoint string `json:"userinfo_endpoint,omitempty"`
	// JWKSURI overrides the discovered jwks_uri. When the authorization
	// and token endpoints and the jwks_uri are all given, discovery is skipped.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// EndSessionEndpoint overrides the discovered end_session_endpoint.
	EndSessionEndpoint string `json:"end_session_endpoint,omitempty"`

	// ClientID of the confidential client registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret of that client. Required; use {env.*} or {file.*}.
	ClientSecret string `json:"client_secret,omitempty"`
	// ClientAuth is how the client authenticates at the token endpoint:
	// "basic" (client_secret_basic) or "post" (client_secret_post).
	// Default: "basic".
	ClientAuth string `json:"client_auth,omitempty"`
	// Scopes requested at login; must include "openid".
	// Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// Prompt values sent at login (none, login, consent, select_account).
	// Providers such as oidc-provider and Google issue refresh tokens for
	// offline_access only with "consent". Default: none sent.
	Prompt []string `json:"prompt,omitempty"`

	// PathPrefix is where gatehouse's own endpoints live: PathPrefix +
	// "/callback". Default: "/oauth2".
	PathPrefix string `json:"path_prefix,omitempty"`

	// CookieSecrets seal the session and login cookies: at least 32 bytes
	// each. The first seals; all unseal, for rotation. Required.
	CookieSecrets []string `json:"cookie_secrets,omitempty"`
	// CookieName of the session cookie (chunks add _1, _2, …).
	// Default: "_gatehouse".
	CookieName string `json:"cookie_name,omitempty"`
	// CookieDomain of the session cookie. Default: host-only.
	CookieDomain string `json:"cookie_domain,omitempty"`
	// CookieSameSite of the session cookie: "lax", "strict" or "none".
	// Default: "lax".
	CookieSameSite string `json:"cookie_samesite,omitempty"`
	// CookieInsecure drops the Secure attribute, for plain-HTTP
	// development only. Default: false.
	CookieInsecure bool `json:"cookie_insecure,omitempty"`
	// SessionLifetime is the absolute session lifetime since login.
	// Default: 168h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// SessionCacheSize bounds the decoded-session cache (entries of a few
	// KB each); 0 selects 4096, -1 turns it off.
	SessionCacheSize int `json:"session_cache_size,omitempty"`

	// UserClaim names the claim that identifies the user upstream
	// (X-Forwarded-User, {http.auth.user.id}). Default: "sub".
	UserClaim string `json:"user_claim,omitempty"`
	// EmailClaim names the claim carrying the e-mail. Default: "email".
	EmailClaim string `json:"email_claim,omitempty"`
	// GroupsClaim names the claim carrying the groups; a dotted name
	// ("realm_access.roles") reaches into nested objects. Default: "groups".
	GroupsClaim string `json:"groups_claim,omitempty"`

	// TrustedRedirectHosts are hosts, besides the request's own, allowed
	// as post-login targets: "app.example.com", "app.example.com:8443" or
	// "*.example.com".
	TrustedRedirectHosts []string `json:"trusted_redirect_hosts,omitempty"`

	// Unauthenticated is what a request without a session gets: "redirect"
	// (to the provider's login), "401", or "allow" (continue anonymously,
	// without identity headers). Default: browser navigations are
	// redirected, other requests (XHR, JSON, non-GET) get 401.
	Unauthenticated string `json:"unauthenticated,omitempty"`

	// RefreshBefore: a session whose access token expires within
	// this is refreshed (with its refresh token) before the request is
	// served. Default: 1m.
	RefreshBefore caddy.Duration `json:"refresh_before,omitempty"`
	// PostLogoutRedirect is where sign-out sends the user: a path on the
	// site or an absolute URL (register it at the provider as a post-logout
	// redirect URI). Default: "/".
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// AllowEmails lets users with one of these e-mails in (see rules).
	AllowEmails []string `json:"allow_emails,omitempty"`
	// AllowDomains lets users whose e-mail is in one of these domains in.
	AllowDomains []string `json:"allow_domains,omitempty"`
	// AllowGroups lets members of one of these groups in.
	AllowGroups []string `json:"allow_groups,omitempty"`
	// AllowClaims lets users in whose claim (the key) has one of the
	// values. With any allow_* set, a user must match at least one rule,
	// else 403. Default: none (every authenticated user).
	AllowClaims map[string][]string `json:"allow_claims,omitempty"`

	// Headers forwards more claims upstream: header name → claim name.
	// The headers are also deleted from every client request.
	Headers map[string]string `json:"headers,omitempty"`
	// PassAccessToken sets X-Forwarded-Access-Token to the access token.
	PassAccessToken bool `json:"pass_access_token,omitempty"`
	// PassAuthorization sets `Authorization: Bearer <access token>`
	// upstream, replacing the client's.
	PassAuthorization bool `json:"pass_authorization,omitempty"`

	// Bearer, when set, validates `Authorization: Bearer` JWTs.
	Bearer *BearerConfig `json:"bearer,omitempty"`

	logger       *zap.Logger
	provider     *flow.Provider
	client       *flow.Client         // nil with bearer `only`
	store        *session.CookieStore // nil with bearer `only`
	bearer       *flow.Bearer
	refresher    *flow.Refresher
	trusted      flow.HostPatterns
	rules        rules
	headerMap    []headerMapping // sorted by header name
	strip        []string        // headers deleted from every request
	callbackPath string
	signOutPath  string
	now          func() time.Time
	claimsNeeded []string // claims this block maps (header) or checks (allow_claim)
	registered   bool     // claimsNeeded were added to sessionClaims

	keys       *keyRegistry // held in keyRegistries under Issuer while provisioned
	refreshKey string       // held in refreshGroups while provisioned
}

// BearerConfig enables bearer-token validation for APIs: requests with
// `Authorization: Bearer <JWT>` are authenticated by the token alone.
type BearerConfig struct {
	// Audiences: a token's aud must contain one of them. Required.
	Audiences []string `json:"audiences,omitempty"`
	// Issuer a token must name. Default: the gateway's issuer.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURI holds the signing keys. Default: from discovery. Required
	// when Issuer is not the gateway's issuer.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// Algorithms allowed: RS256/384/512, PS256/384/512, ES256/384/512,
	// EdDSA. Default: what discovery advertises, intersected with these.
	Algorithms []string `json:"algorithms,omitempty"`
	// RequiredScopes a token must all carry (in `scope` or `scp`), else 403.
	RequiredScopes []string `json:"required_scopes,omitempty"`
	// ClockSkew tolerated on exp, nbf and iat. Default: 30s.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`
	// Only marks the site as an API: no login redirects, no cookies; a
	// request without a token gets 401. Default: false.
	Only bool `json:"only,omitempty"`
	// CacheSize bounds the verified-token cache (entries). Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`
}

// keyRegistries shares JWKS caches between handler instances and across
// config reloads: one *keyRegistry per issuer, holding one
// verify.RemoteKeySet per jwks_uri. A handler takes its issuer's registry
// when it is provisioned — the new config does so while the old one still
// serves — so a reload keeps the cached keys, and the last handler to let
// go stops their background refresh.
var keyRegistries = caddy.NewUsagePool()

// refreshGroups shares refresh state between the handlers of one login
// (issuer, client, cookie name), e.g. per-path blocks, and across reloads.
var refreshGroups = caddy.NewUsagePool()

type pooledRefreshGroup struct{ *flow.RefreshGroup }

// Destruct has nothing to stop: the group holds no goroutines.
func (pooledRefreshGroup) Destruct() error { return nil }

type keyRegistry struct {
	mu     sync.Mutex
	sets   map[string]*verify.RemoteKeySet
	logger *slog.Logger
}

// get returns the key set for uri, creating it on first use.
func (k *keyRegistry) get(uri string) (verify.KeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ks, ok := k.sets[uri]; ok {
		return ks, nil
	}
	if k.sets == nil {
		return nil, errors.New("gatehouse: the key registry was closed")
	}
	ks, err := verify.NewRemoteKeySet(context.Background(), uri, verify.RemoteOptions{Logger: k.logger})
	if err != nil {
		return nil, err
	}
	k.sets[uri] = ks
	return ks, nil
}

// Destruct stops every key set's background refresh.
func (k *keyRegistry) Destruct() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ks := range k.sets {
		ks.Close()
	}
	k.sets = nil
	return nil
}

// CaddyModule returns the Caddy module information.
func (Gatehouse) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse",
		New: func() caddy.Module { return new(Gatehouse) },
	}
}

// Provision resolves placeholders, applies defaults, checks the
// configuration and builds the session store and the OpenID client. It
// makes no network call: the provider is discovered on first use.
func (g *Gatehouse) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	if g.now == nil {
		g.now = time.Now
	}
	if err := g.resolvePlaceholders(); err != nil {
		return err
	}
	g.applyDefaults()
	if err := g.Validate(); err != nil {
		return err
	}
	g.callbackPath = g.PathPrefix + "/callback"
	g.signOutPath = g.PathPrefix + "/sign_out"
	g.trusted, _ = flow.NewHostPatterns(g.TrustedRedirectHosts) // checked by Validate
	g.rules = newRules(g.AllowEmails, g.AllowDomains, g.AllowGroups, g.AllowClaims)
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
	for name := range g.AllowClaims {
		g.claimsNeeded = append(g.claimsNeeded, name)
	}
	slices.Sort(g.claimsNeeded)
	g.claimsNeeded = slices.Compact(g.claimsNeeded)

	val, _, err := keyRegistries.LoadOrNew(g.Issuer, func() (caddy.Destructor, error) {
		return &keyRegistry{sets: map[string]*verify.RemoteKeySet{}, logger: ctx.Slogger()}, nil
	})
	if err != nil {
		return err
	}
	g.keys = val.(*keyRegistry)
	g.provider, err = flow.NewProvider(ctx, flow.ProviderOptions{
		Issuer: g.Issuer,
		Endpoints: flow.Endpoints{
			Authorization: g.AuthorizationEndpoint,
			Token:         g.TokenEndpoint,
			Userinfo:      g.UserinfoEndpoint,
			JWKS:          g.JWKSURI,
			EndSession:    g.EndSessionEndpoint,
		},
		KeySet: g.keys.get,
		Now:    g.now,
		Logger: ctx.Slogger(),
	})
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	if g.Bearer != nil {
		g.bearer, err = flow.NewBearer(flow.BearerOptions{
			Provider:       g.provider,
			Audiences:      g.Bearer.Audiences,
			Issuer:         g.Bearer.Issuer,
			JWKSURI:        g.Bearer.JWKSURI,
			Algorithms:     g.Bearer.Algorithms,
			RequiredScopes: g.Bearer.RequiredScopes,
			ClockSkew:      time.Duration(g.Bearer.ClockSkew),
			CacheSize:      g.Bearer.CacheSize,
			Now:            g.now,
			ClientID:       g.ClientID,
		})
		if err != nil {
			return fmt.Errorf("gatehouse: bearer: %w", err)
		}
		if g.Bearer.Only {
			return nil
		}
	}

	secrets := make([][]byte, len(g.CookieSecrets))
	for i, s := range g.CookieSecrets {
		secrets[i] = []byte(s)
	}
	g.store, err = session.NewCookieStore(session.Options{
		Name:      g.CookieName,
		Domain:    g.CookieDomain,
		SameSite:  sameSite(g.CookieSameSite),
		Insecure:  g.CookieInsecure,
		Lifetime:  time.Duration(g.SessionLifetime),
		Secrets:   secrets,
		Now:       g.now,
		CacheSize: g.SessionCacheSize,
		// A session belongs to one issuer and client: another gatehouse
		// with the same cookie_secret does not accept it.
		Binding: g.Issuer + "\x00" + g.ClientID,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: cookies: %w", err)
	}
	clientAuth := flow.AuthBasic
	if g.ClientAuth == "post" {
		clientAuth = flow.AuthPost
	}
	g.client, err = flow.New(flow.Options{
		Provider:     g.provider,
		ClientID:     g.ClientID,
		ClientSecret: g.ClientSecret,
		ClientAuth:   clientAuth,
		Scopes:       g.Scopes,
		Prompt:       strings.Join(g.Prompt, " "),
		Now:          g.now,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	// Blocks of one login (same issuer, client and cookie) share refresh
	// state, so two of them never spend the same rotating refresh token.
	refreshKey := g.Issuer + "\x00" + g.ClientID + "\x00" + g.CookieName
	group, _, err := refreshGroups.LoadOrNew(refreshKey, func() (caddy.Destructor, error) {
		return pooledRefreshGroup{flow.NewRefreshGroup()}, nil
	})
	if err != nil {
		return err
	}
	g.refreshKey = refreshKey
	g.refresher, err = flow.NewRefresher(flow.RefresherOptions{
		Client: g.client,
		Update: g.newSessionFrom,
		Before: time.Duration(g.RefreshBefore),
		Now:    g.now,
		Group:  group.(pooledRefreshGroup).RefreshGroup,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	// Keep the claims this block maps or checks in every session of this
	// cookie, whichever block finishes the login.
	sessionClaims.add(g.CookieName, g.claimsNeeded)
	g.registered = true
	if g.CookieInsecure {
		g.logger.Warn("cookie_insecure is set: session cookies lack the Secure attribute; use this for plain-HTTP development only")
	}
	return nil
}

// resolvePlaceholders replaces {env.*}, {file.*} and other global
// placeholders in every string field. An unknown or empty placeholder is an
// error naming the sub-directive, never showing a secret (not even the part
// of one that looked like a placeholder).
func (g *Gatehouse) resolvePlaceholders() error {
	repl := caddy.NewReplacer()
	one := func(name string, v *string) error {
		if *v == "" {
			return nil
		}
		out, err := repl.ReplaceOrErr(*v, true, true)
		if err != nil {
			if name == "client_secret" || name == "cookie_secret" {
				return fmt.Errorf("gatehouse: %s: a placeholder in it is unknown or empty (is the environment variable or file there?)", name)
			}
			return fmt.Errorf("gatehouse: %s: %w", name, err)
		}
		*v = out
		return nil
	}
	many := func(name string, vs []string) error {
		for i := range vs {
			if err := one(name, &vs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.Join(
		one("issuer", &g.Issuer),
		one("authorization_endpoint", &g.AuthorizationEndpoint),
		one("token_endpoint", &g.TokenEndpoint),
		one("userinfo_endpoint", &g.UserinfoEndpoint),
		one("jwks_uri", &g.JWKSURI),
		one("end_session_endpoint", &g.EndSessionEndpoint),
		one("client_id", &g.ClientID),
		one("client_secret", &g.ClientSecret),
		one("client_auth", &g.ClientAuth),
		many("scopes", g.Scopes),
		many("prompt", g.Prompt),
		one("path_prefix", &g.PathPrefix),
		many("cookie_secret", g.CookieSecrets),
		one("cookie_name", &g.CookieName),
		one("cookie_domain", &g.CookieDomain),
		one("cookie_samesite", &g.CookieSameSite),
		one("user_claim", &g.UserClaim),
		one("email_claim", &g.EmailClaim),
		one("groups_claim", &g.GroupsClaim),
		many("trusted_redirect_hosts", g.TrustedRedirectHosts),
		one("unauthenticated", &g.Unauthenticated),
		one("post_logout_redirect", &g.PostLogoutRedirect),
		many("allow_emails", g.AllowEmails),
		many("allow_domains", g.AllowDomains),
		many("allow_groups", g.AllowGroups),
		g.resolveMaps(one, many),
		g.resolveBearer(one, many),
	)
}

// resolveMaps resolves the values of allow_claim and header.
func (g *Gatehouse) resolveMaps(one func(string, *string) error, many func(string, []string) error) error {
	var errs []error
	for _, values := range g.AllowClaims {
		errs = append(errs, many("allow_claim", values))
	}
	for name, claim := range g.Headers {
		errs = append(errs, one("header", &claim))
		g.Headers[name] = claim
	}
	return errors.Join(errs...)
}

func (g *Gatehouse) resolveBearer(one func(string, *string) error, many func(string, []string) error) error {
	if g.Bearer == nil {
		return nil
	}
	b := g.Bearer
	return errors.Join(
		many("bearer audience", b.Audiences),
		one("bearer issuer", &b.Issuer),
		one("bearer jwks_uri", &b.JWKSURI),
		many("bearer algorithms", b.Algorithms),
		many("bearer required_scopes", b.RequiredScopes),
	)
}

func (g *Gatehouse) applyDefaults() {
	setDefault := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	setDefault(&g.ClientAuth, "basic")
	setDefault(&g.PathPrefix, "/oauth2")
	setDefault(&g.CookieName, session.DefaultName)
	setDefault(&g.CookieSameSite, "lax")
	setDefault(&g.UserClaim, "sub")
	setDefault(&g.EmailClaim, "email")
	setDefault(&g.GroupsClaim, "groups")
	if len(g.Scopes) == 0 {
		g.Scopes = slices.Clone(flow.DefaultScopes)
	}
	if g.SessionLifetime == 0 {
		g.SessionLifetime = caddy.Duration(session.DefaultLifetime)
	}
	if g.RefreshBefore == 0 {
		g.RefreshBefore = caddy.Duration(flow.DefaultRefreshBefore)
	}
	setDefault(&g.PostLogoutRedirect, "/")
}

// Validate checks the configuration; every message names the
// sub-directive at fault and never shows a secret.
func (g *Gatehouse) Validate() error {
	var errs []error
	bad := func(directive, format string, args ...any) {
		errs = append(errs, fmt.Errorf("gatehouse: %s: %s", directive, fmt.Sprintf(format, args...)))
	}
	if g.Issuer == "" {
		bad("issuer", "is required (the provider's issuer URL)")
	} else if err := flow.CheckEndpointURL(g.Issuer); err != nil {
		bad("issuer", "%v", err)
	}
	for _, ep := range []struct{ name, url string }{
		{"authorization_endpoint", g.AuthorizationEndpoint},
		{"token_endpoint", g.TokenEndpoint},
		{"userinfo_endpoint", g.UserinfoEndpoint},
		{"jwks_uri", g.JWKSURI},
		{"end_session_endpoint", g.EndSessionEndpoint},
	} {
		if ep.url != "" {
			if err := flow.CheckEndpointURL(ep.url); err != nil {
				bad(ep.name, "%v", err)
			}
		}
	}
	apiOnly := g.Bearer != nil && g.Bearer.Only
	if g.ClientID == "" && !apiOnly {
		bad("client_id", "is required (unless bearer { only })")
	}
	if g.ClientSecret == "" && !apiOnly {
		bad("client_secret", "is required (use {env.NAME} or {file./path} to keep it out of the config)")
	}
	if g.ClientAuth != "" && g.ClientAuth != "basic" && g.ClientAuth != "post" {
		bad("client_auth", "must be basic or post, not %q", g.ClientAuth)
	}
	if len(g.Scopes) > 0 && !slices.Contains(g.Scopes, "openid") {
		bad("scopes", `must include "openid"`)
	}
	if err := flow.CheckPrompt(strings.Join(g.Prompt, " ")); err != nil {
		bad("prompt", "%v", strings.TrimPrefix(err.Error(), "flow: "))
	}
	if p := g.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p || strings.ContainsAny(p, "?#%*{} ")) {
		bad("path_prefix", "must be a clean absolute path like /oauth2, not %q", p)
	}
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
	switch g.CookieSameSite {
	case "", "lax", "strict":
	case "none":
		if g.CookieInsecure {
			bad("cookie_samesite", "none requires Secure cookies; remove cookie_insecure")
		}
	default:
		bad("cookie_samesite", "must be lax, strict or none, not %q", g.CookieSameSite)
	}
	if g.CookieInsecure && (strings.HasPrefix(g.CookieName, "__Host-") || strings.HasPrefix(g.CookieName, "__Secure-")) {
		bad("cookie_insecure", "cannot be used with a __Host- or __Secure- cookie_name")
	}
	if strings.HasPrefix(g.CookieName, "__Host-") && g.CookieDomain != "" {
		bad("cookie_domain", "cannot be used with a __Host- cookie_name")
	}
	if g.SessionCacheSize < -1 {
		bad("session_cache_size", "must be a number of entries, 0 for the default or -1 for none")
	}
	if g.SessionLifetime != 0 && time.Duration(g.SessionLifetime) < time.Minute {
		bad("session_lifetime", "must be at least 1m")
	}
	for _, c := range []struct{ name, value string }{
		{"user_claim", g.UserClaim}, {"email_claim", g.EmailClaim}, {"groups_claim", g.GroupsClaim},
	} {
		if strings.ContainsAny(c.value, " \t\r\n") {
			bad(c.name, "invalid claim name %q", c.value)
		}
	}
	if _, err := flow.NewHostPatterns(g.TrustedRedirectHosts); err != nil {
		bad("trusted_redirect_hosts", "%v", err)
	}
	switch g.Unauthenticated {
	case "", "redirect", "401", "allow":
		if apiOnly && g.Unauthenticated == "redirect" {
			bad("unauthenticated", "redirect contradicts bearer { only }")
		}
	default:
		bad("unauthenticated", "must be redirect, 401 or allow, not %q", g.Unauthenticated)
	}
	if d := time.Duration(g.RefreshBefore); d < 0 || d > 24*time.Hour {
		bad("refresh_before", "must be between 0 and 24h")
	}
	if p := g.PostLogoutRedirect; p != "" && !strings.HasPrefix(p, "/") {
		if err := flow.CheckEndpointURL(p); err != nil {
			bad("post_logout_redirect", "must be a path like / or an absolute http(s) URL: %v", err)
		}
	} else if p != "" && (strings.HasPrefix(p, "//") || strings.Contains(p, "\\")) {
		bad("post_logout_redirect", "%q is not a path on this site", p)
	}
	if err := checkRules(g.AllowEmails, g.AllowDomains, g.AllowClaims); err != nil {
		name, msg, _ := strings.Cut(err.Error(), ": ")
		bad(name, "%s", msg)
	}
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
	if b := g.Bearer; b != nil {
		if len(b.Audiences) == 0 || slices.Contains(b.Audiences, "") {
			bad("bearer audience", "is required: the audience your API's tokens are issued for")
		}
		if b.Issuer != "" {
			if err := flow.CheckEndpointURL(b.Issuer); err != nil {
				bad("bearer issuer", "%v", err)
			}
			if b.Issuer != g.Issuer && b.JWKSURI == "" {
				bad("bearer jwks_uri", "is required when the bearer issuer is not the gateway's issuer")
			}
		}
		if b.JWKSURI != "" {
			if err := flow.CheckEndpointURL(b.JWKSURI); err != nil {
				bad("bearer jwks_uri", "%v", err)
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
	}
	return errors.Join(errs...)
}

// Cleanup stops the background work Provision started and lets go of the
// shared key sets; it is safe after a failed Provision.
func (g *Gatehouse) Cleanup() error {
	if g.provider != nil {
		g.provider.Close()
	}
	if g.keys != nil {
		_, _ = keyRegistries.Delete(g.Issuer)
		g.keys = nil
	}
	if g.registered {
		sessionClaims.remove(g.CookieName, g.claimsNeeded)
		g.registered = false
	}
	if g.refreshKey != "" {
		_, _ = refreshGroups.Delete(g.refreshKey)
		g.refreshKey = ""
	}
	return nil
}

// checkHeaderName accepts a header name for `header`: a token that is not
// one gatehouse already sets or one that would change the request's meaning.
func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invalid header name %q", name)
		}
	}
	switch strings.ToLower(strings.ReplaceAll(name, "_", "-")) {
	case "authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding", "connection",
		"te", "upgrade", "proxy-authorization", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
		"x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-groups", "x-forwarded-access-token":
		return fmt.Errorf("header %q is not one `header` may set", name)
	}
	return nil
}

func sameSite(s string) http.SameSite {
	switch s {
	case "strict":
		return http.SameSiteStrictMode
	case "none":
		return http.SameSiteNoneMode
	default:
		return http.SameSiteLaxMode
	}
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Gatehouse)(nil)
	_ caddy.Validator             = (*Gatehouse)(nil)
	_ caddy.CleanerUpper          = (*Gatehouse)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gatehouse)(nil)
	_ caddyfile.Unmarshaler       = (*Gatehouse)(nil)
)
