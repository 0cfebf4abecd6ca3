package caddymodule

import (
	"cmp"
	"context"
	"fmt"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// Gatehouse is an OpenID Connect authentication gateway: it signs browser
// users in with the authorization code flow (PKCE, state, nonce) at an
// OpenID provider, keeps their session in sealed cookies and hands their
// identity to the next handler as headers and placeholders, after removing
// any identity headers the client sent.
//
// Every string field accepts Caddy placeholders such as {env.X} and
// {file./path}, resolved once at provisioning.
type Gatehouse struct {
	// The provider, written flat: issuer, endpoints, client, scopes,
	// prompt and claim names (see ProviderConfig). Empty with Providers.
	ProviderConfig

	// Providers are several identity providers, each with its own name,
	// client and allow_* rules (Caddyfile `provider NAME { … }`): users
	// choose one on the sign-in page. The first also validates bearer
	// tokens. Default: the one provider written flat.
	Providers []*NamedProvider `json:"providers,omitempty"`

	// PathPrefix is where gatehouse's own endpoints live: PathPrefix +
	// "/callback", "/sign_in", "/sign_out", "/userinfo",
	// "/backchannel_logout" (with Providers, "/callback/NAME" and
	// "/backchannel_logout/NAME"), and for other proxies "/auth" (forward
	// auth) and "/start" (login start).
	// Default: "/oauth2".
	PathPrefix string `json:"path_prefix,omitempty"`

	// CookieSecrets seal the session and login cookies: at least 32 bytes
	// each. The first seals; all unseal, for rotation. Required.
	CookieSecrets []string `json:"cookie_secrets,omitempty"`
	// CookieName of the session cookie (chunks add _1, _2, …). Default:
	// "__Host-gatehouse" (a sibling subdomain can neither set nor shadow
	// it), or "_gatehouse" with cookie_domain or cookie_insecure.
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
	// SessionIdleTimeout ends a session not used for this long: navigations
	// log in again, API calls get 401. Use is recorded in the cookie at most
	// every tenth of it. Default: 0 (off).
	SessionIdleTimeout caddy.Duration `json:"session_idle_timeout,omitempty"`
	// Store keeps sessions elsewhere than in the cookie: `store redis`
	// shares them between instances. Default: in the cookie.
	Store *StoreConfig `json:"store,omitempty"`
	// SessionCacheSize bounds the decoded-session cache (entries of a few
	// KB each); 0 selects 4096, -1 turns it off.
	SessionCacheSize int `json:"session_cache_size,omitempty"`

	// TrustedRedirectHosts are hosts, besides the request's own, allowed
	// as post-login targets: "app.example.com", "app.example.com:8443" or
	// "*.example.com".
	TrustedRedirectHosts []string `json:"trusted_redirect_hosts,omitempty"`

	// Unauthenticated is what a request without a session gets: "redirect"
	// (to the provider's login), "401", or "allow" (continue anonymously,
	// without identity headers). Default: browser navigations are
	// redirected, other requests (XHR, JSON, non-GET) get 401.
	Unauthenticated string `json:"unauthenticated,omitempty"`

	// PublicPaths are paths (Caddy path matcher patterns: "/health",
	// "/assets/*", "*.css") that need no sign-in: their requests pass with
	// the identity when there is a valid one, anonymously otherwise — and
	// always without the identity headers a client sent. Use them instead
	// of keeping such paths out of gatehouse with a matcher: routes that
	// gatehouse does not run on do not get their headers stripped.
	// Default: none.
	PublicPaths []string `json:"public_paths,omitempty"`

	// RefreshBefore: a session whose access token expires within
	// this is refreshed (with its refresh token) before the request is
	// served. Default: 1m.
	RefreshBefore caddy.Duration `json:"refresh_before,omitempty"`
	// PostLogoutRedirect is where sign-out sends the user: a path on the
	// site or an absolute URL (register it at the provider as a post-logout
	// redirect URI). Default: "/".
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// The allow_* rules every user must pass, whichever provider signed
	// them in (see rules).
	AllowRules

	// RequireACR demands that the user authenticated with one of these
	// acr values (the session's ID token's acr, a bearer token's acr): a
	// browser with a weaker session is sent back to its provider with
	// acr_values (step-up); other requests get 401 with
	// error="insufficient_user_authentication" (RFC 9470). Default: none.
	RequireACR []string `json:"require_acr,omitempty"`

	// Headers forwards more claims upstream: header name → claim name.
	// The headers are also deleted from every client request.
	Headers map[string]string `json:"headers,omitempty"`
	// PassAccessToken sets X-Forwarded-Access-Token to the access token.
	PassAccessToken bool `json:"pass_access_token,omitempty"`
	// PassAuthorization sets `Authorization: Bearer <access token>`
	// upstream, replacing the client's.
	PassAuthorization bool `json:"pass_authorization,omitempty"`

	// Assertion, when set, signs a short-lived JWT of the identity into
	// every request that passes (Caddyfile `assertion`).
	Assertion *AssertionConfig `json:"assertion,omitempty"`

	// DisableMetrics keeps this block's counts out of Caddy's metrics
	// registry (Caddyfile `metrics off`); they are on by default.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	// Bearer, when set, validates `Authorization: Bearer` JWTs.
	Bearer *BearerConfig `json:"bearer,omitempty"`

	logger   *zap.Logger
	auditLog *zap.Logger     // logger's "audit": the audit events (audit.go)
	ctx      context.Context // the config's lifetime: background work (revocation) ends with it
	now      func() time.Time

	slogger *slog.Logger // the libraries' logger: ctx.Slogger(), unless a test sets one
	metrics *metrics     // the first provider's Prometheus counters (metrics.go): bearer tokens, sessions

	resourceMeta *resourceMetadata    // RFC 9728 metadata, with a bearer block (resource.go)
	introspector *flow.Introspector   // with bearer { introspection } (apitokens.go)
	dpop         *verify.DPoPVerifier // with bearer { dpop }

	signer           *assertion.Signer // with `assertion` (assertion.go)
	assertionHeader  string
	assertionStorage assertion.Storage // Caddy's storage (ctx.Storage()), unless a test sets one

	// Parsed once at provisioning (config.go).
	mode            mode
	unauthenticated unauthenticatedAction
	sameSite        http.SameSite
	trusted         flow.HostPatterns
	public          publicPaths
	rules           rules
	headerMap       []headerMapping // sorted by header name
	strip           []string        // headers deleted from every request
	claimsNeeded    []string        // claims this block maps (header) or checks (allow_claim)
	signOutPath     string
	userinfoPath    string
	forwardAuthPath string
	startPath       string
	signInPath      string
	jwksPath        string // with `assertion`: path_prefix/jwks.json

	// Built at provisioning.
	idps     []*provider      // the providers, in order (providers.go)
	idp      *provider        // the first: it checks bearer tokens
	sessions *session.Manager // nil in modeAPI
	bearer   tokenValidator   // nil without a bearer block
	// bearerProvider is the first provider when it issues the bearer
	// tokens (its allow_* rules apply to them); nil with another issuer.
	bearerProvider *provider

	// Held in the shared pools while provisioned (shared.go); each
	// provider also holds its issuer's key registry and metrics.
	group    *sessionGroup
	groupKey string
	released bool // Cleanup ran
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
	// JWKSFile is a JWKS document on disk whose keys sign the tokens,
	// instead of fetching any jwks_uri: pinned keys, or no network at all.
	// Read when the config loads (reload Caddy after changing it).
	JWKSFile string `json:"jwks_file,omitempty"`
	// RequireAtJWT accepts only tokens whose header says typ at+jwt (RFC
	// 9068). Default: false — any token that is not recognisably another
	// kind (ID, logout, DPoP proof …) is taken as an access token.
	RequireAtJWT bool `json:"require_at_jwt,omitempty"`
	// Resource is the API's resource identifier (RFC 9728): its metadata
	// is served at /.well-known/oauth-protected-resource plus its path,
	// and named in every challenge. Default: the request's origin.
	Resource string `json:"resource,omitempty"`
	// Introspection checks tokens that are not JWTs at the provider's
	// RFC 7662 endpoint. Default: off (opaque tokens are refused).
	Introspection *IntrospectionConfig `json:"introspection,omitempty"`
	// DPoP is "optional" (DPoP-bound tokens need their proof, RFC 9449)
	// or "required" (only DPoP-bound tokens pass). Default: off.
	DPoP string `json:"dpop,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Gatehouse) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse",
		New: func() caddy.Module { return new(Gatehouse) },
	}
}

// Provision resolves placeholders, applies defaults, checks the
// configuration and builds what serves requests: the provider, the
// session manager (unless bearer { only }) and the bearer validator. It
// makes no network call: the provider is discovered on first use.
func (g *Gatehouse) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	g.auditLog = g.logger.Named("audit")
	g.ctx = ctx
	if g.slogger == nil {
		g.slogger = ctx.Slogger()
	}
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
	g.parse()
	if err := g.public.Provision(ctx); err != nil {
		return fmt.Errorf("gatehouse: public_paths: %w", err)
	}
	if err := g.provisionProvider(ctx); err != nil {
		return err
	}
	if err := g.provisionBearer(); err != nil {
		return err
	}
	if err := g.provisionAssertion(ctx); err != nil {
		return err
	}
	if g.mode == modeLogin {
		if err := g.provisionSessions(); err != nil {
			return err
		}
	}
	for _, p := range g.idps {
		p.metrics.attach(p.statsSource(g), p.keys)
	}
	if g.mode == modeAPI {
		return nil
	}
	if g.CookieInsecure {
		g.logger.Warn("cookie_insecure is set: session cookies lack the Secure attribute; use this for plain-HTTP development only")
	}
	return nil
}

// provisionProvider takes the login's session group (with sessions) and
// builds the providers, each with its issuer's shared JWKS caches and
// metrics.
func (g *Gatehouse) provisionProvider(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if g.DisableMetrics {
		reg = nil
	}
	if g.mode == modeLogin {
		g.groupKey = sessionGroupKey(g.binding(), g.CookieName, g.Store)
		group, unreachable, err := takeSessionGroup(g.groupKey, g.Store, g.binding(), g.now)
		if err != nil {
			g.groupKey = ""
			return err
		}
		g.group = group
		if unreachable != nil {
			g.logger.Warn("the Redis session store cannot be reached yet: requests that need a session get 503 until it can", zap.Error(unreachable))
		}
		// Keep the claims this block maps or checks in every session of
		// this login, whichever block finishes it; and the access token if
		// this block forwards it.
		g.group.claims.Add(g.claimsNeeded...)
		if g.forwardsAccessToken() {
			g.group.forwarders.Add(1)
		}
	}
	for _, np := range g.providerConfigs() {
		p, err := g.provisionOne(ctx, reg, np)
		if p != nil {
			g.idps = append(g.idps, p) // Cleanup releases what it holds
		}
		if err != nil {
			return err
		}
	}
	g.idp, g.metrics = g.idps[0], g.idps[0].metrics
	return nil
}

// provisionOne builds the provider np with its metrics (registered in
// reg) and keys. The provider comes back even with an error, holding what
// it took, for Cleanup to release.
func (g *Gatehouse) provisionOne(ctx caddy.Context, reg *prometheus.Registry, np *NamedProvider) (*provider, error) {
	pc := &np.ProviderConfig
	m, err := takeMetrics(reg, pc.Issuer)
	if err != nil {
		return nil, fmt.Errorf("gatehouse: metrics: %w", err)
	}
	keys, err := takeKeyRegistry(pc.Issuer, g.slogger, m.client, g.now)
	if err != nil {
		releaseMetrics(m)
		return nil, err
	}
	p, err := pc.provision(ctx, g.slogger, m.client, keys.Get, g.claimSet(), g.now)
	if err != nil {
		p = &provider{}
	}
	p.name, p.display, p.cfg, p.metrics, p.keys = np.Name, cmp.Or(np.DisplayName, np.Name), pc, m, keys
	p.rules = np.AllowRules.rules()
	p.callbackPath, p.backchannelPath = g.PathPrefix+"/callback", g.PathPrefix+"/backchannel_logout"
	if np.Name != "" {
		p.callbackPath += "/" + np.Name
		p.backchannelPath += "/" + np.Name
	}
	if err != nil {
		return p, errProvider(err)
	}
	if g.mode == modeLogin {
		// GitHub and GitLab memberships cost API calls and a scope: read
		// when an allow_groups rule needs them (the oauth2 kind's groups
		// come with its user-info answer).
		p.readGroups = (len(g.AllowGroups) > 0 || len(np.AllowGroups) > 0) && (pc.Kind == kindGitHub || pc.Kind == kindGitLab)
		if err := pc.provisionClient(p, g.group, m, time.Duration(g.RefreshBefore), g.now); err != nil {
			return p, errProvider(err)
		}
		if k, ok := p.login.(interface{ PublicKeyJWK() []byte }); ok && pc.ClientAuth == "private_key_jwt" {
			g.logger.Info("client_auth private_key_jwt: the provider must know this public key for the client (kid included)",
				zap.String("provider", np.Name), zap.String("client_id", pc.ClientID), zap.ByteString("jwk", k.PublicKeyJWK()))
		}
	}
	if strings.HasPrefix(pc.Issuer, "http://") {
		// The client secret, codes and tokens travel in clear (review SA2-29).
		g.logger.Warn("the issuer is a plain-HTTP URL: client secret, codes and tokens cross the network unencrypted; use https outside development",
			zap.String("issuer", pc.Issuer))
	}
	return p, nil
}

// provisionBearer builds the bearer-token validator, when configured.
func (g *Gatehouse) provisionBearer() error {
	if g.Bearer == nil {
		return nil
	}
	var keys verify.KeySet
	if f := g.Bearer.JWKSFile; f != "" {
		doc, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("gatehouse: bearer jwks_file: %w", err)
		}
		if keys, err = verify.NewStaticKeySet(doc); err != nil {
			return fmt.Errorf("gatehouse: bearer jwks_file %s: %w", f, err)
		}
	}
	b, err := flow.NewBearer(flow.BearerOptions{
		Keys:           keys,
		Provider:       g.idp.meta,
		Audiences:      g.Bearer.Audiences,
		Issuer:         g.Bearer.Issuer,
		JWKSURI:        g.Bearer.JWKSURI,
		Algorithms:     g.Bearer.Algorithms,
		RequiredScopes: g.Bearer.RequiredScopes,
		ClockSkew:      time.Duration(g.Bearer.ClockSkew),
		CacheSize:      g.Bearer.CacheSize,
		Now:            g.now,
		ClientID:       g.idp.cfg.ClientID,

		RequireAccessTokenType: g.Bearer.RequireAtJWT,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: bearer: %w", err)
	}
	g.bearer = b
	g.resourceMeta = newResourceMetadata(g.Bearer, g.idp.cfg.Issuer)
	if g.Bearer.Issuer == "" || g.Bearer.Issuer == g.idp.cfg.Issuer {
		g.bearerProvider = g.idp
	}
	return g.provisionAPITokens()
}

// provisionSessions builds the session manager: cookies sealed with
// cookie_secret and bound to the provider and client, sessions kept in
// the session group's store.
func (g *Gatehouse) provisionSessions() error {
	secrets := make([][]byte, len(g.CookieSecrets))
	for i, s := range g.CookieSecrets {
		secrets[i] = []byte(s)
	}
	var err error
	g.sessions, err = session.New(session.Options{
		Name:     g.CookieName,
		Domain:   g.CookieDomain,
		SameSite: g.sameSite,
		Insecure: g.CookieInsecure,
		Lifetime: time.Duration(g.SessionLifetime),
		Secrets:  secrets,

		IdleTimeout: time.Duration(g.SessionIdleTimeout),
		Now:         g.now,
		CacheSize:   g.SessionCacheSize,
		Binding:     g.binding(),
		Store:       g.group.store,
	})
	if err != nil {
		return fmt.Errorf("gatehouse: cookies: %w", err)
	}
	return nil
}

// Cleanup stops the background work Provision started and lets go of the
// shared state; it is safe after a failed Provision, and a second call does
// nothing. After a reload Caddy cleans up the old config without waiting
// for its requests still in flight, so Cleanup leaves the fields those
// requests read (metrics, group, keys) in place: they stay valid, held by
// the new config.
func (g *Gatehouse) Cleanup() error {
	if g.released {
		return nil
	}
	g.released = true
	for _, p := range g.idps {
		if p.metrics != nil {
			p.metrics.detach(p.statsSource(g))
			releaseMetrics(p.metrics)
		}
		if p.meta != nil {
			p.meta.Close()
		}
		if p.keys != nil {
			releaseKeyRegistry(p.cfg.Issuer)
		}
	}
	if g.signer != nil {
		g.signer.Close()
	}
	if g.group != nil {
		g.group.claims.Remove(g.claimsNeeded...)
		if g.forwardsAccessToken() {
			g.group.forwarders.Add(-1)
		}
		releaseSessionGroup(g.groupKey)
	}
	return nil
}

// forwardsAccessToken reports whether this block sends the access token upstream.
func (g *Gatehouse) forwardsAccessToken() bool { return g.PassAccessToken || g.PassAuthorization }

// Interface guards.
var (
	_ caddy.Provisioner           = (*Gatehouse)(nil)
	_ caddy.Validator             = (*Gatehouse)(nil)
	_ caddy.CleanerUpper          = (*Gatehouse)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gatehouse)(nil)
	_ caddyfile.Unmarshaler       = (*Gatehouse)(nil)
)
