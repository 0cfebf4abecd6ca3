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
	// required when Issuer is not the provider's.
	JWKSURI string
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
}

// ErrIDTokenAsBearer: an ID token was presented as an access token.
var ErrIDTokenAsBearer = fmt.Errorf("%w: an ID token is not an access token", verify.ErrInvalidToken)

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
	if opts.Issuer != opts.Provider.Issuer() && opts.JWKSURI == "" {
		return nil, errors.New("flow: bearer: a jwks_uri is required for an issuer other than the provider's")
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
	if b.looksLikeIDToken(c) {
		return nil, ErrIDTokenAsBearer
	}
	if missing := c.MissingScopes(b.opts.RequiredScopes); missing != nil {
		return nil, &InsufficientScopeError{Missing: missing}
	}
	return c, nil
}

// looksLikeIDToken spots ID tokens: at_hash or c_hash (claims only ID
// tokens have), or a nonce in a token for the gateway's own client —
// unless the header says at+jwt (RFC 9068). (Keycloak before 25 put a nonce
// in access tokens too, but for their resource audiences.)
func (b *Bearer) looksLikeIDToken(c *verify.Claims) bool {
	if strings.EqualFold(c.Type, "at+jwt") || strings.EqualFold(c.Type, "application/at+jwt") {
		return false
	}
	all := c.Map()
	if _, ok := all["at_hash"]; ok {
		return true
	}
	if _, ok := all["c_hash"]; ok {
		return true
	}
	return c.Nonce != "" && b.opts.ClientID != "" && slices.Contains(c.Audience, b.opts.ClientID)
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
	p := b.opts.Provider
	jwksURI, algs := b.opts.JWKSURI, b.opts.Algorithms
	if jwksURI == "" || len(algs) == 0 {
		meta, err := p.Metadata(ctx)
		if err != nil {
			return nil, err
		}
		if jwksURI == "" {
			jwksURI = meta.Endpoints.JWKS
		}
		algs = signingAlgorithms(algs, meta)
	}
	ks, err := p.KeySet(jwksURI)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
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
