package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/placeholder"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ProviderConfig is one identity provider and the client registered at
// it. Its fields are written flat in the gatehouse block (issuer,
// client_id, …), which is how a single provider is configured.
type ProviderConfig struct {
	// Kind of provider: "oidc" (OpenID Connect), or a plain OAuth 2.0
	// provider whose user API says who signed in: "github" (github.com or
	// GitHub Enterprise Server), "gitlab" (gitlab.com or self-managed),
	// "oauth2" (any, with explicit endpoints). Default: "oidc".
	Kind string `json:"kind,omitempty"`
	// BaseURL of a github or gitlab provider: https://github.com (default)
	// or the GitHub Enterprise Server; https://gitlab.com (default) or the
	// self-managed instance. The login and API endpoints derive from it.
	BaseURL string `json:"base_url,omitempty"`
	// AllowOrgs (github): the user must be a member of one of these
	// organizations. Membership that cannot be read refuses the user.
	AllowOrgs []string `json:"allow_orgs,omitempty"`
	// AllowTeams (github): the user must be a member of one of these
	// teams, written "org/team-slug". With AllowOrgs, both must hold.
	AllowTeams []string `json:"allow_teams,omitempty"`
	// AllowGitLabGroups (gitlab): the user must be a member (Guest or
	// above) of one of these groups, by full path ("acme/platform").
	AllowGitLabGroups []string `json:"allow_gitlab_groups,omitempty"`
	// SubjectPath, EmailVerifiedPath, UsernamePath and NamePath (oauth2)
	// say where the user-info answer carries sub, email_verified,
	// preferred_username and name (dotted paths into nested objects).
	// Defaults: sub, email_verified, preferred_username, name.
	SubjectPath       string `json:"subject_path,omitempty"`
	EmailVerifiedPath string `json:"email_verified_path,omitempty"`
	UsernamePath      string `json:"username_path,omitempty"`
	NamePath          string `json:"name_path,omitempty"`

	// Issuer is the OpenID provider's issuer URL, exactly as in its tokens.
	// Its endpoints come from Issuer/.well-known/openid-configuration.
	// Required for kind oidc; for the others it only names the provider
	// (default: base_url, or the authorization endpoint's origin).
	Issuer string `json:"issuer,omitempty"`
	// AuthorizationEndpoint overrides the discovered authorization endpoint.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	// TokenEndpoint overrides the discovered token endpoint.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// UserinfoEndpoint overrides the discovered userinfo endpoint; for
	// kind oauth2 it is the user API that says who signed in (required).
	UserinfoEndpoint string `json:"userinfo_endpoint,omitempty"`
	// JWKSURI overrides the discovered jwks_uri. When the authorization
	// and token endpoints and the jwks_uri are all given, discovery is skipped.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// EndSessionEndpoint overrides the discovered end_session_endpoint.
	EndSessionEndpoint string `json:"end_session_endpoint,omitempty"`

	// ClientID of the confidential client registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret of that client. Required but with private_key_jwt; use
	// {env.*} or {file.*}.
	ClientSecret string `json:"client_secret,omitempty"`
	// ClientAuth is how the client authenticates at the token, revocation
	// and introspection endpoints: "basic" (client_secret_basic), "post"
	// (client_secret_post), "private_key_jwt" or "client_secret_jwt"
	// (RFC 7523 assertions). Default: "basic".
	ClientAuth string `json:"client_auth,omitempty"`
	// ClientKey is the PEM private key of private_key_jwt (EC P-256, RSA
	// of 2048 bits or more), typically {file./path/client.pem}.
	ClientKey string `json:"client_key,omitempty"`
	// ClientKeyID is the assertions' kid. Default: the key's RFC 7638
	// thumbprint (register the key under it; it is logged at startup).
	ClientKeyID string `json:"client_key_id,omitempty"`
	// ClientKeyAlgorithm signs the assertions: ES256 (EC keys), RS256
	// (default for RSA) or PS256.
	ClientKeyAlgorithm string `json:"client_key_algorithm,omitempty"`
	// ClientAssertionAudience is the assertions' aud: "issuer" (default),
	// "token_endpoint" (Entra ID), or a URL.
	ClientAssertionAudience string `json:"client_assertion_audience,omitempty"`
	// Scopes requested at login; must include "openid".
	// Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// AuthParams are further authorization request parameters sent at
	// every login (Caddyfile `auth_param NAME VALUE`): hd, access_type,
	// resource … Those gatehouse sets itself are refused. Default: none.
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// ACRValues are sent as acr_values at every login; the ID token's acr
	// must be one of them. Default: none.
	ACRValues []string `json:"acr_values,omitempty"`
	// MaxAge is sent as max_age: the provider must have authenticated the
	// user within it, and the ID token's auth_time must say so. Default:
	// none.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// Prompt values sent at login (none, login, consent, select_account).
	// Providers such as oidc-provider issue refresh tokens for
	// offline_access only with "consent" (Google wants auth_param
	// access_type offline instead). Default: none sent.
	Prompt []string `json:"prompt,omitempty"`

	// UserClaim names the claim that identifies the user upstream
	// (X-Forwarded-User, {http.auth.user.id}). Default: "sub".
	UserClaim string `json:"user_claim,omitempty"`
	// EmailClaim names the claim carrying the e-mail. Default: "email".
	EmailClaim string `json:"email_claim,omitempty"`
	// GroupsClaim names the claim carrying the groups; a dotted name
	// ("realm_access.roles") reaches into nested objects. Default: "groups".
	GroupsClaim string `json:"groups_claim,omitempty"`

	// AssumeEmailVerified treats an e-mail as verified when the provider
	// sends no email_verified claim at all (Entra ID never does); an
	// explicit false still keeps the address from the upstream. Default:
	// false — only email_verified: true lets an e-mail through.
	AssumeEmailVerified bool `json:"assume_email_verified,omitempty"`

	// TrustedAudiences are audiences besides ClientID that an ID token may
	// name; one naming any other audience is refused (OpenID Connect Core
	// §3.1.3.7). Default: none.
	TrustedAudiences []string `json:"trusted_audiences,omitempty"`
}

