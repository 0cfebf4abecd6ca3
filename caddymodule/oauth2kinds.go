package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/userapi"
)

// Provider kinds: OpenID Connect, or plain OAuth 2.0 with a user API
// (package userapi) saying who signed in.
const (
	kindOIDC   = "oidc"
	kindGitHub = "github"
	kindGitLab = "gitlab"
	kindOAuth2 = "oauth2"
)

// Where github.com and gitlab.com live; GitHub Enterprise Server and
// self-managed GitLab are given by base_url.
const (
	gitHubURL = "https://github.com"
	gitLabURL = "https://gitlab.com"
)

// plain reports whether the provider is a plain OAuth 2.0 one: no
// discovery, no ID token, the user API says who signed in.
func (pc *ProviderConfig) plain() bool {
	return pc.Kind == kindGitHub || pc.Kind == kindGitLab || pc.Kind == kindOAuth2
}

// hostedKinds are the kinds whose endpoints derive from base_url.
var hostedKinds = map[string]struct{ base, authorize, token string }{
	kindGitHub: {gitHubURL, "/login/oauth/authorize", "/login/oauth/access_token"},
	kindGitLab: {gitLabURL, "/oauth/authorize", "/oauth/token"},
}

// applyKindDefaults derives a github or gitlab provider's endpoints from
// its base_url, and names a plain provider by its base URL or its
// authorization endpoint's origin.
func (pc *ProviderConfig) applyKindDefaults() {
	if k, ok := hostedKinds[pc.Kind]; ok {
		// GitHub documents client_id and client_secret in the form only.
		setDefault(&pc.ClientAuth, "post")
		setDefault(&pc.BaseURL, k.base)
		base := strings.TrimSuffix(pc.BaseURL, "/")
		setDefault(&pc.AuthorizationEndpoint, base+k.authorize)
		setDefault(&pc.TokenEndpoint, base+k.token)
		setDefault(&pc.Issuer, base)
	}
	if u, err := url.Parse(pc.AuthorizationEndpoint); err == nil && pc.Kind == kindOAuth2 && pc.Issuer == "" && u.Host != "" {
		pc.Issuer = u.Scheme + "://" + u.Host
	}
}

// validateKind checks kind and what only some kinds take.
func (pc *ProviderConfig) validateKind(bad badFunc, withClient bool) {
	switch pc.Kind {
	case "", kindOIDC:
	case kindGitHub, kindGitLab, kindOAuth2:
		if !withClient {
			bad("kind", "%s signs users in: bearer { only } needs an OpenID provider", pc.Kind)
		}
	default:
		bad("kind", "must be oidc, github, gitlab or oauth2, not %q", pc.Kind)
		return
	}
	only := func(kind, directive string, set bool) {
		if set && pc.Kind != kind {
			bad(directive, "applies to kind %s only", kind)
		}
	}
	only(kindGitHub, "allow_orgs", len(pc.AllowOrgs) > 0)
	only(kindGitHub, "allow_teams", len(pc.AllowTeams) > 0)
	only(kindGitLab, "allow_gitlab_groups", len(pc.AllowGitLabGroups) > 0)
	for _, f := range []stringField{{"subject_path", &pc.SubjectPath}, {"email_verified_path", &pc.EmailVerifiedPath}, {"username_path", &pc.UsernamePath}, {"name_path", &pc.NamePath}} {
		only(kindOAuth2, f.name, *f.value != "")
	}
	if pc.BaseURL != "" && pc.Kind != kindGitHub && pc.Kind != kindGitLab {
		bad("base_url", "applies to kinds github and gitlab only")
	}
	if !pc.plain() {
		return
	}
	for _, f := range []stringField{{"jwks_uri", &pc.JWKSURI}, {"end_session_endpoint", &pc.EndSessionEndpoint}} {
		if *f.value != "" {
			bad(f.name, "does not apply to kind %s: it has no ID tokens", pc.Kind)
		}
	}
	if len(pc.TrustedAudiences) > 0 {
		bad("trusted_audiences", "does not apply to kind %s: it has no ID tokens", pc.Kind)
	}
	if pc.Kind == kindOAuth2 {
		for _, f := range []stringField{{"authorization_endpoint", &pc.AuthorizationEndpoint}, {"token_endpoint", &pc.TokenEndpoint}, {"userinfo_endpoint", &pc.UserinfoEndpoint}} {
			if *f.value == "" {
				bad(f.name, "is required with kind oauth2")
			}
		}
	}
	if _, err := userapi.New(pc.userAPIConfig(nil, nil, false)); err != nil {
		var oe *userapi.OptionError
		if errors.As(err, &oe) {
			bad(userAPIDirectives[oe.Field], "%s", oe.Reason)
		} else {
			bad("kind", "%v", err)
		}
	}
}

// userAPIDirectives name userapi.Config's fields as sub-directives.
var userAPIDirectives = map[string]string{
	"Kind": "kind", "BaseURL": "base_url", "UserinfoURL": "userinfo_endpoint",
	"AllowOrgs": "allow_orgs", "AllowTeams": "allow_teams", "AllowGroups": "allow_gitlab_groups",
	"SubjectPath": "subject_path", "EmailVerifiedPath": "email_verified_path",
	"UsernamePath": "username_path", "NamePath": "name_path",
	"Timeout": "kind", "MaxPages": "kind",
}

// userAPIConfig is the user API of a plain provider; mapper maps its
// claims, client makes its requests.
func (pc *ProviderConfig) userAPIConfig(mapper *identity.Mapper, client *http.Client, readGroups bool) userapi.Config {
	api := strings.TrimSuffix(pc.BaseURL, "/")
	if pc.Kind == kindGitHub {
		// github.com's API has a host of its own; a GitHub Enterprise
		// Server's is under /api/v3.
		if api == gitHubURL || api == "" {
			api = ""
		} else {
			api += "/api/v3"
		}
	}
	return userapi.Config{
		Kind: userapi.Kind(pc.Kind), BaseURL: api, UserinfoURL: pc.UserinfoEndpoint,
		SubjectPath: pc.SubjectPath, EmailVerifiedPath: pc.EmailVerifiedPath, UsernamePath: pc.UsernamePath, NamePath: pc.NamePath,
		Mapper: mapper, AllowOrgs: pc.AllowOrgs, AllowTeams: pc.AllowTeams, AllowGroups: pc.AllowGitLabGroups,
		ReadGroups: readGroups, HTTPClient: client,
	}
}

// userAPI builds p's user API, its requests made by client.
func (pc *ProviderConfig) userAPI(p *provider, client *http.Client) (*userapi.Fetcher, error) {
	return userapi.New(pc.userAPIConfig(p.mapper, client, p.readGroups))
}

// userAPIAdapter is a userapi.Fetcher as flow's UserAPI: an API that
// cannot answer, or memberships that cannot be read, are the provider
// being unavailable (a login fails with 502, a refresh keeps the
// session's identity); everything else refuses the user.
type userAPIAdapter struct{ f *userapi.Fetcher }

func (a userAPIAdapter) Identity(ctx context.Context, token string) (identity.Identity, error) {
	id, err := a.f.Identity(ctx, token)
	if errors.Is(err, userapi.ErrProviderUnavailable) || errors.Is(err, userapi.ErrMembershipUnknown) {
		err = fmt.Errorf("%w: %w", flow.ErrProviderUnavailable, err)
	}
	return id, err
}

// union is a followed by b's values a lacks.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
