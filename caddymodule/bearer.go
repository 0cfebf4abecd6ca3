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
func (g *Gatehouse) authenticateBearer(r *http.Request, token string) (principal, error) {
	claims, err := g.bearer.Verify(r.Context(), token)
	g.metrics.bearerVerified(err)
	if err != nil {
		return principal{}, &bearerError{err}
	}
	id, err := g.idp.mapper.Map(claims.Map())
	if errors.Is(err, identity.ErrUnverifiedEmail) {
		return principal{}, &bearerError{fmt.Errorf("%w: %w", verify.ErrInvalidToken, err)}
	}
	return principal{id: &id, accessToken: token, notAfter: claims.Expiry}, nil
}

// bearerFailed answers a bearer request that cannot pass (RFC 6750 §3):
// no token → 401 with a bare challenge; a malformed header → 400
// invalid_request; a bad token → 401 invalid_token; missing scopes → 403
// insufficient_scope; keys unavailable → 503. The reason is logged at
// debug level, never the token, and never sent to the client.
func (g *Gatehouse) bearerFailed(w http.ResponseWriter, r *http.Request, err error) error {
	if !errors.Is(err, verify.ErrNoToken) {
		g.audit(r, zapcore.DebugLevel, eventBearerRefused, "bearer token refused",
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
	default:
		param = `error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", g.challenge(r, param))
	return fail(w, r, p, err)
}
