// Package e2e is gatehouse's browser suite: Debian's Chromium, driven by
// chromedp, signs in through a real Caddy (this repository's cmd/caddy)
// running gatehouse against a real, independently written, OpenID Certified
// provider — the npm package oidc-provider, configured in testdata/e2e.
//
// The tests carry the build tag e2e, so `go test ./...` stays quick; run
// them with
//
//	testdata/e2e/setup.sh            # once: Chromium and the npm packages
//	go test -tags e2e -race ./e2e/
//
// TestMain builds cmd/caddy, starts the providers (RS256, ES256, one with
// short-lived tokens, and "partners", the second provider of the site with
// two provider blocks) on 127.0.0.1, an upstream app that shows the
// identity it receives, and Caddy with HTTPS sites (tls internal) in front
// of it, then runs each scenario in a fresh browser context. Screenshots of
// the provider's login page and of the protected page go to the test's
// artifact directory (go test -artifacts -outputdir DIR keeps them).
package e2e
