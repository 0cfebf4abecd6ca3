package caddymodule

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ServeHTTP strips client-supplied identity headers, serves gatehouse's own
// endpoints, authenticates a bearer token (when configured) or else the
// session cookie, refreshes the session's tokens when they are about to
// expire, applies the allow_* rules and lets the request through with its
// identity; anything else is handled as unauthenticated.
func (g *Gatehouse) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripHeaders(r.Header, g.strip)

	if g.bearer != nil {
		token, err := verify.BearerToken(r.Header)
		if !errors.Is(err, verify.ErrNoToken) {
			// A bearer request is decided by its token alone: never by a cookie.
			return g.serveBearer(w, r, next, token, err)
		}
		if g.store == nil { // bearer { only }
			if g.Unauthenticated == "allow" {
				return next.ServeHTTP(w, r)
			}
			return g.bearerFailed(w, r, verify.ErrNoToken)
		}
	}

	switch r.URL.Path {
	case g.callbackPath:
		return g.serveCallback(w, r)
	case g.signOutPath:
		return g.serveSignOut(w, r)
	}

	sess, err := g.session(w, r)
	if err == nil {
		g.store.StripCookies(r)
		id := sessionIdentity(sess)
		return g.pass(w, r, next, &id)
	}
	if errors.Is(err, flow.ErrProviderUnavailable) {
		// The tokens expired and cannot be refreshed right now; the
		// session is kept for when the provider is back.
		w.Header().Set("Retry-After", "5")
		return fail(w, r, problem{
			status: http.StatusServiceUnavailable, code: "provider_unavailable", title: "Temporarily unavailable",
			message: "Your session needs to be renewed, but the identity provider cannot be reached right now. Please try again in a moment.",
		}, err)
	}
	return g.serveUnauthenticated(w, r, next)
}

// session returns the request's valid, fresh session. Its cookie is
// re-sealed when it was sealed with an older cookie_secret or its tokens
// were refreshed. A cookie that is unusable, signed out, or whose session
// ended (refresh refused, tokens expired) is expired and the error wraps
// session.ErrNoSession; flow.ErrProviderUnavailable means the session needs
// a refresh the provider cannot give now.
func (g *Gatehouse) session(w http.ResponseWriter, r *http.Request) (*session.Session, error) {
	sess, rotate, err := g.store.Load(r)
	if err == nil && signedOut.has(sess.ID) {
		err = fmt.Errorf("%w: signed out", session.ErrNoSession)
	}
	if err == nil {
		var refreshed bool
		var ferr error
		sess, refreshed, ferr = g.refresher.Fresh(r.Context(), sess)
		switch {
		case ferr == nil:
			rotate = rotate || refreshed
		case errors.Is(ferr, flow.ErrProviderUnavailable):
			// Every such request says so; the provider's own trouble is
			// logged where it is met (discovery, JWKS) and in the access log.
			if c := g.logger.Check(zapcore.DebugLevel, "a session could not be refreshed: the provider is unavailable"); c != nil {
				c.Write(zap.Error(ferr))
			}
			return nil, ferr
		default:
			g.logger.Info("session ended", zap.Error(ferr))
			err = fmt.Errorf("%w: %w", session.ErrNoSession, ferr)
		}
	}
	if err != nil {
		if g.store.HasSession(r) {
			if c := g.logger.Check(zapcore.DebugLevel, "session cookie not usable"); c != nil {
				c.Write(zap.Error(err))
			}
			g.store.ClearSession(w, r)
		}
		return nil, err
	}
	if rotate {
		if err := g.store.Save(w, r, sess); err != nil {
			g.logger.Warn("saving the session failed", zap.Error(err))
		}
	}
	return sess, nil
}

