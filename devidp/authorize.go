package devidp

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// authzParams are the authorization request parameters devidp understands,
// in the order they are carried as hidden fields on the login page.
var authzParams = []string{
	"client_id", "redirect_uri", "response_type", "response_mode", "scope", "state",
	"nonce", "code_challenge", "code_challenge_method", "login_hint", "prompt", "acr_values",
}

// authzRequest is a validated authorization request.
type authzRequest struct {
	client      *Client
	redirectURI string
	state       string
	stateSent   bool
	nonce       string
	challenge   string
	scope       []string
	loginHint   string
	acrValues   []string
	hidden      []hiddenField
}

// authzError is an error the client learns about through a redirect.
type authzError struct {
	code, desc string
}

// parseAuthz validates an authorization request. A non-empty fatal means
// client_id or redirect_uri cannot be trusted: the caller shows an error page
// and must not redirect. Otherwise a non-nil *authzError is sent to the
// (validated) redirect URI in req.
func (p *Provider) parseAuthz(v url.Values) (req *authzRequest, fatal string, aerr *authzError) {
	req = &authzRequest{}
	get := func(name string) string {
		if vs := v[name]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}

	switch clientID := get("client_id"); {
	case len(v["client_id"]) > 1:
		return nil, "The client_id parameter was sent more than once.", nil
	case clientID == "":
		return nil, "The request has no client_id.", nil
	default:
		c, ok := p.clients[clientID]
		if !ok {
			return nil, "The client_id is not registered with devidp.", nil
		}
		req.client = c
	}
	switch ru := get("redirect_uri"); {
	case len(v["redirect_uri"]) > 1:
		return nil, "The redirect_uri parameter was sent more than once.", nil
	case ru == "":
		return nil, "The request has no redirect_uri.", nil
	case !redirectAllowed(req.client, ru):
		return nil, "The redirect_uri is not registered for this client.", nil
	default:
		req.redirectURI = ru
	}

	// From here on errors go back to the client.
	if vs, ok := v["state"]; ok && len(vs) == 1 && len(vs[0]) <= maxParamLen {
		req.state, req.stateSent = vs[0], true
	}
	for _, name := range authzParams {
		vs := v[name]
		if len(vs) > 1 {
			return req, "", &authzError{"invalid_request", "parameter " + name + " was sent more than once"}
		}
		if len(vs) == 1 && len(vs[0]) > maxParamLen {
			return req, "", &authzError{"invalid_request", "parameter " + name + " is too long"}
		}
		if len(vs) == 1 {
			req.hidden = append(req.hidden, hiddenField{name, vs[0]})
		}
	}
	if _, ok := v["request"]; ok {
		return req, "", &authzError{"request_not_supported", "request objects are not supported"}
	}
	if _, ok := v["request_uri"]; ok {
		return req, "", &authzError{"request_uri_not_supported", "request_uri is not supported"}
	}

	switch rt := get("response_type"); rt {
	case "":
		return req, "", &authzError{"invalid_request", "response_type is required"}
	case "code":
	default:
		return req, "", &authzError{"unsupported_response_type", "only response_type=code is supported"}
	}
	if rm := get("response_mode"); rm != "" && rm != "query" {
		return req, "", &authzError{"invalid_request", "only response_mode=query is supported"}
	}

	for _, s := range strings.Split(get("scope"), " ") {
		if s == "" {
			continue
		}
		if !validScopeToken(s) {
			return req, "", &authzError{"invalid_scope", "malformed scope"}
		}
		if !slices.Contains(req.scope, s) {
			req.scope = append(req.scope, s)
		}
	}
	if !slices.Contains(req.scope, "openid") {
		return req, "", &authzError{"invalid_scope", "scope must contain openid"}
	}

	switch m := get("code_challenge_method"); m {
	case "S256":
	case "":
		return req, "", &authzError{"invalid_request", "PKCE is required: code_challenge_method must be S256"}
	default:
		return req, "", &authzError{"invalid_request", "code_challenge_method " + m + " is not supported; use S256"}
	}
	req.challenge = get("code_challenge")
	if req.challenge == "" {
		return req, "", &authzError{"invalid_request", "PKCE is required: code_challenge is missing"}
	}
	if !validChallenge(req.challenge) {
		return req, "", &authzError{"invalid_request", "code_challenge must be 43-128 base64url characters"}
	}

	if slices.Contains(strings.Split(get("prompt"), " "), "none") {
		return req, "", &authzError{"login_required", "devidp always shows its login page"}
	}
	req.nonce = get("nonce")
	req.loginHint = get("login_hint")
	req.acrValues = strings.Fields(get("acr_values"))
	return req, "", nil
}

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// validChallenge reports whether s is 43-128 base64url characters.
func validChallenge(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// redirectBack sends the user agent to the request's redirect URI with
// params, state (when the request had one) and iss (RFC 9207).
func (p *Provider) redirectBack(w http.ResponseWriter, r *http.Request, req *authzRequest, params url.Values) {
	if req.stateSent {
		params.Set("state", req.state)
	}
	params.Set("iss", p.issuer)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, withParams(req.redirectURI, params), http.StatusFound)
}

