package devidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// serveUserinfo returns the claims of the user an access token was issued
// for.
func (p *Provider) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "a bearer access token is required"})
		return
	}
	user, ok := p.userForAccessToken(strings.TrimSpace(token))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "the access token is invalid or expired"})
		return
	}
	writeJSON(w, http.StatusOK, userinfoResponse{Subject: user.Subject, profile: profileOf(user)})
}

// userForAccessToken verifies one of our access tokens (signature with a
// published key, typ, iss, exp) and returns the configured user it names.
func (p *Provider) userForAccessToken(token string) (*User, bool) {
	payload, err := p.verify(token, typAccessToken)
	if err != nil {
		return nil, false
	}
	var c struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
		Expiry  *int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer != p.issuer || c.Expiry == nil {
		return nil, false
	}
	if p.now().Unix() >= *c.Expiry {
		return nil, false
	}
	u, ok := p.users[c.Subject]
	return u, ok
}

// serveEndSession implements RP-initiated logout. devidp keeps no login
// session, so signing out ends the refresh tokens of the login named by a
// valid id_token_hint and then redirects to a registered
// post_logout_redirect_uri, or shows the signed-out page.
func (p *Provider) serveEndSession(w http.ResponseWriter, r *http.Request) {
	v, ok := requestParams(w, r)
	if !ok {
		return
	}
	for _, name := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state"} {
		if len(v[name]) > 1 {
			renderError(w, http.StatusBadRequest, "Invalid logout request", "The "+name+" parameter was sent more than once.")
			return
		}
	}

	clientID := v.Get("client_id")
	if hint := v.Get("id_token_hint"); hint != "" {
		aud, sid, ok := p.parseIDTokenHint(hint)
		if !ok {
			renderError(w, http.StatusBadRequest, "Invalid logout request", "The id_token_hint was not issued by devidp.")
			return
		}
		if clientID != "" && clientID != aud {
			renderError(w, http.StatusBadRequest, "Invalid logout request", "The client_id does not match the id_token_hint.")
			return
		}
		clientID = aud
		if sid != "" {
			p.revokeFamily(sid)
		}
	}

	target := v.Get("post_logout_redirect_uri")
	if target == "" {
		renderHTML(w, http.StatusOK, "signedout", messagePage{Title: "Signed out"})
		return
	}
	c, ok := p.clients[clientID]
	if !ok || !redirectAllowed(c, target) {
		renderHTML(w, http.StatusOK, "signedout", messagePage{
			Title:   "Signed out",
			Message: "The post_logout_redirect_uri is not registered for the client, so devidp does not redirect.",
		})
		return
	}
	params := url.Values{}
	if vs, ok := v["state"]; ok && len(vs[0]) <= maxParamLen {
		params.Set("state", vs[0])
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, withParams(target, params), http.StatusFound)
}

// parseIDTokenHint verifies an ID token of ours (signature, typ, iss; not
// expiry) and returns its audience (the client) and sid.
func (p *Provider) parseIDTokenHint(hint string) (aud, sid string, ok bool) {
	payload, err := p.verify(hint, typIDToken)
	if err != nil {
		return "", "", false
	}
	var c struct {
		Issuer   string          `json:"iss"`
		Audience json.RawMessage `json:"aud"`
		SID      string          `json:"sid"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer != p.issuer {
		return "", "", false
	}
	// aud is a string in our ID tokens; accept a one-element array too.
	var one string
	if json.Unmarshal(c.Audience, &one) != nil {
		var many []string
		if json.Unmarshal(c.Audience, &many) != nil || len(many) != 1 {
			return "", "", false
		}
		one = many[0]
	}
	return one, c.SID, true
}
