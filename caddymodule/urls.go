package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The absolute URLs gatehouse builds come from the connection's scheme and
// the request's Host — what {http.request.scheme} and
// {http.request.hostport} say — never from X-Forwarded-Host or from any
// header of an untrusted client (CVE-2024-21498, CVE-2024-21499); see
// origin for the one header a trusted proxy may set.

// redirectURL is this site's callback URL for provider p.
func redirectURL(r *http.Request, p *provider) string {
	return origin(r) + p.callbackPath
}

// origin is scheme://host of the request: the connection's scheme and the
// request's Host (what {http.request.scheme} and {http.request.hostport}
// say). One exception: a plain-HTTP request from a client Caddy trusts as
// a proxy (the server's trusted_proxies) that says X-Forwarded-Proto:
// https is https — a load balancer that terminates TLS. Nothing else of
// X-Forwarded-* is read, nor anything from an untrusted client.
func origin(r *http.Request) string {
	if r.TLS != nil || strings.EqualFold(r.Header.Get(headerForwardedProto), "https") && fromTrustedProxy(r) {
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