func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, req *authzRequest, e *authzError) {
	p.redirectBack(w, r, req, url.Values{"error": {e.code}, "error_description": {e.desc}})
}

// serveAuthorize shows the login page (GET) or handles its submission
// (POST). Both validate the full authorization request.
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	v, ok := requestParams(w, r)
	if !ok {
		return
	}

	req, fatal, aerr := p.parseAuthz(v)
	if fatal != "" {
		renderError(w, http.StatusBadRequest, "Invalid authorization request", fatal)
		return
	}
	if aerr != nil {
		p.redirectError(w, r, req, aerr)
		return
	}

	if r.Method != http.MethodPost {
		p.renderLogin(w, http.StatusOK, req, "")
		return
	}

	if len(v["action"]) > 1 || len(v["user"]) > 1 {
		p.renderLogin(w, http.StatusBadRequest, req, "Choose exactly one user.")
		return
	}
	if v.Get("action") == "cancel" {
		p.redirectError(w, r, req, &authzError{"access_denied", "the user cancelled the login"})
		return
	}
	user, ok := p.users[v.Get("user")]
	if !ok {
		p.renderLogin(w, http.StatusBadRequest, req, "Unknown user; choose one of the users below.")
		return
	}

	now := p.now()
	code, err := p.newCode(&authCode{
		grant: grant{
			clientID: req.client.ID,
			user:     user,
			scope:    req.scope,
			nonce:    req.nonce,
			sid:      randomToken(16),
			authTime: now,
			acr:      user.acrFor(req.acrValues),
		},
		redirectURI: req.redirectURI,
		challenge:   req.challenge,
		expires:     now.Add(p.codeTTL),
	}, now)
	if err != nil {
		p.redirectError(w, r, req, &authzError{"temporarily_unavailable", "too many outstanding authorization codes"})
		return
	}
	p.redirectBack(w, r, req, url.Values{"code": {code}})
}

// renderLogin renders the login page for req.
func (p *Provider) renderLogin(w http.ResponseWriter, status int, req *authzRequest, msg string) {
	page := loginPage{
		Title:    "Sign in",
		ClientID: req.client.ID,
		Action:   p.basePath + pathAuthorize,
		Error:    msg,
		Hidden:   req.hidden,
	}
	for _, u := range p.userList {
		page.Users = append(page.Users, loginUser{
			Subject: u.Subject,
			Name:    u.Name,
			Email:   u.Email,
			Groups:  u.Groups,
			Hinted:  req.loginHint != "" && req.loginHint == u.Subject,
		})
	}
	renderHTML(w, status, "login", page)
}

// requestParams returns a GET request's query or a POST request's form;
// on a parse error it answers 400 itself and returns false.
func requestParams(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			renderError(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
			return nil, false
		}
		return r.PostForm, true
	}
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		renderError(w, http.StatusBadRequest, "Bad request", "The query string could not be parsed.")
		return nil, false
	}
	return v, true
}
