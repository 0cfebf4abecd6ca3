package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ServeHTTP is the request pipeline, one step after the other:
//
//  1. stripRequest: the identity headers a client sent are deleted, on
//     every request, whatever happens next;
//  2. endpoint: gatehouse's own endpoints under path_prefix (callback,
//     sign-in page, sign-out, userinfo, back-channel logout, forward auth,
//     login start) answer the request themselves;
//  3. authenticate: a bearer token, or else the session, says who it is;
//  4. authorize: the allow_* rules (the block's and the user's
//     provider's) decide whether that user may pass, and require_acr
//     whether they authenticated strongly enough (else a step-up);
//  5. respond: pass with the identity; or refuse (401, 403, 503), start a
//     login, or let an anonymous request through (`unauthenticated allow`,
//     `public_paths`). For a forward-auth subrequest, steps 3 to 5 answer
//     the fronting proxy instead (forwardauth.go).
func (g *Gatehouse) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	g.stripRequest(r)
	if serve := g.endpoint(r.URL.Path); serve != nil {
		return serve(w, r)
	}
	return g.admit(w, r, next)
}

// admit is steps 3 to 5: authenticate, authorize, respond.
func (g *Gatehouse) admit(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p, err := g.authenticate(w, r)
	if err != nil {
		return g.refuse(w, r, next, err)
	}
	if !g.rules.allows(p.id) || p.provider != nil && !p.provider.rules.allows(p.id) {
		return g.forbidden(w, r, next, p)
	}
	if len(g.RequireACR) > 0 && !g.acrMet(p.id) {
		return g.stepUp(w, r, next, p)
	}
	return g.pass(w, r, next, &p)
}

// endpoint returns the handler of the gatehouse endpoint at path, or nil
// when path is not one. Endpoints are matched by exact path and come
// before authentication: a sign-out that also carries a bearer token
// signs out, and they answer in bearer { only } mode too.
func (g *Gatehouse) endpoint(path string) func(http.ResponseWriter, *http.Request) error {
	if g.resourceMeta != nil && path == g.resourceMeta.path {
		return g.resourceMeta.serve
	}
	if g.signer != nil && (path == jwksWellKnown || path == g.jwksPath) {
		return g.serveJWKS // in every mode
	}
	if !strings.HasPrefix(path, g.PathPrefix) {
		return nil
	}
	var serve func(http.ResponseWriter, *http.Request) error
	switch path {
	case g.signOutPath:
		serve = g.serveSignOut
	case g.userinfoPath:
		serve = g.serveUserinfo
	case g.forwardAuthPath:
		return g.serveForwardAuth // bearer tokens too: it answers in every mode
	case g.startPath:
		serve = g.serveStart
	case g.signInPath:
		serve = g.serveSignIn
	default:
		serve = g.providerEndpoint(path)
		if serve == nil {
			return nil
		}
	}
	if g.mode == modeAPI {
		return serveNoLogins // no sessions: none of them applies
	}
	return serve
}

// errNoCredentials: the request carries neither a bearer token nor (in
// bearer { only } mode, where none is looked for) a session.
var errNoCredentials = errors.New("gatehouse: no credentials")

// authenticate finds who the request is. A request that carries a bearer
// token (with a bearer block) is decided by that token alone, never by a
// cookie; otherwise the session decides. Errors:
//
//   - *bearerError: a bearer token or a malformed Authorization header was
//     refused (answered per RFC 6750);
//   - errNoCredentials, or one wrapping session.ErrNoSession: nobody is
//     signed in (answered per `unauthenticated`);
//   - one wrapping flow.ErrProviderUnavailable: the session needs a
//     refresh the provider cannot give now (503; the session is kept);
//   - one wrapping session.ErrUnavailable: the session store (Redis)
//     cannot be reached, so the session can be neither confirmed nor
//     refused (503; the cookie is kept).
func (g *Gatehouse) authenticate(w http.ResponseWriter, r *http.Request) (principal, error) {
	if g.bearer != nil {
		token, dpop, err := g.accessToken(r.Header)
		if !errors.Is(err, verify.ErrNoToken) {
			if err != nil {
				return principal{}, &bearerError{err}
			}
			return g.authenticateBearer(r, token, dpop)
		}
	}
	if g.mode == modeAPI {
		return principal{}, errNoCredentials
	}
	sess, p, err := g.freshSession(w, r)
	if err != nil {
		return principal{}, err
	}
	return principal{id: &sess.Identity, accessToken: sess.AccessToken, session: true, provider: p,
		notAfter: time.Unix(sess.Created, 0).Add(time.Duration(g.SessionLifetime))}, nil
}

