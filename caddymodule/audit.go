package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
)

// Audit events: one log line per security-relevant event, on the logger
// http.handlers.gatehouse.audit, so an operator can send them to a file of
// their own (Caddy's `log { include http.handlers.gatehouse.audit }`). The
// field names are stable and listed in the README ("Audit events"); every
// event has
//
//	event       login | login_failed | logout | logout_refused | session_ended | refused | bearer_refused
//	provider    the provider's issuer (with several providers, also
//	            provider_name: its name)
//	request_id  Caddy's {http.request.uuid}, which Caddy then also adds to
//	            the request's access log line as "uuid"
//
// and never a token, a code, a cookie or a secret: users are named by
// sub, user and email, sessions by a hash of their ID.
const (
	eventLogin         = "login"
	eventLoginFailed   = "login_failed"
	eventLogout        = "logout"
	eventLogoutRefused = "logout_refused"
	eventSessionEnded  = "session_ended"
	eventRefused       = "refused"
	eventBearerRefused = "bearer_refused"
)

// audit logs event of provider p (nil: the block's first) at level, with
// the fields every event carries before fields. Callers on paths an
// anonymous client can drive log at debug level, so a flood of junk costs
// no log volume.
func (g *Gatehouse) audit(r *http.Request, p *provider, level zapcore.Level, event, msg string, fields ...zap.Field) {
	c := g.auditLog.Check(level, msg)
	if c == nil {
		return
	}
	if p == nil {
		p = g.idp
	}
	all := make([]zap.Field, 0, 4+len(fields))
	all = append(all, zap.String("event", event), zap.String("provider", p.cfg.Issuer))
	if p.name != "" {
		all = append(all, zap.String("provider_name", p.name))
	}
	all = append(all, zap.String("request_id", requestID(r)))
	c.Write(append(all, fields...)...)
}

// requestID is Caddy's ID of r ({http.request.uuid}); "" outside a Caddy
// server (the handler tests), whose requests lack what Caddy's replacer
// needs to resolve it.
func requestID(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	if _, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); !ok {
		return ""
	}
	return repl.ReplaceAll("{http.request.uuid}", "")
}

// sessionRef names a session in the logs: the first 16 hex digits of the
// SHA-256 of its ID, enough to follow one session from login to logout,
// never the ID a store looks it up by.
func sessionRef(s *session.Session) zap.Field {
	sum := sha256.Sum256([]byte(s.ID))
	return zap.String("session", hex.EncodeToString(sum[:8]))
}

// userFields name the user id is; with a session, sessionRef follows.
func userFields(id *identity.Identity, more ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("sub", id.Subject), zap.String("user", id.User), zap.String("email", id.Email)}, more...)
}

// sessionEndReason is why a request's session cookie no longer signs
// anyone in; invalid (a cookie that does not authenticate, from an old
// secret or anyone's hand) is logged at debug level only.
func sessionEndReason(err error) string {
	switch {
	case errors.Is(err, session.ErrIdle):
		return "idle"
	case errors.Is(err, session.ErrRevoked):
		return "revoked"
	case errors.Is(err, session.ErrExpired), errors.Is(err, flow.ErrSessionExpired):
		return "expired"
	case errors.Is(err, flow.ErrRefreshRejected):
		return "refresh_rejected"
	case errors.Is(err, session.ErrInvalid):
		return "invalid"
	}
	return "ended"
}
