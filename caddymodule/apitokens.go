package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// The API side beyond JWTs checked locally: opaque tokens checked at the
// provider's introspection endpoint (RFC 7662), and DPoP-bound tokens
// (RFC 9449) whose proof of possession is checked on every request.

// IntrospectionConfig is `bearer { introspection { … } }`: tokens that are
// not JWTs are checked at the provider's introspection endpoint, gatehouse
// authenticating there as at the token endpoint (client_id, client_secret,
// client_auth). JWTs are still verified locally.
type IntrospectionConfig struct {
	// Endpoint is the introspection endpoint. Default: discovery's
	// introspection_endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	// CacheTTL bounds how long an active answer is trusted (never past the
	// token's exp): a revoked token passes at most this long. Default 1m.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`
	// CacheSize bounds the answers kept. Default 10000.
	CacheSize int `json:"cache_size,omitempty"`
}

// DPoP modes of `bearer { dpop … }`.
const (
	dpopOptional = "optional" // DPoP-bound tokens need their proof; Bearer tokens pass
	dpopRequired = "required" // only DPoP-bound tokens with their proof pass
)

// errDPoPRequired: a Bearer token where `dpop required` takes DPoP only.
var errDPoPRequired = fmt.Errorf("%w: this API takes DPoP-bound tokens only (Authorization: DPoP)", verify.ErrInvalidToken)

// errBoundAsBearer: a DPoP-bound token sent without its proof (RFC 9449
// §7.2: the binding would be worthless if it passed as a bearer token).
var errBoundAsBearer = fmt.Errorf("%w: a DPoP-bound token sent as Bearer", verify.ErrInvalidToken)

// unmarshalCaddyfile reads the introspection block (or none: defaults).
func (c *IntrospectionConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return subdirectives(d, "bearer introspection ", nil, func(sub string) (bool, error) {
		var err error
		switch sub {
		case "endpoint":
			err = oneArg(d, &c.Endpoint)
		case "cache_ttl":
			err = durationArg(d, "bearer introspection ", &c.CacheTTL)
		case "cache_size":
			err = intArg(d, "bearer introspection ", &c.CacheSize)
		default:
			err = d.Errf("gatehouse: unrecognized bearer introspection subdirective %q", sub)
		}
		return false, err
	})
}

// validateAPITokens checks introspection and dpop of the bearer block.
func (g *Gatehouse) validateAPITokens(bad badFunc) {
	b := g.Bearer
	if c := b.Introspection; c != nil {
		if pc := &g.providerConfigs()[0].ProviderConfig; pc.ClientID == "" || pc.ClientSecret == "" && pc.ClientKey == "" {
			bad("bearer introspection", "needs client_id and client_secret (or client_key): gatehouse authenticates at the introspection endpoint")
		}
		if c.Endpoint != "" {
			if err := flow.CheckEndpointURL(c.Endpoint); err != nil {
				bad("bearer introspection endpoint", "%v", err)
			}
		}
		if d := time.Duration(c.CacheTTL); d < 0 || d > time.Hour {
			bad("bearer introspection cache_ttl", "must be between 0 and 1h")
		}
		if c.CacheSize < 0 {
			bad("bearer introspection cache_size", "must not be negative")
		}
	}
	switch b.DPoP {
	case "", dpopOptional, dpopRequired:
	default:
		bad("bearer dpop", "%q is neither optional nor required", b.DPoP)
	}
}

// provisionAPITokens builds the introspector and the DPoP verifier.
func (g *Gatehouse) provisionAPITokens() error {
	if c := g.Bearer.Introspection; c != nil {
		// A client of its own: in bearer { only } mode there is no login
		// client, and this one needs no scopes or redirects.
		client, err := flow.NewClient(g.idp.cfg.clientOptions(g.idp, g.now))
		if err != nil {
			return fmt.Errorf("gatehouse: bearer introspection: %w", err)
		}
		if g.introspector, err = flow.NewIntrospector(flow.IntrospectorOptions{
			Client: client, Endpoint: c.Endpoint, Issuer: g.Bearer.Issuer,
			Audiences: g.Bearer.Audiences, RequiredScopes: g.Bearer.RequiredScopes,
			ActiveTTL: time.Duration(c.CacheTTL), CacheSize: c.CacheSize,
			ClockSkew: time.Duration(g.Bearer.ClockSkew), Now: g.now,
		}); err != nil {
			return fmt.Errorf("gatehouse: bearer introspection: %w", err)
		}
	}
	if g.Bearer.DPoP != "" {
		var err error
		if g.dpop, err = verify.NewDPoPVerifier(verify.DPoPConfig{Now: g.now}); err != nil {
			return fmt.Errorf("gatehouse: bearer dpop: %w", err)
		}
	}
	return nil
}