// The capabilities the request pipeline uses from a provider, one
// interface each, so a provider kind implements what it has: an OpenID
// Connect provider (*flow.Client) has them all; a plain OAuth 2.0 one
// will lack end-session and perhaps revocation.
type (
	// authorizer runs logins: the authorization request and the callback.
	authorizer interface {
		StartLoginWith(ctx context.Context, redirectURL, returnTo string, params flow.LoginParams) (authURL string, login *session.Login, err error)
		FinishLogin(ctx context.Context, redirectURL string, q flow.Query, login *session.Login) (*flow.Result, error)
	}
	// refresher keeps a session's tokens fresh (*flow.Refresher).
	refresher interface {
		Fresh(ctx context.Context, s *session.Session) (fresh *session.Session, updated bool, err error)
	}
	// revoker revokes a token at the provider (RFC 7009).
	revoker interface {
		Revoke(ctx context.Context, token, hint string) error
	}
	// endSessioner builds the provider's logout URL (RP-initiated logout).
	endSessioner interface {
		EndSessionURL(ctx context.Context, idToken, postLogoutRedirect string) (string, bool)
	}
	// logoutVerifier checks back-channel logout tokens (OpenID Connect
	// Back-Channel Logout 1.0).
	logoutVerifier interface {
		VerifyLogoutToken(ctx context.Context, raw string) (*flow.LogoutToken, error)
	}
	// tokenValidator checks bearer access tokens (*flow.Bearer).
	tokenValidator interface {
		Verify(ctx context.Context, token string) (*verify.Claims, error)
		RequiredScopes() []string
	}
)

// provider is a provisioned ProviderConfig: the provider's metadata and
// keys, its capabilities, and the claims mapper of its identities. In
// bearer { only } mode it has no client: login, refresh, revoke,
// end-session and logout are nil.
type provider struct {
	name    string // "" for the one provider written flat
	display string // its sign-in button's label
	cfg     *ProviderConfig
	rules   rules    // its own allow_* rules, besides the block's
	metrics *metrics // the issuer's counters and HTTP client
	keys    *keyRegistry

	callbackPath    string // path_prefix/callback, or path_prefix/callback/NAME
	backchannelPath string // path_prefix/backchannel_logout[/NAME]

	meta       *flow.Provider
	mapper     *identity.Mapper
	readGroups bool // a plain OAuth 2.0 provider reads memberships into groups (an allow_groups rule needs them)
	login      authorizer
	refresh    refresher
	revoke     revoker
	endSession endSessioner
	logout     logoutVerifier
}

// provision builds the provider; ctx bounds its background work. client
// talks to the provider; keySet shares JWKS caches (shared.go);
// keep lists the claims sessions of this provider keep beyond the
// standard ones; withClient is false in bearer { only } mode.
func (pc *ProviderConfig) provision(ctx context.Context, logger *slog.Logger, client *http.Client, keySet func(string) (verify.KeySet, error), keep *identity.ClaimSet, now func() time.Time) (*provider, error) {
	meta, err := flow.NewProvider(ctx, flow.ProviderOptions{
		Issuer: pc.Issuer,
		Plain:  pc.plain(),
		Endpoints: flow.Endpoints{
			Authorization: pc.AuthorizationEndpoint,
			Token:         pc.TokenEndpoint,
			Userinfo:      pc.UserinfoEndpoint,
			JWKS:          pc.JWKSURI,
			EndSession:    pc.EndSessionEndpoint,
		},
		HTTPClient: client,
		KeySet:     keySet,
		Now:        now,
		Logger:     logger,
	})
	if err != nil {
		return nil, err
	}
	return &provider{
		meta: meta,
		mapper: &identity.Mapper{
			UserClaim: pc.UserClaim, EmailClaim: pc.EmailClaim, GroupsClaim: pc.GroupsClaim, Keep: keep,
			AssumeEmailVerified: pc.AssumeEmailVerified,
		},
	}, nil
}

