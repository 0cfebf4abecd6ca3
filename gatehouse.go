// Package gatehouse is an OpenID Connect authentication gateway for Caddy.
// Importing it registers the Caddy HTTP handler module
// http.handlers.gatehouse and its Caddyfile directive `gatehouse`, so
//
//	xcaddy build --with github.com/gatehouse-auth/gatehouse
//
// builds a Caddy with gatehouse in it. The handler lives in package
// caddymodule; the libraries it is made of are flow (the OpenID Connect
// relying party), session (sealed cookie sessions) and verify (JWT
// verification). See README.md for the Caddyfile reference.
package gatehouse

import (
	// Register the gatehouse Caddy module.
	_ "github.com/gatehouse-auth/gatehouse/caddymodule"
)
