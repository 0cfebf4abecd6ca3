// Package flow is gatehouse's OpenID Connect side: the provider, the
// relying party's authorization code flow with PKCE, state and nonce, and
// bearer-token validation for APIs.
//
// A Provider (NewProvider) is one OpenID provider. It does no I/O when
// created: its discovery document (issuer/.well-known/openid-configuration)
// is fetched on first use, shared by concurrent callers and retried with
// backoff while the provider is down (ErrProviderUnavailable meanwhile).
// The document's issuer must equal the configured one exactly; configured
// Endpoints override what it says, and replace it entirely when the
// authorization, token and JWKS endpoints are all given. KeySet hands out
// one verify.KeySet per jwks_uri.
//
// A Client (NewClient) is a registered confidential client at a Provider.
// StartLogin first asks Provider.Available whether the provider can be
// reached (by what its JWKS fetches and recent token and userinfo calls
// say; ErrProviderUnavailable), then returns the authorization URL and a session.Login holding a
// fresh state, nonce and PKCE S256 verifier and the return-to URL; the
// caller keeps the Login in a login cookie (session.Manager.SaveLogin).
// FinishLogin takes the callback's query and that Login and checks, in this
// order: a provider `error` (*ProviderError); the state, in constant time
// (ErrStateMismatch); the RFC 9207 `iss` parameter (ErrIssuerMismatch); the
// code. It exchanges the code and the verifier at the token endpoint with
// golang.org/x/oauth2 (*ExchangeError on refusal), verifies the ID token
// with package verify and then the OpenID Connect rules on top (sub, iat,
// no untrusted audience, azp, nonce, at_hash), and fetches userinfo, whose
// sub must equal the ID token's. The claims become the Result's Identity
// through the client's identity.Mapper, and NewSession turns a Result into
// a new session. Every provider call goes through one HTTP client with a
// timeout and a response-size cap.
//
// A Refresher keeps sessions fresh: a session whose access token is about
// to expire is refreshed through a TokenRefresher (the Client's Refresh),
// one refresh per session at a time within a RefreshGroup, and Refreshed
// builds the session that follows. EndSessionURL and Revoke (logout.go)
// serve sign-out.
//
// Errors: callers branch on the category (ErrProviderUnavailable,
// ErrIDToken, ErrStateMismatch, …, or a typed *ProviderError,
// *ExchangeError, *InsufficientScopeError), wrapped with %w; the cause
// after it is wrapped with %v where callers must not branch on it.
//
// A Bearer (NewBearer) validates access tokens for an API: a verify
// Verifier with a verified-token cache, built on first use from the
// provider's metadata (or an explicit issuer and jwks_uri), the token-type
// policy (RFC 9068/8725: ID, logout and other kinds of JWT are not access
// tokens; ErrNotAnAccessToken) and the required scopes
// (*InsufficientScopeError).
//
// ValidateReturnTo and SafeReturnTo decide where a user may be sent after
// login: a path on the same host, or an absolute URL on the request host or
// a trusted host (HostPatterns); never off-site, whatever the encoding.
//
// An Introspector (NewIntrospector) validates opaque access tokens with the
// provider's RFC 7662 introspection endpoint (configured, or from
// discovery), authenticating as the Client does at the token endpoint. An
// answer counts as active only if `active` is the JSON true and exp, nbf,
// iss, aud and the token kind allow it; refusals wrap
// verify.ErrInvalidToken (ErrInactiveToken, …). An endpoint that cannot be
// reached, refuses the client's credentials, or answers unusably is
// ErrProviderUnavailable. Answers are cached by the token's SHA-256: active
// ones until exp or ActiveTTL, refusals for InactiveTTL. A cached active
// answer outlives a provider outage until it lapses. Concurrent requests
// for one token share one call. An Introspection exposes the usual members
// and Map for the claims mapper.
package flow