// serveUnauthenticated applies `unauthenticated`: continue anonymously,
// answer 401, or start a login (the default for browser navigations).
func (g *Gatehouse) serveUnauthenticated(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch {
	case g.Unauthenticated == "allow":
		g.store.StripCookies(r)
		return next.ServeHTTP(w, r)
	case g.Unauthenticated == "401", g.Unauthenticated == "" && !isNavigation(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		return fail(w, r, problem{
			status:  http.StatusUnauthorized,
			code:    "unauthenticated",
			title:   "Sign-in required",
			message: "This resource requires you to sign in.",
		}, errors.New("gatehouse: no session"))
	}
	return g.startLogin(w, r)
}

// startLogin sends the browser to the provider: a fresh login (state,
// nonce, PKCE verifier, return-to) goes into its own login cookie, and any
// unusable session cookie is expired.
func (g *Gatehouse) startLogin(w http.ResponseWriter, r *http.Request) error {
	returnTo := flow.SafeReturnTo(originalRequestURI(r), r.Host, g.trusted)
	authURL, login, err := g.client.StartLogin(r.Context(), g.redirectURL(r), returnTo)
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
	if err := g.store.SaveLogin(w, r, login); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if c := g.logger.Check(zapcore.DebugLevel, "login started"); c != nil {
		c.Write(zap.String("return_to", returnTo))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusFound)
	return nil
}

// serveCallback finishes a login at PathPrefix/callback.
func (g *Gatehouse) serveCallback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return fail(w, r, problem{
			status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "The sign-in callback accepts GET only.",
		}, errors.New("gatehouse: callback method"))
	}
	q := r.URL.Query()
	var login *session.Login
	if state := q.Get("state"); state != "" {
		// TakeLogin expires the login cookie: a callback URL works once.
		login, _ = g.store.TakeLogin(w, r, state)
	}
	res, err := g.client.FinishLogin(r.Context(), g.redirectURL(r), q, login)
	if err != nil {
		return g.loginFailed(w, r, err)
	}
	sess, err := g.newSessionFrom(nil, res)
	if err != nil {
		return g.loginFailed(w, r, err)
	}
	if err := g.store.Save(w, r, sess); err != nil {
		return g.loginFailed(w, r, err)
	}
	g.logger.Info("login succeeded", zap.String("sub", sess.Subject), zap.String("user", sess.User), zap.String("email", sess.Email))

	// The return-to was validated when stored; validate it again now that
	// it is used (CVE-2024-21497).
	target := flow.SafeReturnTo(login.ReturnTo, r.Host, g.trusted)
	w.Header().Set("Cache-Control", "no-store")
	if g.CookieSameSite == "strict" {
		// The browser arrived here from the provider, a cross-site
		// navigation: a redirect would still be cross-site and a Strict
		// cookie would not be sent. A same-site page hop makes it count.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		_, _ = w.Write([]byte(`<!doctype html><meta http-equiv="refresh" content="0;url=` + html.EscapeString(target) +
			`"><title>Signed in</title><p>Signed in. <a href="` + html.EscapeString(target) + `">Continue</a></p>`))
		return nil
	}
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// pass applies the allow_* rules and hands the identity to the next handler.
func (g *Gatehouse) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, id *identity) error {
	if !g.rules.allows(id) {
		return g.forbidden(w, r, id)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	g.setIdentity(r, repl, id)
	return next.ServeHTTP(w, r)
}

// forbidden answers an authenticated user the allow_* rules refuse: a
// page that says who they are signed in as and offers sign-out, or 403 JSON.
func (g *Gatehouse) forbidden(w http.ResponseWriter, r *http.Request, id *identity) error {
	who := id.email
	if who == "" {
		who = id.user
	}
	if c := g.logger.Check(zapcore.InfoLevel, "access refused by the allow rules"); c != nil {
		c.Write(zap.String("user", id.user), zap.String("email", id.email))
	}
	p := problem{
		status: http.StatusForbidden, code: "forbidden", title: "Access denied",
		message: "You are signed in as " + who + ", but this account may not use this page.",
	}
	if id.fromSession {
		p.signOut = g.signOutPath
	}
	return fail(w, r, p, errors.New("gatehouse: refused by the allow rules"))
}

// serveBearer authenticates a request by its bearer token: valid → the
// token's identity goes upstream; invalid → an RFC 6750 error.
func (g *Gatehouse) serveBearer(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, token string, err error) error {
	if err != nil {
		return g.bearerFailed(w, r, err)
	}
	claims, err := g.bearer.Verify(r.Context(), token)
	if err != nil {
		return g.bearerFailed(w, r, err)
	}
	if g.store != nil {
		g.store.StripCookies(r)
	}
	id := g.claimsIdentity(claims, token)
	return g.pass(w, r, next, &id)
}

// bearerFailed answers a bearer request that cannot pass (RFC 6750 §3):
// no token → 401 with a bare challenge; a malformed header → 400
// invalid_request; a bad token → 401 invalid_token; missing scopes → 403
// insufficient_scope; keys unavailable → 503. The reason is logged at
// debug level, never the token, and never sent to the client.
func (g *Gatehouse) bearerFailed(w http.ResponseWriter, r *http.Request, err error) error {
	if c := g.logger.Check(zapcore.DebugLevel, "bearer token refused"); c != nil {
		c.Write(zap.Error(err))
	}
	p := problem{status: http.StatusUnauthorized, code: "invalid_token", title: "Invalid token",
		message: "The access token is missing, invalid or expired."}
	challenge := `Bearer realm="gatehouse"`
	var scopeErr *flow.InsufficientScopeError
	switch {
	case errors.Is(err, verify.ErrNoToken):
		p.code, p.title, p.message = "unauthenticated", "Authentication required", "This API requires a bearer token."
	case errors.Is(err, verify.ErrMalformedAuthorization):
		p.status, p.code, p.title = http.StatusBadRequest, "invalid_request", "Invalid request"
		p.message = "The Authorization header must be: Bearer <token>."
		challenge += `, error="invalid_request"`
	case errors.As(err, &scopeErr):
		p.status, p.code, p.title = http.StatusForbidden, "insufficient_scope", "Insufficient scope"
		p.message = "The access token lacks a required scope."
		challenge += `, error="insufficient_scope", scope="` + strings.Join(g.bearer.RequiredScopes(), " ") + `"`
	case errors.Is(err, flow.ErrProviderUnavailable):
		p.status, p.code, p.title = http.StatusServiceUnavailable, "temporarily_unavailable", "Temporarily unavailable"
		p.message = "Tokens cannot be checked right now. Please retry shortly."
		w.Header().Set("Retry-After", "5")
		g.logger.Warn("bearer tokens cannot be checked: the provider's keys are unavailable", zap.Error(err))
	default:
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	return fail(w, r, p, err)
}

// loginFailed logs why a callback failed and answers with a page that
// says what the user can do, without echoing anything from the request.
func (g *Gatehouse) loginFailed(w http.ResponseWriter, r *http.Request, err error) error {
	p := problem{
		status:  http.StatusBadRequest,
		code:    "login_failed",
		title:   "Sign-in failed",
		message: "This sign-in link is invalid, expired or was already used. Please start again.",
	}
	var pe *flow.ProviderError
	var ee *flow.ExchangeError
	switch {
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
		errors.Is(err, errIncompleteIdentity), errors.Is(err, session.ErrTooLarge):
		p.status, p.code = http.StatusBadGateway, "provider_response_rejected"
		p.message = "The identity provider's answer could not be accepted. Please contact the site's administrator."
	}
	g.logger.Warn("login failed", zap.Int("status", p.status), zap.Error(err))
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

var errIncompleteIdentity = errors.New("gatehouse: the provider did not send the configured user claim")

// redirectURL is this site's callback URL.
func (g *Gatehouse) redirectURL(r *http.Request) string {
	return origin(r) + g.callbackPath
}

// origin is scheme://host of the request, from the connection's scheme and
// the request's Host (what {http.request.scheme} and
// {http.request.hostport} say), never from X-Forwarded-* headers.
func origin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// originalRequestURI is the path and query the client asked for, before
// any rewrite by earlier handlers (uri strip_prefix, handle_path).
func originalRequestURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.RequestURI()
	}
	return r.URL.RequestURI()
}
