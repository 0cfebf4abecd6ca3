package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
)

// maxLogoutForm bounds the body of a back-channel logout request.
const maxLogoutForm = 64 << 10

// logoutReplayWindow is how long a logout token's jti is remembered: past
// it, the token is too old to be accepted anyway (flow refuses a logout
// token issued more than a few minutes ago).
const logoutReplayWindow = 15 * time.Minute

// serveBackchannelLogout is the back-channel logout endpoint (OpenID
// Connect Back-Channel Logout 1.0 §2.5–2.8): the provider POSTs a
// logout_token; once verified (flow.Client.VerifyLogoutToken) and not a
// replay, every session of its provider session (sid) — or, without one,
// of its user (sub) — ends, as far as the session store reaches: with
// `store redis`, on every instance; with cookie sessions, on this one.
// It answers 200, 400 with a JSON error, or 503 when the provider's keys
// or the session store cannot be reached (the provider may retry), all
// with Cache-Control: no-store. Each provider has its own endpoint
// (path_prefix/backchannel_logout, with several providers
// path_prefix/backchannel_logout/NAME), and a logout ends only sessions
// of the provider p it arrived for.
func (g *Gatehouse) serveBackchannelLogout(w http.ResponseWriter, r *http.Request, p *provider) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeLogoutError(w, http.StatusMethodNotAllowed, "invalid_request", "back-channel logout takes POST")
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutForm)
	if err := r.ParseForm(); err != nil {
		writeLogoutError(w, http.StatusBadRequest, "invalid_request", "the body is not a form of at most 64 KiB")
		return nil
	}
	if tokens := r.PostForm["logout_token"]; len(tokens) != 1 || tokens[0] == "" {
		writeLogoutError(w, http.StatusBadRequest, "invalid_request", "exactly one logout_token is required")
		return nil
	}
	lt, err := p.logout.VerifyLogoutToken(r.Context(), r.PostForm.Get("logout_token"))
	switch {
	case errors.Is(err, flow.ErrProviderUnavailable):
		g.logger.Warn("a back-channel logout could not be checked: the provider is unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeLogoutError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the provider's keys cannot be fetched now")
		return nil
	case err != nil:
		g.audit(r, p, zapcore.InfoLevel, eventLogoutRefused, "back-channel logout refused", zap.String("reason", "invalid_token"), zap.Error(err))
		writeLogoutError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return nil
	}
	now := g.now()
	replayKey := "jti\x00" + lt.ID
	if p.name != "" {
		replayKey = "jti\x00" + p.name + "\x00" + lt.ID
	}
	first, err := g.sessions.FirstUse(r.Context(), replayKey, now.Add(logoutReplayWindow))
	if err == nil && !first {
		g.audit(r, p, zapcore.InfoLevel, eventLogoutRefused, "back-channel logout refused: logout token replayed",
			zap.String("reason", "replayed"), zap.String("sid", lt.SessionID), zap.String("sub", lt.Subject))
		writeLogoutError(w, http.StatusBadRequest, "invalid_request", "logout token replayed")
		return nil
	}
	if err == nil {
		// Sessions that exist now end; the provider's clock (iat) does not
		// decide, so a skewed clock cannot spare a session.
		err = g.sessions.EndProviderSession(r.Context(), p.name, lt.SessionID, lt.Subject, now)
	}
	if err != nil {
		g.logger.Warn("a back-channel logout could not be applied: the session store cannot be reached", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeLogoutError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store cannot be reached now")
		return nil
	}
	g.audit(r, p, zapcore.InfoLevel, eventLogout, "back-channel logout",
		zap.String("kind", revocationNames[revokedBackchannel]), zap.String("sid", lt.SessionID), zap.String("sub", lt.Subject))
	p.metrics.revoked[revokedBackchannel].Inc()
	w.WriteHeader(http.StatusOK)
	return nil
}

// writeLogoutError answers {"error": code, "error_description": description}
// (Back-Channel Logout 1.0 §2.8).
func writeLogoutError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, description})
}
