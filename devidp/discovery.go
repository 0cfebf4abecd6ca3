package devidp

import "net/http"

// serveDiscovery serves /.well-known/openid-configuration: the OpenID
// Provider Metadata (OpenID Connect Discovery 1.0 §3), written out by
// member name so it reads like the specification.
func (p *Provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.endpoint(pathAuthorize),
		"token_endpoint":                        p.endpoint(pathToken),
		"userinfo_endpoint":                     p.endpoint(pathUserinfo),
		"jwks_uri":                              p.endpoint(pathJWKS),
		"end_session_endpoint":                  p.endpoint(pathEndSession),
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{p.alg},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups", "offline_access"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported": []string{
			"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid", "at_hash",
			"email", "email_verified", "name", "preferred_username", "groups",
		},
		"authorization_response_iss_parameter_supported": true,
	})
}
