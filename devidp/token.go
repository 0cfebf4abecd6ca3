package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenResponse is a successful token response (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

func writeTokenError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="devidp"`)
	}
	writeJSON(w, e.status, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description,omitempty"`
	}{e.code, e.desc})
}

func invalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}

// serveToken handles the token endpoint.
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, invalidRequest("the request body could not be read as a form"))
		return
	}
	form := r.PostForm
	for name, vs := range form {
		if len(vs) > 1 {
			writeTokenError(w, invalidRequest("parameter "+name+" was sent more than once"))
			return
		}
	}
	grantType := form.Get("grant_type")
	if grantType == "refresh_token" {
		p.count(&p.stats.Refresh)
	}

	client, oerr := p.authenticateClient(r, form)
	if oerr != nil {
		writeTokenError(w, oerr)
		return
	}

	var resp *tokenResponse
	switch grantType {
	case "":
		oerr = invalidRequest("grant_type is required")
	case "authorization_code":
		resp, oerr = p.exchangeCode(client, form)
	case "refresh_token":
		resp, oerr = p.refresh(client, form)
	default:
		oerr = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "supported grant types: authorization_code, refresh_token"}
	}
	if oerr != nil {
		writeTokenError(w, oerr)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// authenticateClient authenticates the client with client_secret_basic or
// client_secret_post; using both, or neither, fails.
func (p *Provider) authenticateClient(r *http.Request, form url.Values) (*Client, *oauthError) {
	var id, secret string
	_, postSecret := form["client_secret"]
	if authz := r.Header.Get("Authorization"); authz != "" {
		if postSecret {
			return nil, invalidClient("use exactly one client authentication method")
		}
		rawID, rawSecret, ok := r.BasicAuth()
		if !ok {
			return nil, invalidClient("the Authorization header must use the Basic scheme")
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(rawID)
		secret, err2 = url.QueryUnescape(rawSecret)
		if err1 != nil || err2 != nil {
			return nil, invalidClient("malformed client credentials")
		}
		if formID := form.Get("client_id"); formID != "" && formID != id {
			return nil, invalidClient("client_id does not match the authenticated client")
		}
	} else {
		if !postSecret {
			return nil, invalidClient("client authentication is required")
		}
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	c, ok := p.clients[id]
	if !ok {
		return nil, invalidClient("unknown client or wrong secret")
	}
	got, want := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(c.Secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return nil, invalidClient("unknown client or wrong secret")
	}
	return c, nil
}

// exchangeCode handles grant_type=authorization_code.
func (p *Provider) exchangeCode(client *Client, form url.Values) (*tokenResponse, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, invalidRequest("code is required")
	}
	now := p.now()
	ac, oerr := p.redeemCode(code, client.ID, now)
	if oerr != nil {
		return nil, oerr
	}
	if form.Get("redirect_uri") != ac.redirectURI {
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	}
	verifier := form.Get("code_verifier")
	if verifier == "" {
		return nil, invalidGrant("code_verifier is required (PKCE)")
	}
	if !validVerifier(verifier) {
		return nil, invalidGrant("code_verifier must be 43-128 unreserved characters")
	}
	sum := sha256.Sum256([]byte(verifier))
	computed := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(computed), []byte(ac.challenge)) != 1 {
		return nil, invalidGrant("code_verifier does not match code_challenge")
	}
	return p.issueTokens(client, &ac.grant, ac.scope, ac.nonce, slices.Contains(ac.scope, "offline_access"), now)
}

// refresh handles grant_type=refresh_token with rotation.
func (p *Provider) refresh(client *Client, form url.Values) (*tokenResponse, *oauthError) {
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	// A scope parameter narrows the new access token's scope (RFC 6749 §6).
	var requested []string
	if _, ok := form["scope"]; ok {
		requested = strings.Fields(form.Get("scope"))
		if len(requested) == 0 {
			return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "scope is empty"}
		}
	}
	now := p.now()
	g, next, err := p.rotateRefresh(tok, client.ID, requested, now)
	if err != nil {
		var oerr *oauthError
		if errors.As(err, &oerr) {
			return nil, oerr
		}
		return nil, &oauthError{http.StatusInternalServerError, "server_error", "refresh failed"}
	}
	scope := g.scope
	if requested != nil {
		scope = requested
	}
	resp, oerr := p.issueTokens(client, &g, scope, "", false, now)
	if oerr != nil {
		return nil, oerr
	}
	resp.RefreshToken = next
	return resp, nil
}

// issueTokens mints an access token and an ID token for g, and a refresh
// token when withRefresh is set.
func (p *Provider) issueTokens(client *Client, g *grant, scope []string, nonce string, withRefresh bool, now time.Time) (*tokenResponse, *oauthError) {
	serverError := &oauthError{http.StatusInternalServerError, "server_error", "issuing tokens failed"}
	at, err := p.mintAccess(g.user.Subject, g.user, g, client.ID, accessAudience(client), scope, now, p.accessTTL)
	if err != nil {
		return nil, serverError
	}
	idt, err := p.mintID(g, nonce, at, now)
	if err != nil {
		return nil, serverError
	}
	resp := &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(p.accessTTL / time.Second),
		IDToken:     idt,
		Scope:       strings.Join(scope, " "),
	}
	if withRefresh {
		rt, err := p.newRefresh(*g, now)
		if err != nil {
			var oerr *oauthError
			if errors.As(err, &oerr) {
				return nil, oerr
			}
			return nil, serverError
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// validVerifier reports whether s is a PKCE code_verifier: 43-128
// characters of [A-Za-z0-9-._~] (RFC 7636 §4.1).
func validVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
