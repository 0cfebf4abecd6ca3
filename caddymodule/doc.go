// Package caddymodule is the Caddy glue of gatehouse: the HTTP handler
// module http.handlers.gatehouse and its Caddyfile directive `gatehouse`,
// ordered after forward_auth. It translates config into calls on the
// libraries (flow, session, verify, identity) and their results into
// headers, placeholders and answers.
//
// Provision (module.go) resolves placeholders ({env.*}, {file.*}, config.go),
// applies defaults, checks every value (Validate, validate.go: each error
// names its sub-directive), parses the config once into what the request
// path reads (typed enums, rules, header lists), then builds the provider
// (provider.go: a ProviderConfig becomes a flow.Provider, a flow.Client and
// a flow.Refresher behind small capability interfaces), the bearer
// validator and the session.Manager. It never calls the provider, which is
// discovered on first use. State shared by blocks and across reloads (JWKS
// caches; per login the refresh group, the kept claims and the session
// store) lives in shared.go. Prometheus metrics (metrics.go) go into
// Caddy's registry, their children resolved once per issuer, so a request
// counts with an atomic add; the provider HTTP client times each call.
//
// ServeHTTP (serve.go) is one pipeline:
//
//	stripRequest → endpoint → authenticate → rules.allows → pass | refuse
//
// It deletes every identity header the client sent (X-Forwarded-User and
// friends, in any case, "_" or "." for "-"), in trailers too, and the
// Connection tokens that would drop the ones gatehouse sets (headers.go). gatehouse's own endpoints
// under path_prefix answer next, by exact path: the callback (login.go)
// and sign-out (signout.go). authenticate decides who the request is: a
// bearer token alone when one is sent and a bearer block is configured
// (bearer.go, RFC 6750 answers), else the session, refreshed when its
// tokens are about to expire. The allow_* rules (authz.go) then decide;
// pass strips gatehouse's cookies and hands the identity upstream as
// headers and the {http.auth.user.*} placeholders Caddy's own
// authentication handler uses. refuse answers everything else: a bearer
// error, 503 while a needed refresh cannot happen, anonymous passage
// (`unauthenticated allow`, `public_paths`, with every {http.auth.user.*}
// placeholder empty), 401, or a login (a redirect to the provider) for
// browser navigations. Failures become small HTML or JSON pages, or
// caddyhttp errors when the server has handle_errors (pages.go).
package caddymodule