// freshSession returns the request's valid, fresh session and the
// provider that signed it in. Its cookie is
// re-sealed when it was sealed with an older cookie_secret or its tokens
// were refreshed. A cookie that is unusable, signed out, or whose session
// ended (refresh refused, tokens expired) is expired and the error wraps
// session.ErrNoSession; flow.ErrProviderUnavailable means the session needs
// a refresh the provider cannot give now; session.ErrUnavailable, that the
// session store cannot be reached.
func (g *Gatehouse) freshSession(w http.ResponseWriter, r *http.Request) (*session.Session, *provider, error) {
	// An earlier block of this login already checked (and refreshed) the
	// session on this request, and took the cookie away from the blocks
	// after it (per-path blocks that both run): take it from there.
	if sess, ok := caddyhttp.GetVar(r.Context(), g.group.sessionVar).(*session.Session); ok {
		if p := g.sessionProvider(sess); p != nil {
			return sess, p, nil
		}
	}
	sess, rotate, err := g.sessions.Load(r)
	if errors.Is(err, session.ErrUnavailable) {
		g.logger.Warn("the session store cannot be reached", zap.Error(err))
		return nil, nil, err
	}
	var p *provider
	if err == nil {
		if p = g.sessionProvider(sess); p == nil {
			err = fmt.Errorf("%w: of a provider this block does not have", session.ErrNoSession)
		}
	}
	if err == nil {
		fresh, refreshed, ferr := p.refresh.Fresh(r.Context(), sess)
		switch {
		case ferr == nil:
			sess, rotate = fresh, rotate || refreshed
		case errors.Is(ferr, flow.ErrProviderUnavailable):
			// Every such request says so; the provider's own trouble is
			// logged where it is met (discovery, JWKS) and in the access log.
			if c := g.logger.Check(zapcore.DebugLevel, "a session could not be refreshed: the provider is unavailable"); c != nil {
				c.Write(zap.Error(ferr))
			}
			return nil, nil, ferr
		case errors.Is(ferr, session.ErrUnavailable):
			g.logger.Warn("the session store cannot be reached", zap.Error(ferr))
			return nil, nil, ferr
		default:
			g.audit(r, p, zapcore.InfoLevel, eventSessionEnded, "session ended",
				userFields(&sess.Identity, sessionRef(sess), zap.String("reason", sessionEndReason(ferr)), zap.Error(ferr))...)
			err = fmt.Errorf("%w: %w", session.ErrNoSession, ferr)
		}
	} else if g.sessions.HasSession(r) {
		// The cookie no longer signs anyone in. One that does not even
		// authenticate is anyone's to send: debug level.
		reason, level := sessionEndReason(err), zapcore.InfoLevel
		if reason == "invalid" {
			level = zapcore.DebugLevel
		}
		g.audit(r, p, level, eventSessionEnded, "session cookie not usable", zap.String("reason", reason), zap.Error(err))
	}
	if err != nil {
		cmp.Or(p, g.idp).metrics.sessionEnded(err)
		if g.sessions.HasSession(r) {
			g.sessions.ClearSession(w, r)
		}
		return nil, nil, err
	}
	if rotate {
		if err := g.sessions.Save(w, r, g.group.stored(sess)); err != nil {
			g.logger.Warn("saving the session failed", zap.Error(err))
		}
	}
	caddyhttp.SetVar(r.Context(), g.group.sessionVar, sess)
	return sess, p, nil
}

