package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// acrMet reports whether id authenticated with one of require_acr: its
// acr claim (kept in the session from the ID token, or the bearer
// token's) is one of them.
func (g *Gatehouse) acrMet(id *identity.Identity) bool {
	for _, v := range id.Claims["acr"] {
		if slices.Contains(g.RequireACR, v) {
			return true
		}
	}
	return false
}

// errInsufficientACR: the user is signed in, but not with an acr this
// route requires.
var errInsufficientACR = errors.New("gatehouse: the user did not authenticate with an acr require_acr lists")

// stepUp answers a user whose authentication is too weak for the route
// (require_acr). A browser navigation with a session goes back to its
// provider with acr_values (the new session replaces the old one on the
// way back); everything else gets 401 with error=
// "insufficient_user_authentication" and the acr_values (RFC 9470 §3). A
// public path passes anonymously.
func (g *Gatehouse) stepUp(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p principal) error {
	if g.public.match(r) {
		return g.pass(w, r, next, nil)
	}
	setAnonymous(r)
	acr := strings.Join(g.RequireACR, " ")
	if p.provider != nil && p.provider.cfg.plain() {
		// No ID token, no acr: sending the user back would only loop.
		g.audit(r, p.provider, zapcore.InfoLevel, eventRefused, "refused: require_acr, but the provider cannot say an acr",
			userFields(p.id, zap.String("reason", "acr"))...)
		return fail(w, r, problem{
			status: http.StatusForbidden, code: "insufficient_user_authentication", title: "Stronger sign-in required",
			message: "This page requires a stronger sign-in than your identity provider can confirm.", signOut: g.signOutPath,
		}, errInsufficientACR)
	}
	if p.session && p.provider != nil && p.provider.login != nil && isNavigation(r) && g.unauthenticated != unauth401 {
		g.audit(r, p.provider, zapcore.InfoLevel, eventRefused, "step-up: sent to the provider for a stronger authentication",
			userFields(p.id, zap.String("reason", "acr"), zap.String("acr_values", acr))...)
		if _, forward := next.(forwardAnswer); forward {
			// The fronting proxy sends the browser to path_prefix/start,
			// which may be another block's: the acr goes along.
			more := "&provider=" + url.QueryEscape(p.provider.name) + "&acr_values=" + url.QueryEscape(acr)
			if p.provider.name == "" {
				more = "&acr_values=" + url.QueryEscape(acr)
			}
			return g.forwardLoginWith(w, r, more)
		}
		return g.startLoginTo(w, r, originalRequestURI(r), p.provider, flow.LoginParams{ACRValues: g.RequireACR})
	}
	g.audit(r, p.provider, zapcore.InfoLevel, eventRefused, "refused: authentication too weak for require_acr",
		userFields(p.id, zap.String("reason", "acr"), zap.Bool("bearer", !p.session))...)
	w.Header().Set("WWW-Authenticate", g.challenge(r, `error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="`+acr+`"`))
	return fail(w, r, problem{
		status: http.StatusUnauthorized, code: "insufficient_user_authentication", title: "Stronger sign-in required",
		message: "This resource requires a stronger sign-in than the one you used.",
	}, errInsufficientACR)
}
