package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The absolute URLs gatehouse builds come from the connection's scheme and
// the request's Host — what {http.request.scheme} and
// {http.request.hostport} say — never from X-Forwarded-* headers
// (CVE-2024-21498, CVE-2024-21499).

// redirectURL is this site's callback URL for provider p.
func redirectURL(r *http.Request, p *provider) string {
	return origin(r) + p.callbackPath
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

// absolute makes a path on this site an absolute URL, for the provider.
func (g *Gatehouse) absolute(r *http.Request, target string) string {
	if !strings.HasPrefix(target, "/") {
		return target
	}
	return origin(r) + target
}

// pathOf is target without its query.
func pathOf(target string) string {
	path, _, _ := strings.Cut(target, "?")
	return path
}
