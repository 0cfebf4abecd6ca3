package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
)

// maxSignOutForm bounds the body of a POST to the sign-out endpoint.
const maxSignOutForm = 8 << 10

// serveSignOut signs the user out (GET or POST at path_prefix/sign_out):
// every gatehouse cookie is expired, the session is revoked in the
// session store (with cookie sessions: on this instance, see
// session.CookieStore) and its refresh token at the provider (when it has
// a revocation endpoint), and the browser goes to the provider's
// end_session_endpoint (RP-initiated logout), or straight to the target:
// `rd` when it passes the return-to validator, else post_logout_redirect.
func (g *Gatehouse) serveSignOut(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Sign out with GET or POST."}, errors.New("gatehouse: sign-out method"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignOutForm)
	_ = r.ParseForm()
	target := g.PostLogoutRedirect
	if rd := r.Form.Get("rd"); rd != "" && flow.ValidateReturnTo(rd, r.Host, g.trusted) == nil {
		target = rd
	}
	// Another site may not sign the user out (logout CSRF, review SA2-15):
	// a cross-site GET gets a page whose button posts here; a cross-site
	// POST is refused.
	if crossSite(r) {
		if r.Method == http.MethodPost {
			return fail(w, r, problem{status: http.StatusForbidden, code: "cross_site", title: "Sign-out refused",
				message: "Sign out from this site's own page."}, errors.New("gatehouse: cross-site sign-out"))
		}
		writeSignOutPage(w, g.signOutPath, target)
		return nil
	}

	var idToken string
	// The provider whose end-session the browser visits: the session's,
	// or without one the only provider.
	var p *provider
	if len(g.idps) == 1 {
		p = g.idp
	}
	sess, _, err := g.sessions.Load(r)
	if err == nil {
		p = g.sessionProvider(sess)
		err = g.sessions.Revoke(r.Context(), sess)
	}
	if errors.Is(err, session.ErrUnavailable) {
		// The session could not be ended where it lives: keep the cookie,
		// so that the user can sign out again, and say so.
		g.logger.Warn("signing out failed: the session store cannot be reached", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return fail(w, r, storeUnavailable, err)
	}
	if err == nil {
		idToken = sess.IDToken
		if sess.RefreshToken != "" && p != nil {
			g.revokeAtProvider(p, sess.RefreshToken)
		}
		g.audit(r, p, zapcore.InfoLevel, eventLogout, "signed out",
			userFields(&sess.Identity, sessionRef(sess), zap.String("kind", revocationNames[revokedSignOut]))...)
		cmp.Or(p, g.idp).metrics.revoked[revokedSignOut].Inc()
	}
	g.sessions.ClearAll(w, r)
	w.Header().Set("Cache-Control", "no-store")

	if p == nil {
		redirect(w, target)
		return nil
	}
	if endSession, ok := p.endSession.EndSessionURL(r.Context(), idToken, g.absolute(r, target)); ok {
		redirect(w, endSession)
		return nil
	}
	redirect(w, target)
	return nil
}

// crossSite reports whether a browser says r comes from another site:
// Sec-Fetch-Site, or else an Origin that is not this site's. Requests
// that say neither (older browsers, programs) are taken as same-site.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "cross-site", "same-site":
		return true
	}
	o := r.Header.Get("Origin")
	return o != "" && o != origin(r)
}

// revokeAtProvider revokes a refresh token at provider p in the
// background, bounded by the config's lifetime and 15 seconds.
func (g *Gatehouse) revokeAtProvider(p *provider, refreshToken string) {
	go func() {
		ctx, cancel := context.WithTimeout(g.ctx, 15*time.Second)
		defer cancel()
		if err := p.revoke.Revoke(ctx, refreshToken, "refresh_token"); err != nil {
			g.logger.Warn("revoking the refresh token at sign-out failed", zap.Error(err))
		}
	}()
}
