package caddymodule

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/userapi"
)

// startLogin signs the browser in, returning to the URL the request
// asked for: at the provider, or with several at the sign-in page.
func (g *Gatehouse) startLogin(w http.ResponseWriter, r *http.Request) error {
	return g.signIn(w, r, originalRequestURI(r), nil)
}

// startLoginTo sends the browser to provider p: a fresh login (state,
// nonce, PKCE verifier, return-to, provider, the acr asked for) goes into
// its own login cookie. It returns to target when the return-to validator
// accepts it, else to "/"; params adds hints or a step-up's acr_values.
func (g *Gatehouse) startLoginTo(w http.ResponseWriter, r *http.Request, target string, p *provider, params flow.LoginParams) error {
	returnTo := flow.SafeReturnTo(target, r.Host, g.trusted)
	authURL, login, err := p.login.StartLoginWith(r.Context(), redirectURL(r, p), returnTo, params)
	if err != nil {
		g.logger.Warn("cannot start a login: the OpenID provider is unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return fail(w, r, problem{
			status:  http.StatusServiceUnavailable,
			code:    "provider_unavailable",
			title:   "Sign-in is unavailable",
			message: "The identity provider cannot be reached right now. Please try again in a moment.",
		}, err)
	}
	login.Provider = p.name
	if err := g.sessions.SaveLogin(w, r, login); err != nil {
		return fail(w, r, problem{status: http.StatusInternalServerError, code: "internal_error", title: "Sign-in failed",
			message: "The sign-in could not be started. Please try again."}, err)
	}
	if c := g.logger.Check(zapcore.DebugLevel, "login started"); c != nil {
		// The path only: a query may hold the app's own secrets (SA2-31).
		c.Write(zap.String("return_to", pathOf(returnTo)))
	}
	p.metrics.loginStarted()
	w.Header().Set("Cache-Control", "no-store")
	redirect(w, authURL)
	return nil
}

// serveCallback finishes a login of provider p at its callback path
// (path_prefix/callback, with several providers path_prefix/callback/NAME).
// The provider is the one sealed in the login cookie: a callback at
// another provider's path is refused, and a code is only ever sent to the
// token endpoint of the provider the login was started at (RFC 9700 §4.4).
func (g *Gatehouse) serveCallback(w http.ResponseWriter, r *http.Request, p *provider) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return fail(w, r, problem{
			status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "The sign-in callback accepts GET only.",
		}, errors.New("gatehouse: callback method"))
	}
	// The code and state are in this URL: nothing we answer may pass it on.
	w.Header().Set("Referrer-Policy", "no-referrer")
	q := r.URL.Query()
	var login *session.Login
	if state := q.Get("state"); state != "" {
		// TakeLogin expires the login cookie: a callback URL works once.
		login, _ = g.sessions.TakeLogin(w, r, state)
	}
	if login != nil && login.Provider != p.name {
		return g.loginFailed(w, r, p, errWrongProvider)
	}
	res, err := p.login.FinishLogin(r.Context(), redirectURL(r, p), q, login)
	if err != nil {
		return g.loginFailed(w, r, p, err)
	}
	sess, err := flow.NewSession(res, g.now())
	if err != nil {
		return g.loginFailed(w, r, p, err)
	}
	sess.Provider = p.name
	if err := g.sessions.Save(w, r, g.group.stored(sess)); err != nil {
		return g.loginFailed(w, r, p, err)
	}
	g.audit(r, p, zapcore.InfoLevel, eventLogin, "login succeeded", userFields(&sess.Identity, sessionRef(sess))...)
	p.metrics.loginSucceeded()

	// The return-to was validated when stored; validate it again now that
	// it is used (CVE-2024-21497).
	target := flow.SafeReturnTo(login.ReturnTo, r.Host, g.trusted)
	w.Header().Set("Cache-Control", "no-store")
	if g.sameSite == http.SameSiteStrictMode {
		// The browser arrived here from the provider, a cross-site
		// navigation: a redirect would still be cross-site and a Strict
		// cookie would not be sent. A same-site page hop makes it count.
		writeContinuePage(w, target)
		return nil
	}
	redirect(w, target)
	return nil
}