// provisionClient adds the login client and what it brings (refresh,
// revocation, end-session) to p; m counts its refreshes.
func (pc *ProviderConfig) provisionClient(p *provider, group *sessionGroup, m *metrics, refreshBefore time.Duration, now func() time.Time) error {
	opts := pc.clientOptions(p, now)
	if pc.plain() {
		fetcher, err := pc.userAPI(p, m.client)
		if err != nil {
			return err
		}
		opts.UserAPI = userAPIAdapter{fetcher}
		opts.Scopes = union(opts.Scopes, fetcher.Scopes())
	}
	client, err := flow.NewClient(opts)
	if err != nil {
		return err
	}
	counted, lease := m.countRefreshes(client, group.lease)
	refresh, err := flow.NewRefresher(flow.RefresherOptions{Client: counted, Before: refreshBefore, Now: now, Group: group.refresh, Lease: lease})
	if err != nil {
		return err
	}
	p.login, p.refresh, p.revoke, p.endSession, p.logout = client, refresh, client, client, client
	if pc.plain() {
		p.logout = nil // no ID tokens, no back-channel logout
	}
	return nil
}

// clientOptions are the options of the provider's client.
func (pc *ProviderConfig) clientOptions(p *provider, now func() time.Time) flow.ClientOptions {
	return flow.ClientOptions{
		Provider:     p.meta,
		ClientID:     pc.ClientID,
		ClientSecret: pc.ClientSecret,
		ClientAuth:   clientAuths[pc.ClientAuth],
		Scopes:       pc.Scopes,
		Prompt:       strings.Join(pc.Prompt, " "),
		Mapper:       p.mapper,

		ClientKey: []byte(pc.ClientKey), ClientKeyID: pc.ClientKeyID,
		ClientKeyAlgorithm: pc.ClientKeyAlgorithm, ClientAssertionAudience: pc.ClientAssertionAudience,

		TrustedAudiences: pc.TrustedAudiences,
		Now:              now,

		AuthParams: authParams(pc.AuthParams), ACRValues: pc.ACRValues, MaxAge: time.Duration(pc.MaxAge),
	}
}

// authParams are auth_param's values as URL parameters.
func authParams(m map[string]string) url.Values {
	v := url.Values{}
	for k, val := range m {
		v.Set(k, val)
	}
	return v
}

// clientAuths are the client_auth values.
var clientAuths = map[string]flow.ClientAuth{
	"basic": flow.AuthBasic, "post": flow.AuthPost,
	"private_key_jwt": flow.AuthPrivateKeyJWT, "client_secret_jwt": flow.AuthSecretJWT,
}

// applyDefaults fills the documented defaults.
func (pc *ProviderConfig) applyDefaults() {
	setDefault(&pc.Kind, "oidc")
	pc.applyKindDefaults()
	setDefault(&pc.ClientAuth, "basic")
	setDefault(&pc.UserClaim, identity.DefaultUserClaim)
	setDefault(&pc.EmailClaim, identity.DefaultEmailClaim)
	setDefault(&pc.GroupsClaim, identity.DefaultGroupsClaim)
	if len(pc.Scopes) == 0 && !pc.plain() {
		pc.Scopes = slices.Clone(flow.DefaultScopes)
	}
}

// stringField is a string field of the config, by sub-directive.
type stringField struct {
	name  string
	value *string
}

// urls are the issuer and the explicit endpoints.
func (pc *ProviderConfig) urls() []stringField {
	return []stringField{
		{"issuer", &pc.Issuer},
		{"authorization_endpoint", &pc.AuthorizationEndpoint},
		{"token_endpoint", &pc.TokenEndpoint},
		{"userinfo_endpoint", &pc.UserinfoEndpoint},
		{"jwks_uri", &pc.JWKSURI},
		{"end_session_endpoint", &pc.EndSessionEndpoint},
	}
}

// resolve replaces placeholders in every field.
func (pc *ProviderConfig) resolve(r *placeholder.Resolver) { pc.resolveAs(r, "") }

