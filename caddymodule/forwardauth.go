package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/flow"
)

// Forward auth: path_prefix/auth answers the authorization subrequests of
// another proxy (nginx auth_request, Traefik forwardAuth, Caddy
// forward_auth) with the pipeline's own authenticate and allow rules, and
// path_prefix/start starts a login that returns to the URL in rd, for the
// browser that proxy sends there.

// The headers in which a trusted proxy names the request it asks about.
const (
	headerForwardedMethod = "X-Forwarded-Method"
	headerForwardedProto  = "X-Forwarded-Proto"
	headerForwardedHost   = "X-Forwarded-Host"
	headerForwardedURI    = "X-Forwarded-Uri"
	headerOriginalURL     = "X-Original-URL" // nginx: $scheme://$http_host$request_uri
)

// serveForwardAuth answers GET path_prefix/auth for a fronting proxy, about
// the original request (see forwardedRequest), which goes through steps 3
// to 5 of the pipeline with forwardAnswer in place of the upstream:
//
//   - signed in (or a valid bearer token) and allowed: 200, empty, with the
//     identity headers gatehouse would set upstream as response headers;
//     a refreshed session's cookie comes along in Set-Cookie;
//   - refused by the allow rules: 403; store or provider outage: 503; a
//     refused bearer token: as RFC 6750 says (401, 403, 400);
//   - nobody signed in: what `unauthenticated` says, where a login is
//     forwardLogin's answer; public_paths (on the original path) and
//     `unauthenticated allow` answer 200 without identity headers.
func (g *Gatehouse) serveForwardAuth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Ask with GET."}, errors.New("gatehouse: forward-auth method"))
	}
	o, err := forwardedRequest(r)
	if err != nil {
		return fail(w, r, problem{status: http.StatusBadRequest, code: "invalid_request", title: "Bad request",
			message: "The original request's URL cannot be read."}, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return g.admit(w, o, forwardAnswer{g})
}

// forwardAnswer stands in for the upstream of a forward-auth request: the
// request passed, so the fronting proxy gets 200 with the identity headers
// that pass set on the request (setIdentity) as response headers. They
// are the names stripRequest cleared of whatever the client sent, so
// every one present is gatehouse's.
type forwardAnswer struct{ g *Gatehouse }

func (a forwardAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	for _, name := range a.g.strip {
		if v := r.Header[name]; len(v) > 0 {
			w.Header()[name] = v
		}
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// forwardLogin answers a forward-auth request that is to sign in: the
// browser should go to path_prefix/start on the original host, with the
// original URL in rd. An original URL the return-to validator refuses
// (on the original host) leaves a path, rd "/", for the browser to
// resolve. A proxy that names the original URL in X-Forwarded-Uri
// (Traefik, Caddy) passes a 302 on to the browser. nginx, which names it
// in X-Original-URL, turns any answer but 2xx, 401 and 403 into a 500: it
// gets 401 with the start URL in Location, for its error_page to redirect
// to.
func (g *Gatehouse) forwardLogin(w http.ResponseWriter, o *http.Request) error {
	return g.forwardLoginWith(w, o, "")
}

// forwardLoginWith is forwardLogin with more of the start URL's query
// (a step-up's acr_values), each parameter "&name=value".
func (g *Gatehouse) forwardLoginWith(w http.ResponseWriter, o *http.Request, more string) error {
	start := g.startPath + "?rd=%2F" + more
	if orig := o.URL.String(); flow.ValidateReturnTo(orig, o.Host, g.trusted) == nil {
		// Absolute: Traefik resolves a path against its auth server's address.
		start = o.URL.Scheme + "://" + o.Host + g.startPath + "?rd=" + url.QueryEscape(orig) + more
	}
	if fromTrustedProxy(o) && o.Header.Get(headerOriginalURL) != "" {
		w.Header().Set("Location", start)
		return g.signInRequired(w, o)
	}
	redirect(w, start)
	return nil
}

// serveStart starts a login at GET path_prefix/start?rd=URL, where a
// fronting proxy sends the browser: it returns to rd when the return-to
// validator accepts it (a path here, or a URL on this host or a
// trusted_redirect_hosts one), else to "/". With several providers,
// provider=NAME picks one; without it the sign-in page lets the user
// choose. login_hint and domain_hint go on to the provider.
func (g *Gatehouse) serveStart(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Start a sign-in with GET."}, errors.New("gatehouse: start method"))
	}
	q := r.URL.Query()
	if len(q["provider"]) == 0 {
		return g.signIn(w, r, q.Get("rd"), q)
	}
	p := g.providerNamed(q.Get("provider"))
	if p == nil || len(q["provider"]) > 1 {
		return fail(w, r, problem{status: http.StatusBadRequest, code: "unknown_provider", title: "Sign-in failed",
			message: "This site has no such identity provider."}, errors.New("gatehouse: start: unknown provider"))
	}
	return g.startLoginTo(w, r, q.Get("rd"), p, g.loginParams(q))
}

// forwardedRequest is the request a forward-auth subrequest r asks about:
// r's headers (a fronting proxy sends the original request's) and context,
// with the original method and absolute URL (its Host the original host).
//
// Only when Caddy trusts the client as a proxy (the server's
// trusted_proxies) are these read from the request: X-Forwarded-Method,
// and the URL either from X-Forwarded-Uri with X-Forwarded-Proto and
// X-Forwarded-Host (Traefik, Caddy) or from X-Original-URL (nginx). From
// anyone else they are ignored and the original request is r itself
// (oauth2-proxy CVE-2026-40575, CVE-2026-34457). A URL named both ways is
// refused — one of the two came from the client through a proxy that
// sets the other — and so is one that cannot be read, or holds a "#"
// (CVE-2026-41059): the path decides public_paths.
func forwardedRequest(r *http.Request) (*http.Request, error) {
	o := r.WithContext(r.Context())
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	if r.TLS != nil {
		u.Scheme = "https"
	}
	o.URL = &u
	if !fromTrustedProxy(r) {
		return o, nil
	}
	if m := r.Header.Get(headerForwardedMethod); m != "" {
		o.Method = m
	}
	scheme, host, uri := u.Scheme, u.Host, r.Header.Get(headerForwardedURI)
	if orig := r.Header.Get(headerOriginalURL); orig != "" {
		if uri != "" {
			return nil, errors.New("gatehouse: forward auth: both X-Forwarded-Uri and X-Original-URL")
		}
		var rest string
		scheme, rest, _ = strings.Cut(orig, "://")
		host, uri = rest, "/"
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			host, uri = rest[:i], rest[i:]
		}
	} else if uri != "" {
		if p := r.Header.Get(headerForwardedProto); p != "" {
			scheme = p
		}
		if h := r.Header.Get(headerForwardedHost); h != "" {
			host = h
		}
	} else {
		return o, nil
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" || host == "" || !strings.HasPrefix(uri, "/") || strings.Contains(uri, "#") {
		return nil, errors.New("gatehouse: forward auth: unreadable original URL")
	}
	parsed, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	parsed.Scheme, parsed.Host = scheme, host
	o.URL, o.Host, o.RequestURI = parsed, host, uri
	return o, nil
}

// fromTrustedProxy reports whether Caddy trusts r's client as a proxy
// (trusted_proxies).
func fromTrustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}
