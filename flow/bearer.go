package flow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/verify"
)

// Defaults of BearerOptions.
const (
	DefaultBearerClockSkew = 30 * time.Second
	DefaultBearerCacheSize = 10000
)

// BearerOptions configures a Bearer.
type BearerOptions struct {
	// Provider whose tokens are accepted. Required.
	Provider *Provider
	// Audiences: a token's aud must contain one of them. Required.
	Audiences []string
	// Issuer a token must name. Default: the provider's issuer.
	Issuer string
	// JWKSURI holds the signing keys. Default: the provider's jwks_uri;
	// required when Issuer is not the provider's (unless Keys is set).
	JWKSURI string
	// Keys are fixed signing keys (a pinned JWKS file), used instead of
	// any jwks_uri: nothing is fetched. Default: none.
	Keys verify.KeySet
	// Algorithms allowed (asymmetric only). Default: what the provider's
	// discovery advertises, intersected with verify.AsymmetricAlgorithms.
	Algorithms []string
	// RequiredScopes the token must all carry (in `scope` or `scp`).
	RequiredScopes []string
	// ClockSkew tolerated on exp, nbf and iat. Default 30s.
	ClockSkew time.Duration
	// CacheSize bounds the verified-token cache. Default 10000; negative
	// disables it.
	CacheSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// ClientID is the gateway's own login client, if any: its ID tokens
	// are refused as access tokens even when the audiences would let them
	// in (an ID token travels in URLs such as RP-initiated logout).
	ClientID string
	// RequireAccessTokenType accepts only tokens typed at+jwt (RFC 9068).
	// Default: any token that is not recognisably another kind.
	RequireAccessTokenType bool
}

// Token-type refusals (see Bearer.accessTokenKind).
var (
	// ErrNotAnAccessToken: the token is another kind of JWT.
	ErrNotAnAccessToken = fmt.Errorf("%w: not an access token", verify.ErrInvalidToken)
	// ErrIDTokenAsBearer: an ID token for gatehouse's own client was
	// presented as an access token.
	ErrIDTokenAsBearer = fmt.Errorf("%w: an ID token is not an access token", ErrNotAnAccessToken)
)

// Bearer validates bearer access tokens (JWTs) for an API: the provider's
// signature, issuer, audience, times and the required scopes. Its verifier
// is built on first use, once the provider's metadata is known.
type Bearer struct {
	opts     BearerOptions
	verifier lazyVerifier
}

// InsufficientScopeError is a valid token that lacks required scopes
// (RFC 6750 §3.1 insufficient_scope).
type InsufficientScopeError struct {
	// Missing are the required scopes the token does not carry.
	Missing []string
}

func (e *InsufficientScopeError) Error() string {
	return "flow: token lacks required scopes: " + strings.Join(e.Missing, " ")
}

// NewBearer checks opts. It makes no network call.
func NewBearer(opts BearerOptions) (*Bearer, error) {
	if opts.Provider == nil {
		return nil, errors.New("flow: bearer: a provider is required")
	}
	if len(opts.Audiences) == 0 || slices.Contains(opts.Audiences, "") {
		return nil, errors.New("flow: bearer: at least one audience is required")
	}
	opts.Issuer = cmp.Or(opts.Issuer, opts.Provider.Issuer())
	if err := CheckEndpointURL(opts.Issuer); err != nil {
		return nil, fmt.Errorf("flow: bearer: issuer: %w", err)
	}
	if opts.Issuer != opts.Provider.Issuer() && opts.JWKSURI == "" && opts.Keys == nil {
		return nil, errors.New("flow: bearer: a jwks_uri is required for an issuer other than the provider's")
	}
	if opts.JWKSURI != "" && opts.Keys != nil {
		return nil, errors.New("flow: bearer: a jwks_uri and fixed keys exclude each other")
	}
	if opts.JWKSURI != "" {
		if err := CheckEndpointURL(opts.JWKSURI); err != nil {
			return nil, fmt.Errorf("flow: bearer: jwks_uri: %w", err)
		}
	}
	if err := checkAlgorithms(opts.Algorithms); err != nil {
		return nil, err
	}
	opts.ClockSkew = cmp.Or(opts.ClockSkew, DefaultBearerClockSkew)
	opts.CacheSize = cmp.Or(opts.CacheSize, DefaultBearerCacheSize)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Audiences = slices.Clone(opts.Audiences)
	opts.RequiredScopes = slices.Clone(opts.RequiredScopes)
	return &Bearer{opts: opts}, nil
}