// accessToken reads the request's access token: Bearer, or with `dpop`
// also DPoP (dpop true).
func (g *Gatehouse) accessToken(h http.Header) (token string, dpop bool, err error) {
	if g.dpop == nil {
		token, err = verify.BearerToken(h)
		return token, false, err
	}
	return verify.AccessToken(h)
}

// checkDPoP checks a DPoP request's proof and returns the thumbprint of
// its key; for a Bearer request, that `dpop required` allows it.
func (g *Gatehouse) checkDPoP(r *http.Request, token string, dpop bool) (string, error) {
	if g.dpop == nil {
		return "", nil
	}
	if !dpop {
		if g.Bearer.DPoP == dpopRequired {
			return "", errDPoPRequired
		}
		return "", nil
	}
	u, err := url.Parse(origin(r) + originalRequestURI(r))
	if err != nil {
		return "", fmt.Errorf("%w: the request URL: %v", verify.ErrInvalidDPoPProof, err)
	}
	return g.dpop.Verify(r.Header.Values("DPoP"), r.Method, u, token)
}

// checkBinding checks a token's cnf.jkt against the DPoP proof's key
// (jkt, "" for a Bearer request): a bound token needs its proof.
func (g *Gatehouse) checkBinding(claims map[string]any, dpop bool, jkt string) error {
	if g.dpop == nil {
		return nil
	}
	if dpop {
		return verify.CheckDPoPBinding(claims, jkt)
	}
	if _, bound := verify.ConfirmationThumbprint(claims); bound {
		return errBoundAsBearer
	}
	return nil
}

// isJWT reports whether token has the shape of a JWS compact
// serialization (two dots); anything else is opaque.
func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

// authenticateOpaque authenticates a request by an opaque token, at the
// introspection endpoint (or its cache).
func (g *Gatehouse) authenticateOpaque(r *http.Request, token string, dpop bool, jkt string) (principal, error) {
	in, err := g.introspector.Introspect(r.Context(), token)
	g.metrics.bearerVerified(err)
	if err != nil {
		return principal{}, &bearerError{err}
	}
	if err := g.checkBinding(in.Map(), dpop, jkt); err != nil {
		return principal{}, &bearerError{err}
	}
	// Mapped once per answer: a cached answer has its identity already.
	m := in.Memo(func(in *flow.Introspection) any {
		id, err := g.idp.mapper.Map(in.Map())
		return &mappedIdentity{id, err}
	}).(*mappedIdentity)
	if errors.Is(m.err, identity.ErrUnverifiedEmail) {
		return principal{}, &bearerError{fmt.Errorf("%w: %w", verify.ErrInvalidToken, m.err)}
	}
	notAfter := in.Expiry
	if notAfter.IsZero() {
		notAfter = g.now().Add(time.Minute) // no exp: an assertion lives its own lifetime at most
	}
	return principal{id: &m.id, accessToken: token, notAfter: notAfter, provider: g.bearerProvider}, nil
}

// dpopChallenge is the DPoP challenge (RFC 9449 §7.1), with params.
func (g *Gatehouse) dpopChallenge(r *http.Request, params string) string {
	c := `DPoP algs="` + strings.Join(verify.DPoPAlgorithms, " ") + `"`
	if params != "" {
		c += ", " + params
	}
	if g.resourceMeta != nil {
		c += `, resource_metadata="` + g.resourceMeta.metadataURL(r) + `"`
	}
	return c
}

// usedDPoP reports whether r's Authorization names the DPoP scheme.
func usedDPoP(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "DPoP")
}
