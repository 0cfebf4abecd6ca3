package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// bearerError is a bearer request that cannot pass: a refused token, or
// a malformed Authorization header. Its answer is RFC 6750's.
type bearerError struct{ err error }

func (e *bearerError) Error() string { return e.err.Error() }
func (e *bearerError) Unwrap() error { return e.err }

// authenticateBearer authenticates a request by its bearer token; its
// claims are mapped like a login's (a token without the user claim passes
// without X-Forwarded-User; one named by an unverified e-mail is refused).
// With `dpop`, a DPoP request's proof is checked first and the token must
// be bound to its key; with `introspection`, a token that is not a JWT is
// checked at the provider (apitokens.go).
func (g *Gatehouse) authenticateBearer(r *http.Request, token string, dpop bool) (principal, error) {
	jkt, err := g.checkDPoP(r, token, dpop)
	if err != nil {
		g.metrics.bearerVerified(err)
		return principal{}, &bearerError{err}
	}
	if g.introspector != nil && !isJWT(token) {
		return g.authenticateOpaque(r, token, dpop, jkt)
	}
	claims, err := g.bearer.Verify(r.Context(), token)
	g.metrics.bearerVerified(err)
	if err != nil {
		return principal{}, &bearerError{err}
	}
	if g.dpop != nil {
		// cnf alone: the whole claim map would stay in the token cache.
		cnf, _ := claims.Claim("cnf")
		if err := g.checkBinding(map[string]any{"cnf": cnf}, dpop, jkt); err != nil {
			return principal{}, &bearerError{err}
		}
	}
	// Mapped once per token, from the claims it reads: a token from the
	// verified-token cache has its identity already.
	mapper := g.idp.mapper
	m := verify.Derived(claims, mapper.Key(), func(c *verify.Claims) *mappedIdentity {
		id, err := mapper.MapFrom(c.Claim)
		return &mappedIdentity{id, err}
	})
	if errors.Is(m.err, identity.ErrUnverifiedEmail) {
		return principal{}, &bearerError{fmt.Errorf("%w: %w", verify.ErrInvalidToken, m.err)}
	}
	return principal{id: &m.id, accessToken: token, notAfter: claims.Expiry, provider: g.bearerProvider}, nil
}

// mappedIdentity is what a token's claims map to, kept with them (shared
// by the requests that carry the token: read only).
type mappedIdentity struct {
	id  identity.Identity
	err error
}

// bearerFailed answers a bearer request that cannot pass (RFC 6750 §3):
// no token → 401 with a bare challenge; a malformed header → 400
// invalid_request; a bad token → 401 invalid_token; missing scopes → 403
// insufficient_scope; keys unavailable → 503. The reason is logged at
// debug level, never the token, and never sent to the client.
func (g *Gatehouse) bearerFailed(w http.ResponseWriter, r *http.Request, err error) error {
	if !errors.Is(err, verify.ErrNoToken) {
		g.audit(r, nil, zapcore.DebugLevel, eventBearerRefused, "bearer token refused",
			zap.String("reason", bearerResultNames[bearerResultOf(err)]), zap.Error(err))
	}
	p := problem{status: http.StatusUnauthorized, code: "invalid_token", title: "Invalid token",
		message: "The access token is missing, invalid or expired."}
	var param string
	var scopeErr *flow.InsufficientScopeError
	switch {
	case errors.Is(err, verify.ErrNoToken):
		p.code, p.title, p.message = "unauthenticated", "Authentication required", "This API requires a bearer token."
	case errors.Is(err, verify.ErrMalformedAuthorization):
		p.status, p.code, p.title = http.StatusBadRequest, "invalid_request", "Invalid request"
		p.message = "The Authorization header must be: Bearer <token>."
		param = `error="invalid_request"`
	case errors.As(err, &scopeErr):
		p.status, p.code, p.title = http.StatusForbidden, "insufficient_scope", "Insufficient scope"
		p.message = "The access token lacks a required scope."
		param = `error="insufficient_scope", scope="` + strings.Join(g.bearer.RequiredScopes(), " ") + `"`
	case errors.Is(err, flow.ErrProviderUnavailable):
		p.status, p.code, p.title = http.StatusServiceUnavailable, "temporarily_unavailable", "Temporarily unavailable"
		p.message = "Tokens cannot be checked right now. Please retry shortly."
		w.Header().Set("Retry-After", "5")
		g.logger.Warn("bearer tokens cannot be checked: the provider's keys are unavailable", zap.Error(err))
	case errors.Is(err, verify.ErrInvalidDPoPProof):
		p.code, p.title, p.message = "invalid_dpop_proof", "Invalid DPoP proof", "The DPoP proof is missing, invalid or replayed."
		param = `error="invalid_dpop_proof"`
	default:
		param = `error="invalid_token"`
	}
	if g.dpop == nil {
		w.Header().Set("WWW-Authenticate", g.challenge(r, param))
		return fail(w, r, p, err)
	}
	// Both schemes' challenges (RFC 9449 §7.1), the error with the scheme
	// the client should use: DPoP for a DPoP request, a proof's error, or
	// a token that must be DPoP-bound.
	bearerParam, dpopParam := param, ""
	if usedDPoP(r) || errors.Is(err, verify.ErrInvalidDPoPProof) || errors.Is(err, errBoundAsBearer) || errors.Is(err, errDPoPRequired) {
		bearerParam, dpopParam = "", param
	}
	w.Header().Del("WWW-Authenticate")
	if g.Bearer.DPoP != dpopRequired {
		w.Header().Add("WWW-Authenticate", g.challenge(r, bearerParam))
	}
	w.Header().Add("WWW-Authenticate", g.dpopChallenge(r, dpopParam))
	return fail(w, r, p, err)
}
