// Package caddydevidp serves the development OpenID provider of package
// devidp from Caddy, as the HTTP handler module
// http.handlers.gatehouse_devidp with the Caddyfile directive
// gatehouse_devidp. It exists for gatehouse's runnable demo; never use it in
// production (Provision logs a warning saying so, and every page the
// provider renders carries a development-only banner).
//
// Importing the package registers the module, the directive and its order
// (before respond), so no global `order` line is needed:
//
//	localhost:9000 {
//		gatehouse_devidp {
//			issuer http://localhost:9000
//			client demo {env.DEVIDP_CLIENT_SECRET} {
//				redirect_uri http://localhost:8080/oauth2/callback
//				audience api://demo
//			}
//			user alice {
//				email alice@example.com
//				groups admins staff
//			}
//		}
//	}
//
// Handler.UnmarshalCaddyfile reads the directive into a Handler (its JSON
// form mirrors the Caddyfile: issuer, clients, users, access_token_ttl,
// algorithm, realistic_access_tokens). Handler.Provision resolves
// placeholders such as {env.X} in every value, then calls devidp.New,
// which validates the configuration and generates a fresh signing key:
// tokens do not survive a config reload.
// Handler.ServeHTTP hands every request to the provider; the handler is
// terminal and answers 404 for paths outside the issuer's endpoints, so the
// request path must reach it unchanged (use handle, not handle_path).
package caddydevidp
