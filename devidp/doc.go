// Package devidp is a small OpenID provider for development and tests.
// It is NOT for production: it has no passwords, keeps its state in memory,
// generates a fresh signing key at every start, and every HTML page it
// renders carries the banner "devidp — development identity provider, not
// for production".
//
// One devidp serves both gatehouse's in-process tests and the runnable demo
// (through the Caddy module in package caddydevidp), so both exercise the
// same provider behaviour.
//
// # Setting it up
//
// New takes a Config: the issuer URL (every endpoint lives under its path),
// the registered confidential clients and the users offered on the login
// page. It validates the configuration (errors start with "devidp: "),
// applies the documented defaults and generates an RS256 (or ES256) signing
// key with crypto/rand. The returned *Provider is an http.Handler. Under
// httptest, listen first so the issuer is known before New:
//
//	srv := httptest.NewUnstartedServer(nil)
//	p, err := devidp.New(devidp.Config{
//		Issuer:  "http://" + srv.Listener.Addr().String(),
//		Clients: []devidp.Client{{ID: "app", Secret: "app-secret"}},
//		Users:   []devidp.User{{Subject: "alice", Email: "alice@example.com"}},
//	})
//	srv.Config.Handler = p
//	srv.Start()
//
// # The main path
//
// A relying party reads /.well-known/openid-configuration and /jwks, then
// sends the browser to /authorize with client_id, a registered redirect_uri,
// response_type=code, a scope containing openid, state, nonce and a PKCE
// code_challenge with code_challenge_method=S256 (PKCE is mandatory; the
// plain method is refused). devidp answers with a login page listing the
// users; choosing one POSTs the form back to /authorize, which redirects to
// the redirect URI with a one-time code, the state and iss (RFC 9207).
// Cancel redirects with error=access_denied. A request whose client_id or
// redirect_uri is not acceptable gets an error page and is never
// redirected.
//
// The relying party then POSTs the code and its code_verifier to /token,
// authenticating with client_secret_basic or client_secret_post, and
// receives a JWT access token (typ at+jwt, RFC 9068), an ID token (with
// nonce, sid and at_hash) and, when the scope had offline_access, a refresh
// token. Refresh tokens rotate: each use returns a successor, and replaying
// a used one revokes every refresh token of that login (RFC 9700
// §4.14.2). /userinfo accepts the access token as a bearer token, and
// /end_session implements RP-initiated logout with id_token_hint and a
// registered post_logout_redirect_uri.
//
// State (codes, refresh tokens) lives in bounded maps; expired entries are
// swept lazily and new ones are refused with temporarily_unavailable when a
// map is full. Time comes from Config.Now, so tests move a fake clock
// instead of sleeping.
//
// # Test helpers
//
// MintAccessToken signs an access token without a login, RotateKey
// exercises a relying party's key rollover, and Stats counts the requests
// each endpoint served. Config.RealisticAccessTokens gives access tokens
// the size real providers' have (about 1.2 KB instead of 0.8 KB), for
// benchmarks.
package devidp