// loginFailed logs why a callback failed and answers with a page that
// says what the user can do, without echoing anything from the request.
func (g *Gatehouse) loginFailed(w http.ResponseWriter, r *http.Request, prov *provider, err error) error {
	prov.metrics.loginFailed(err)
	p := problem{
		status:  http.StatusBadRequest,
		code:    "login_failed",
		title:   "Sign-in failed",
		message: "This sign-in link is invalid, expired or was already used. Please start again.",
	}
	var pe *flow.ProviderError
	var ee *flow.ExchangeError
	switch {
	case errors.Is(err, flow.ErrACR):
		p.status, p.code, p.title = http.StatusForbidden, "insufficient_user_authentication", "Stronger sign-in required"
		p.message = "The identity provider did not confirm the stronger sign-in this page needs."
	case errors.Is(err, userapi.ErrNotMember):
		p.status, p.code, p.title = http.StatusForbidden, "access_denied", "Access denied"
		p.message = "Your account is not a member of an organization, team or group allowed here."
	case errors.As(err, &pe):
		switch {
		case pe.Code == "access_denied":
			p.status, p.code, p.title = http.StatusForbidden, "access_denied", "Sign-in cancelled"
			p.message = "Sign-in was cancelled or refused at the identity provider."
		case knownProviderErrors[pe.Code]:
			// Only codes from the specifications are shown: the query
			// string is the attacker's to write.
			p.message = "The identity provider could not sign you in (" + pe.Code + "). Please start again."
		default:
			p.message = "The identity provider could not sign you in. Please start again."
		}
	case errors.As(err, &ee):
		p.message = "The identity provider did not accept this sign-in. Please start again."
	case errors.Is(err, flow.ErrProviderUnavailable):
		p.status, p.code, p.title = http.StatusBadGateway, "provider_unavailable", "Sign-in is unavailable"
		p.message = "The identity provider cannot be reached right now. Please try again in a moment."
	case errors.Is(err, flow.ErrIDToken), errors.Is(err, flow.ErrUserinfo), errors.Is(err, flow.ErrTokenResponse),
		errors.Is(err, identity.ErrIncomplete), errors.Is(err, identity.ErrUnverifiedEmail), errors.Is(err, session.ErrTooLarge),
		errors.Is(err, flow.ErrUserAPI):
		p.status, p.code = http.StatusBadGateway, "provider_response_rejected"
		p.message = "The identity provider's answer could not be accepted. Please contact the site's administrator."
	}
	// Anyone can send a callback with a junk code for a login they started
	// (review SA2-16): the provider's refusal is logged at debug, not warn.
	level := zapcore.WarnLevel
	if errors.As(err, &ee) || errors.Is(err, flow.ErrStateMismatch) || errors.Is(err, flow.ErrMissingCode) || errors.Is(err, errWrongProvider) {
		level = zapcore.DebugLevel
	}
	g.audit(r, prov, level, eventLoginFailed, "login failed",
		zap.String("reason", loginFailureNames[loginFailureOf(err)]), zap.Int("status", p.status), zap.Error(err))
	return fail(w, r, p, err)
}

// knownProviderErrors are the authorization error codes of RFC 6749
// §4.1.2.1 and OpenID Connect Core §3.1.2.6.
var knownProviderErrors = map[string]bool{
	"invalid_request": true, "unauthorized_client": true, "access_denied": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "interaction_required": true, "login_required": true,
	"account_selection_required": true, "consent_required": true, "invalid_request_uri": true,
	"invalid_request_object": true, "request_not_supported": true, "request_uri_not_supported": true,
	"registration_not_supported": true,
}
