// Package caddymodule is the Caddy glue of gatehouse: the HTTP handler
// module http.handlers.gatehouse and its Caddyfile directive `gatehouse`,
// ordered after forward_auth.
//
// Provision resolves placeholders ({env.*}, {file.*}) in the config,
// applies defaults, checks every value (Validate: each error names its
// sub-directive) and builds a session.CookieStore and a flow.Client; it
// never calls the provider, which is discovered on first use.
//
// ServeHTTP first deletes every identity header the client sent
// (X-Forwarded-User and friends, in any case, "_" for "-"). With a bearer
// block, a request carrying `Authorization: Bearer` is decided by that
// token alone (flow.Bearer), with RFC 6750 errors. The callback
// path (path_prefix + "/callback") finishes logins with flow.FinishLogin
// and sets the session cookie. Any other request with a valid session goes
// to the next handler with X-Forwarded-* identity headers, the
// {http.auth.user.*} placeholders Caddy's own authentication handler uses,
// and without gatehouse's cookies. A request without one is, by default,
// redirected to the provider when it is a browser navigation and answered
// 401 otherwise (`unauthenticated` overrides). Failures become small HTML
// or JSON pages, or caddyhttp errors when the server has handle_errors.
package caddymodule