// refuse answers a request authenticate did not admit (see its errors).
// A public path passes anonymously whatever the credentials, without an
// Authorization header gatehouse refused (review SA2-02).
func (g *Gatehouse) refuse(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, err error) error {
	var be *bearerError
	isBearer := errors.As(err, &be)
	if g.public.match(r) {
		if isBearer {
			r.Header.Del("Authorization")
		}
		return g.pass(w, r, next, nil)
	}
	setAnonymous(r) // for handle_errors routes
	switch {
	case isBearer:
		return g.bearerFailed(w, r, be.err)
	case errors.Is(err, flow.ErrProviderUnavailable):
		// The tokens expired and cannot be refreshed right now; the
		// session is kept for when the provider is back.
		w.Header().Set("Retry-After", "5")
		return fail(w, r, problem{
			status: http.StatusServiceUnavailable, code: "provider_unavailable", title: "Temporarily unavailable",
			message: "Your session needs to be renewed, but the identity provider cannot be reached right now. Please try again in a moment.",
		}, err)
	case errors.Is(err, session.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		return fail(w, r, storeUnavailable, err)
	case g.unauthenticated == unauthAllow:
		return g.pass(w, r, next, nil)
	case g.mode == modeAPI:
		return g.bearerFailed(w, r, verify.ErrNoToken)
	case g.unauthenticated == unauth401, g.unauthenticated == unauthDefault && !isNavigation(r):
		return g.signInRequired(w, r)
	}
	if _, ok := next.(forwardAnswer); ok {
		return g.forwardLogin(w, r) // a subrequest: the fronting proxy sends the browser
	}
	return g.startLogin(w, r)
}

// signInRequired answers 401: nobody is signed in, and no login starts.
func (g *Gatehouse) signInRequired(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("WWW-Authenticate", g.challenge(r, ""))
	return fail(w, r, problem{
		status:  http.StatusUnauthorized,
		code:    "unauthenticated",
		title:   "Sign-in required",
		message: "This resource requires you to sign in.",
	}, errors.New("gatehouse: no session"))
}

// storeUnavailable: the session store (Redis) cannot be reached.
var storeUnavailable = problem{
	status: http.StatusServiceUnavailable, code: "session_store_unavailable", title: "Temporarily unavailable",
	message: "Your session cannot be checked right now. Please try again in a moment.",
}

// forbidden answers an authenticated user the allow_* rules refuse: a
// page that says who they are signed in as and offers sign-out, or 403 JSON.
// On a public path the request passes anonymously instead.
func (g *Gatehouse) forbidden(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p principal) error {
	if g.public.match(r) {
		return g.pass(w, r, next, nil)
	}
	setAnonymous(r)
	who := p.id.Email // the user's own page: an unverified address is still theirs to see
	if who == "" {
		who = p.id.User
	}
	g.audit(r, p.provider, zapcore.InfoLevel, eventRefused, "access refused by the allow rules",
		userFields(p.id, zap.String("reason", "allow_rules"), zap.Bool("bearer", !p.session))...)
	pr := problem{
		status: http.StatusForbidden, code: "forbidden", title: "Access denied",
		message: "You are signed in as " + who + ", but this account may not use this page.",
	}
	if p.session {
		pr.signOut = g.signOutPath
	}
	return fail(w, r, pr, errors.New("gatehouse: refused by the allow rules"))
}

// pass hands the request to the next handler without gatehouse's cookies
// and with the identity, or anonymously (p nil: no identity headers, and
// every {http.auth.user.*} placeholder empty).
func (g *Gatehouse) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p *principal) error {
	if g.sessions != nil {
		g.sessions.StripCookies(r)
	}
	if p != nil {
		g.setIdentity(r, *p)
	} else {
		setAnonymous(r)
	}
	return next.ServeHTTP(w, r)
}