// Verify checks a bearer token. Failures wrap verify.ErrInvalidToken, or
// are ErrProviderUnavailable (keys or metadata could not be had) or
// *InsufficientScopeError. The claims may be shared: do not modify them.
func (b *Bearer) Verify(ctx context.Context, token string) (*verify.Claims, error) {
	v := b.verifier.load()
	if v == nil {
		var err error
		if v, err = b.verifier.build(func() (*verify.Verifier, error) { return b.build(ctx) }); err != nil {
			return nil, err
		}
	}
	c, err := v.Verify(ctx, token)
	if errors.Is(err, verify.ErrKeysUnavailable) {
		return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	if err != nil {
		return nil, err
	}
	// The verdict depends on the claims and b's options alone: a token
	// from the verified-token cache has it already.
	if err := verify.Derived(c, b, b.accessTokenKind); err != nil {
		return nil, err
	}
	if missing := c.MissingScopes(b.opts.RequiredScopes); missing != nil {
		return nil, &InsufficientScopeError{Missing: missing}
	}
	return c, nil
}

// accessTokenKind applies the token-type policy (RFC 9068 §4, RFC 8725
// §3.11-3.12): a verified JWT serves as an access token unless it says or
// shows it is another kind of token.
//
//   - typ at+jwt (RFC 9068) is an access token;
//   - with RequireAccessTokenType nothing else is;
//   - a logout token (typ logout+jwt, or an `events` claim), an ID token
//     or security event by its typ, a DPoP proof, or a Keycloak token whose
//     payload typ says "ID" or "Logout" never is;
//   - a token whose audience is gatehouse's own login client (ClientID) is
//     taken for an ID token — gatehouse's ID tokens travel in URLs
//     (RP-initiated logout) — when it has an ID token's marks (nonce,
//     at_hash, c_hash) or no scope at all. Tokens for other audiences pass:
//     Dex's access tokens carry at_hash and no typ.
func (b *Bearer) accessTokenKind(c *verify.Claims) error {
	typ := c.Type
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	if strings.EqualFold(typ, "at+jwt") {
		return nil
	}
	if b.opts.RequireAccessTokenType {
		return fmt.Errorf("%w: typ %q, not at+jwt", ErrNotAnAccessToken, c.Type)
	}
	for _, other := range nonAccessTypes {
		if strings.EqualFold(typ, other) {
			return fmt.Errorf("%w: typ %q", ErrNotAnAccessToken, c.Type)
		}
	}
	if _, ok := c.Claim("events"); ok {
		return fmt.Errorf("%w: a logout or security event token", ErrNotAnAccessToken)
	}
	payloadTyp, _ := c.Claim("typ")
	if kc, _ := payloadTyp.(string); strings.EqualFold(kc, "ID") || strings.EqualFold(kc, "Logout") {
		return fmt.Errorf("%w: payload typ %q", ErrNotAnAccessToken, kc)
	}
	if b.opts.ClientID == "" || !slices.Contains(c.Audience, b.opts.ClientID) {
		return nil
	}
	_, atHash := c.Claim("at_hash")
	_, cHash := c.Claim("c_hash")
	if atHash || cHash || c.Nonce != "" || len(c.Scopes) == 0 {
		return ErrIDTokenAsBearer
	}
	return nil
}

// nonAccessTypes are JOSE typ values of tokens that are never access tokens.
var nonAccessTypes = []string{
	"logout+jwt", "id_token+jwt", "secevent+jwt", "dpop+jwt", "token-introspection+jwt", "oauth-authz-req+jwt",
}

// RequiredScopes returns the scopes every token must carry.
func (b *Bearer) RequiredScopes() []string { return b.opts.RequiredScopes }

// Stats returns the verification counters (zero before first use).
func (b *Bearer) Stats() verify.Stats {
	if v := b.verifier.load(); v != nil {
		return v.Stats()
	}
	return verify.Stats{}
}

// build makes the verifier from the options and, for what they leave
// out, the provider's metadata.
func (b *Bearer) build(ctx context.Context) (*verify.Verifier, error) {
	ks, algs, err := b.keys(ctx)
	if err != nil {
		return nil, err
	}
	return verify.New(verify.Config{
		Issuer:     b.opts.Issuer,
		Audiences:  b.opts.Audiences,
		Algorithms: algs,
		Keys:       ks,
		ClockSkew:  b.opts.ClockSkew,
		Now:        b.opts.Now,
		CacheSize:  max(b.opts.CacheSize, 0),
	})
}

// keys returns the configured key set (Keys), or the provider's set for
// the configured jwks_uri or, by default, the discovered one, and the
// algorithms: configured, else what discovery advertises, else (fixed keys
// without discovery) every asymmetric algorithm — each usable only with
// keys of its type.
func (b *Bearer) keys(ctx context.Context) (verify.KeySet, []string, error) {
	algs := b.opts.Algorithms
	if b.opts.Keys != nil {
		if len(algs) == 0 {
			algs = verify.AsymmetricAlgorithms
		}
		return b.opts.Keys, algs, nil
	}
	p := b.opts.Provider
	jwksURI := b.opts.JWKSURI
	if jwksURI == "" || len(algs) == 0 {
		meta, err := p.Metadata(ctx)
		if err != nil {
			return nil, nil, err
		}
		if jwksURI == "" {
			jwksURI = meta.Endpoints.JWKS
		}
		algs = signingAlgorithms(algs, meta)
	}
	ks, err := p.KeySet(jwksURI)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	return ks, algs, nil
}