// resolveAs is resolve naming the fields with prefix ("provider NAME ").
func (pc *ProviderConfig) resolveAs(r *placeholder.Resolver, prefix string) {
	for _, f := range append(pc.urls(),
		stringField{"kind", &pc.Kind}, stringField{"base_url", &pc.BaseURL},
		stringField{"subject_path", &pc.SubjectPath}, stringField{"email_verified_path", &pc.EmailVerifiedPath},
		stringField{"username_path", &pc.UsernamePath}, stringField{"name_path", &pc.NamePath},
		stringField{"client_id", &pc.ClientID}, stringField{"client_auth", &pc.ClientAuth},
		stringField{"user_claim", &pc.UserClaim}, stringField{"email_claim", &pc.EmailClaim},
		stringField{"groups_claim", &pc.GroupsClaim}, stringField{"client_key_id", &pc.ClientKeyID},
		stringField{"client_key_algorithm", &pc.ClientKeyAlgorithm}, stringField{"client_assertion_audience", &pc.ClientAssertionAudience},
	) {
		r.One(prefix+f.name, f.value)
	}
	r.Secret(prefix+"client_secret", &pc.ClientSecret)
	r.Secret(prefix+"client_key", &pc.ClientKey)
	r.Many(prefix+"scopes", pc.Scopes)
	r.Many(prefix+"prompt", pc.Prompt)
	r.Many(prefix+"trusted_audiences", pc.TrustedAudiences)
	r.Many(prefix+"acr_values", pc.ACRValues)
	for k, v := range pc.AuthParams {
		r.One(prefix+"auth_param", &v)
		pc.AuthParams[k] = v
	}
	r.Many(prefix+"allow_orgs", pc.AllowOrgs)
	r.Many(prefix+"allow_teams", pc.AllowTeams)
	r.Many(prefix+"allow_gitlab_groups", pc.AllowGitLabGroups)
}

// validate checks the provider's values; withClient is false in
// bearer { only } mode, where no client is needed.
func (pc *ProviderConfig) validate(bad badFunc, withClient bool) {
	pc.validateKind(bad, withClient)
	if pc.Issuer == "" && !pc.plain() {
		bad("issuer", "is required (the provider's issuer URL)")
	}
	for _, f := range pc.urls() {
		if *f.value != "" {
			if err := flow.CheckEndpointURL(*f.value); err != nil {
				bad(f.name, "%v", err)
			}
		}
	}
	if pc.ClientID == "" && withClient {
		bad("client_id", "is required (unless bearer { only })")
	}
	switch {
	case pc.ClientAuth == "private_key_jwt":
		if pc.ClientKey == "" && withClient {
			bad("client_key", "is required with client_auth private_key_jwt (a PEM private key: {file./path/client.pem})")
		}
	case pc.ClientSecret == "" && withClient:
		bad("client_secret", "is required (use {env.NAME} or {file./path} to keep it out of the config)")
	}
	if _, ok := clientAuths[pc.ClientAuth]; !ok && pc.ClientAuth != "" {
		bad("client_auth", "must be basic, post, private_key_jwt or client_secret_jwt, not %q", pc.ClientAuth)
	}
	for k := range pc.AuthParams {
		if flow.ReservedAuthParam(k) || k == "" {
			bad("auth_param", "%s is set by gatehouse itself (use the sub-directive for it, if there is one)", k)
		}
	}
	if d := time.Duration(pc.MaxAge); d < 0 || d > 0 && d < time.Second {
		bad("max_age", "must be at least 1s")
	}
	if (len(pc.ACRValues) > 0 || pc.MaxAge > 0) && pc.plain() {
		bad("acr_values", "and max_age need ID tokens: not for kind %s", pc.Kind)
	}
	if slices.Contains(pc.TrustedAudiences, "") {
		bad("trusted_audiences", "must not hold an empty audience")
	}
	if len(pc.Scopes) > 0 && !slices.Contains(pc.Scopes, "openid") && !pc.plain() {
		bad("scopes", `must include "openid"`)
	}
	var optErr *flow.OptionError
	if err := flow.CheckPrompt(strings.Join(pc.Prompt, " ")); errors.As(err, &optErr) {
		bad("prompt", "%s", optErr.Reason)
	}
	for _, c := range []struct{ name, value string }{
		{"user_claim", pc.UserClaim}, {"email_claim", pc.EmailClaim}, {"groups_claim", pc.GroupsClaim},
	} {
		if strings.ContainsAny(c.value, " \t\r\n") {
			bad(c.name, "invalid claim name %q", c.value)
		}
	}
}

// binding is what a session of this provider is bound to: another
// gatehouse with the same cookie_secret but another provider or client
// does not accept it.
func (pc *ProviderConfig) binding() string { return pc.Issuer + "\x00" + pc.ClientID }

// errProvider prefixes provisioning errors of the provider.
func errProvider(err error) error { return fmt.Errorf("gatehouse: %w", err) }
