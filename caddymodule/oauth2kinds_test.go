package caddymodule

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Plain OAuth 2.0 providers (kind github, gitlab, oauth2) end to end: a
// browser walks the login through the gateway and an in-process fake of
// the provider, which checks the protocol it is spoken to and counts what
// it is asked.
//
// The fakes answer as the providers document:
//
// GitHub (OAuth app web flow, and the GitHub App's expiring user tokens):
//   - https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
//     (GET /login/oauth/authorize with client_id, redirect_uri, scope,
//     state, code_challenge and code_challenge_method=S256; POST
//     /login/oauth/access_token with client_id, client_secret, code,
//     redirect_uri, code_verifier, answered form-encoded
//     "access_token=…&scope=…&token_type=bearer", or as JSON with
//     Accept: application/json; errors such as bad_verification_code come
//     with status 200; the redirect URI's path must be below the
//     registered callback URL's)
//   - https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
//     (expires_in 28800, refresh_token, refresh_token_expires_in; the
//     refresh token is single-use; bad_refresh_token)
//   - REST API version 2022-11-28, under /api/v3 on GitHub Enterprise
//     Server: https://docs.github.com/en/rest/users/users#get-the-authenticated-user,
//     https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user,
//     https://docs.github.com/en/rest/orgs/orgs#list-organizations-for-the-authenticated-user,
//     https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user,
//     https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
//     (per_page default 30, at most 100; a Link header with rel="next",
//     "last", "first", "prev", none for a single page),
//     https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
//     (403 with x-ratelimit-remaining: 0),
//     https://docs.github.com/en/enterprise-cloud@latest/rest/authentication/authenticating-to-the-rest-api#saml-sso
//     (403 with X-GitHub-SSO)
//
// GitLab (Doorkeeper OAuth 2.0 provider, REST API v4):
//   - https://docs.gitlab.com/api/oauth2/ (authorization code flow with
//     PKCE: GET /oauth/authorize, POST /oauth/token answering JSON with
//     token_type "Bearer", expires_in 7200 and a refresh_token; errors
//     invalid_grant 400 and invalid_client 401)
//   - https://docs.gitlab.com/api/users/#get-the-current-user
//   - https://docs.gitlab.com/api/groups/#list-groups (min_access_level;
//     access levels: https://docs.gitlab.com/api/members/#roles — 5
//     Minimal Access, 10 Guest, 30 Developer …)
//   - https://docs.gitlab.com/api/rest/#pagination (offset pagination:
//     per_page default 20, at most 100; x-next-page empty on the last
//     page, x-page, x-per-page, x-prev-page, x-total, x-total-pages, and
//     a Link header)

// ghUser is a GitHub account as the fake knows it.
type ghUser struct {
	ID     int64
	Login  string
	Name   string
	Emails []ghEmail
	Orgs   []string // organization logins, as /user/orgs lists them
	Teams  []string // "org/team-slug", as /user/teams lists them
}

type ghEmail struct {
	Email             string
	Primary, Verified bool
}

// octocat is a member of acme (written ACME at GitHub, to show case is
// ignored) whose organization is on the second page of /user/orgs, with
// a verified primary address, another verified one and an unverified
// public profile address.
func octocat() *ghUser {
	orgs := make([]string, 0, 101)
	for i := range 100 {
		orgs = append(orgs, fmt.Sprintf("filler-%03d", i))
	}
	return &ghUser{
		ID: 583231, Login: "octocat", Name: "The Octocat",
		Emails: []ghEmail{
			{Email: "octo-other@example.com", Primary: false, Verified: true},
			{Email: "octocat@github.example", Primary: true, Verified: true},
		},
		Orgs: append(orgs, "ACME"),
	}
}

// ghGrant is an authorization code the fake issued.
type ghGrant struct {
	user                   *ghUser
	challenge, redirectURI string
}

// fakeGitHub is GitHub (Enterprise Server, at its own base URL): the web
// endpoints of the OAuth flow at /login/oauth/… and the REST API under
// /api/v3.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	callback string // the OAuth app's registered callback URL
	scope    string // the scope an authorization request must ask for
	expiring bool   // user tokens expire (GitHub Apps): expires_in and refresh_token
	next     *ghUser
	codes    map[string]ghGrant
	access   map[string]*ghUser
	refresh  map[string]*ghUser
	fail     map[string]http.HandlerFunc // API path → answer instead
	hits     map[string]int              // request path → count
	grants   map[string]int              // grant_type → token requests granted
	asked    []string                    // authorization requests' scopes
	jsonAsks int                         // token requests that asked for JSON
	auth     []string                    // how each token request authenticated the client: "basic" or "post"
	serial   int
}

func newFakeGitHub(t *testing.T, user *ghUser) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{t: t, next: user, scope: "user:email read:org",
		codes: map[string]ghGrant{}, access: map[string]*ghUser{}, refresh: map[string]*ghUser{},
		fail: map[string]http.HandlerFunc{}, hits: map[string]int{}, grants: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) URL() string { return f.srv.URL }

// update changes the fake's state under its lock.
func (f *fakeGitHub) update(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

func (f *fakeGitHub) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fakeGitHub) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.hits {
		n += c
	}
	return n
}

func (f *fakeGitHub) granted(grantType string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grants[grantType]
}

// problem reports a protocol violation the fake saw.
func (f *fakeGitHub) problem(format string, args ...any) {
	f.t.Errorf("fake GitHub: "+format, args...)
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/login/oauth/authorize":
		f.authorize(w, r)
	case r.URL.Path == "/login/oauth/access_token":
		f.token(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/v3/"):
		f.api(w, r, strings.TrimPrefix(r.URL.Path, "/api/v3"))
	default:
		http.NotFound(w, r)
	}
}

// authorize approves at once, as for a user who authorized the app
// before, and sends the browser back with a code.
func (f *fakeGitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	redirectURI := q.Get("redirect_uri")
	switch {
	case r.Method != http.MethodGet:
		f.problem("authorize: method %s", r.Method)
	case q.Get("client_id") != testClientID:
		f.problem("authorize: client_id %q", q.Get("client_id"))
	case q.Get("state") == "":
		f.problem("authorize: no state")
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		f.problem("authorize: PKCE %q %q, want S256", q.Get("code_challenge_method"), q.Get("code_challenge"))
	case q.Has("nonce"):
		f.problem("authorize: a nonce was sent to a plain OAuth 2.0 provider")
	case q.Get("scope") != f.scope:
		f.problem("authorize: scope %q, want %q", q.Get("scope"), f.scope)
	case f.callback == "" || !strings.HasPrefix(redirectURI, f.callback):
		f.problem("authorize: redirect_uri %q is not below the callback URL %q", redirectURI, f.callback)
	default:
		f.asked = append(f.asked, q.Get("scope"))
		f.serial++
		code := fmt.Sprintf("%020x", f.serial)
		f.codes[code] = ghGrant{user: f.next, challenge: q.Get("code_challenge"), redirectURI: redirectURI}
		back, _ := url.Parse(redirectURI)
		bq := back.Query()
		bq.Set("code", code)
		bq.Set("state", q.Get("state"))
		back.RawQuery = bq.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
		return
	}
	http.Error(w, "bad authorization request", http.StatusBadRequest)
}

// token exchanges a code (with its PKCE verifier) or a refresh token,
// for the registered client only. Like GitHub it answers 200 with an
// error field when it refuses, form-encoded unless asked for JSON.
func (f *fakeGitHub) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		http.Error(w, "", http.StatusNotFound)
		return
	}
	form := r.PostForm
	f.mu.Lock()
	defer f.mu.Unlock()
	asJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	if asJSON {
		f.jsonAsks++
	}
	answer := func(v url.Values) {
		if asJSON {
			m := map[string]any{}
			for k := range v {
				m[k] = v.Get(k)
			}
			for _, k := range []string{"expires_in", "refresh_token_expires_in"} {
				if n, err := strconv.Atoi(v.Get(k)); err == nil {
					m[k] = n
				}
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_ = json.NewEncoder(w).Encode(m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(v.Encode()))
	}
	refuse := func(code, description string) {
		answer(url.Values{"error": {code}, "error_description": {description},
			"error_uri": {"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}})
	}
	// The documented way is client_id and client_secret in the form;
	// HTTP Basic (gatehouse's default client_auth) is accepted too.
	id, secret, basic := r.BasicAuth()
	style := "basic"
	if !basic {
		id, secret, style = form.Get("client_id"), form.Get("client_secret"), "post"
	}
	f.auth = append(f.auth, style)
	if id != testClientID || secret != testClientSecret {
		refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	var user *ghUser
	switch form.Get("grant_type") {
	case "authorization_code", "":
		grant, ok := f.codes[form.Get("code")]
		delete(f.codes, form.Get("code")) // a code works once
		sum := sha256.Sum256([]byte(form.Get("code_verifier")))
		switch {
		case !ok:
			refuse("bad_verification_code", "The code passed is incorrect or expired.")
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != grant.challenge:
			f.problem("token: code_verifier does not match the code_challenge")
			refuse("bad_verification_code", "The code passed is incorrect or expired.")
			return
		case form.Has("redirect_uri") && form.Get("redirect_uri") != grant.redirectURI:
			refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
			return
		}
		user = grant.user
	case "refresh_token":
		var ok bool
		user, ok = f.refresh[form.Get("refresh_token")]
		delete(f.refresh, form.Get("refresh_token")) // refresh tokens are single-use
		if !ok {
			refuse("bad_refresh_token", "The refresh token passed is incorrect or expired.")
			return
		}
	default:
		refuse("unsupported_grant_type", "The grant type is not supported.")
		return
	}
	f.grants[cmp.Or(form.Get("grant_type"), "authorization_code")]++
	f.serial++
	v := url.Values{"access_token": {fmt.Sprintf("ghu_%036d", f.serial)}, "scope": {strings.ReplaceAll(f.scope, " ", ",")}, "token_type": {"bearer"}}
	if !f.expiring {
		v.Set("access_token", fmt.Sprintf("gho_%036d", f.serial))
	} else {
		v.Set("expires_in", "28800")
		v.Set("refresh_token", fmt.Sprintf("ghr_%076d", f.serial))
		v.Set("refresh_token_expires_in", "15897600")
		f.refresh[v.Get("refresh_token")] = user
	}
	f.access[v.Get("access_token")] = user
	answer(v)
}

// api answers the REST API for the token's user.
func (f *fakeGitHub) api(w http.ResponseWriter, r *http.Request, path string) {
	f.mu.Lock()
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	user := f.access[token]
	override := f.fail[path]
	var u ghUser
	if user != nil {
		u = *user
		u.Emails, u.Orgs, u.Teams = slices.Clone(u.Emails), slices.Clone(u.Orgs), slices.Clone(u.Teams)
	}
	f.mu.Unlock()
	if r.Header.Get("User-Agent") == "" {
		// "Requests with no User-Agent header will be rejected."
		answerJSON(w, http.StatusForbidden, `{"message":"Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}`)
		return
	}
	if user == nil {
		answerJSON(w, http.StatusUnauthorized, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	if override != nil {
		override(w, r)
		return
	}
	switch path {
	case "/user":
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"login": %q, "id": %d, "node_id": "MDQ6VXNlcjE=",
  "avatar_url": "https://github.com/images/error/octocat_happy.gif", "gravatar_id": "",
  "url": "https://api.github.com/users/octocat", "html_url": "https://github.com/octocat",
  "type": "User", "site_admin": false, "name": %q, "company": "GitHub",
  "blog": "https://github.com/blog", "location": "San Francisco",
  "email": "public-unverified@example.com", "hireable": false, "bio": "There once was...",
  "twitter_username": "monatheoctocat", "public_repos": 2, "public_gists": 1, "followers": 20,
  "following": 0, "created_at": "2008-01-14T04:33:35Z", "updated_at": "2008-01-14T04:33:35Z"}`, u.Login, u.ID, u.Name)
	case "/user/emails":
		var items []string
		for _, e := range u.Emails {
			items = append(items, fmt.Sprintf(`{"email": %q, "verified": %t, "primary": %t, "visibility": "public"}`, e.Email, e.Verified, e.Primary))
		}
		answerPage(w, r, items, 30, false)
	case "/user/orgs":
		var items []string
		for i, o := range u.Orgs {
			items = append(items, fmt.Sprintf(`{"login": %q, "id": %d, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
  "url": "https://api.github.com/orgs/%[1]s", "repos_url": "https://api.github.com/orgs/%[1]s/repos",
  "events_url": "https://api.github.com/orgs/%[1]s/events", "hooks_url": "https://api.github.com/orgs/%[1]s/hooks",
  "issues_url": "https://api.github.com/orgs/%[1]s/issues", "members_url": "https://api.github.com/orgs/%[1]s/members{/member}",
  "public_members_url": "https://api.github.com/orgs/%[1]s/public_members{/member}",
  "avatar_url": "https://github.com/images/error/octocat_happy.gif", "description": "A great organization"}`, o, i+1))
		}
		answerPage(w, r, items, 30, false)
	case "/user/teams":
		var items []string
		for i, t := range u.Teams {
			org, slug, _ := strings.Cut(t, "/")
			items = append(items, fmt.Sprintf(`{"id": %d, "node_id": "MDQ6VGVhbTE=", "url": "https://api.github.com/teams/1",
  "html_url": "https://github.com/orgs/%[2]s/teams/%[3]s", "name": "Justice League", "slug": %[3]q,
  "description": "A great team.", "privacy": "closed", "permission": "admin", "parent": null,
  "members_count": 3, "repos_count": 10,
  "organization": {"login": %[2]q, "id": 1, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
    "url": "https://api.github.com/orgs/%[2]s", "name": "github", "type": "Organization"}}`, i+1, org, slug))
		}
		answerPage(w, r, items, 30, false)
	default:
		answerJSON(w, http.StatusNotFound, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`)
	}
}

// answerJSON answers st with a JSON body.
func answerJSON(w http.ResponseWriter, st int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(st)
	_, _ = w.Write([]byte(body))
}

// answerPage answers one page of items (JSON objects) as GitHub (gitlab
// false) or GitLab paginates: per_page (default def, at most 100) and
// page; a Link header (GitHub: only with more than one page), and
// GitLab's x-* headers.
func answerPage(w http.ResponseWriter, r *http.Request, items []string, def int, gitlab bool) {
	q := r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per < 1 {
		per = def
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	pages := max(1, (len(items)+per-1)/per)
	lo, hi := min((page-1)*per, len(items)), min(page*per, len(items))
	link := func(p int, rel string) string {
		lq := r.URL.Query()
		lq.Set("page", strconv.Itoa(p))
		return fmt.Sprintf(`<%s>; rel=%q`, (&url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: lq.Encode()}).String(), rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1, "prev"))
	}
	if page < pages {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(1, "first"), link(pages, "last"))
	if gitlab || pages > 1 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	if gitlab {
		h := w.Header()
		next, prev := "", ""
		if page < pages {
			next = strconv.Itoa(page + 1)
		}
		if page > 1 {
			prev = strconv.Itoa(page - 1)
		}
		h.Set("X-Next-Page", next)
		h.Set("X-Page", strconv.Itoa(page))
		h.Set("X-Per-Page", strconv.Itoa(per))
		h.Set("X-Prev-Page", prev)
		h.Set("X-Total", strconv.Itoa(len(items)))
		h.Set("X-Total-Pages", strconv.Itoa(pages))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write([]byte("[" + strings.Join(items[lo:hi], ",") + "]"))
}

// glUser is a GitLab account as the fake knows it.
type glUser struct {
	ID          int64
	Username    string
	Email       string
	ConfirmedAt string         // "" for an unconfirmed account
	Groups      map[string]int // full path → access level
}

// fakeGitLab is a self-managed GitLab: /oauth/authorize, /oauth/token
// and the REST API under /api/v4.
type fakeGitLab struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	callback string
	scope    string
	next     *glUser
	codes    map[string]glGrant
	access   map[string]*glUser
	fail     map[string]http.HandlerFunc
	hits     map[string]int
	grants   map[string]int
	minLevel []string // the min_access_level of each /groups request
	serial   int
}

// glGrant is an authorization code the fake issued.
type glGrant struct {
	user                   *glUser
	challenge, redirectURI string
}

func newFakeGitLab(t *testing.T, user *glUser) *fakeGitLab {
	t.Helper()
	f := &fakeGitLab{t: t, next: user, scope: "read_user read_api", codes: map[string]glGrant{}, access: map[string]*glUser{},
		fail: map[string]http.HandlerFunc{}, hits: map[string]int{}, grants: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitLab) update(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

func (f *fakeGitLab) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fakeGitLab) problem(format string, args ...any) {
	f.t.Errorf("fake GitLab: "+format, args...)
}

func (f *fakeGitLab) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	f.mu.Unlock()
	switch r.URL.Path {
	case "/oauth/authorize":
		f.authorize(w, r)
	case "/oauth/token":
		f.token(w, r)
	case "/api/v4/user", "/api/v4/groups":
		f.api(w, r)
	default:
		answerJSON(w, http.StatusNotFound, `{"error":"404 Not Found"}`)
	}
}

func (f *fakeGitLab) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case q.Get("client_id") != testClientID || q.Get("response_type") != "code":
		f.problem("authorize: client_id %q response_type %q", q.Get("client_id"), q.Get("response_type"))
	case q.Get("state") == "":
		f.problem("authorize: no state")
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		f.problem("authorize: PKCE %q %q", q.Get("code_challenge_method"), q.Get("code_challenge"))
	case q.Has("nonce"):
		f.problem("authorize: a nonce was sent without openid")
	case q.Get("scope") != f.scope:
		f.problem("authorize: scope %q, want %q", q.Get("scope"), f.scope)
	case q.Get("redirect_uri") != f.callback:
		// Doorkeeper compares the redirect URI exactly.
		f.problem("authorize: redirect_uri %q, want %q", q.Get("redirect_uri"), f.callback)
	default:
		f.serial++
		code := fmt.Sprintf("%064x", f.serial)
		f.codes[code] = glGrant{user: f.next, challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri")}
		back, _ := url.Parse(q.Get("redirect_uri"))
		back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
		return
	}
	http.Error(w, "bad authorization request", http.StatusBadRequest)
}

func (f *fakeGitLab) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		answerJSON(w, http.StatusNotFound, `{"error":"404 Not Found"}`)
		return
	}
	form := r.PostForm
	f.mu.Lock()
	defer f.mu.Unlock()
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		answerJSON(w, http.StatusUnauthorized, `{"error":"invalid_client","error_description":"Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."}`)
		return
	}
	invalid := `{"error":"invalid_grant","error_description":"The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."}`
	if form.Get("grant_type") != "authorization_code" {
		answerJSON(w, http.StatusBadRequest, invalid)
		return
	}
	grant, ok := f.codes[form.Get("code")]
	delete(f.codes, form.Get("code"))
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != grant.challenge || form.Get("redirect_uri") != grant.redirectURI {
		f.problem("token: code, PKCE verifier or redirect_uri refused")
		answerJSON(w, http.StatusBadRequest, invalid)
		return
	}
	f.grants["authorization_code"]++
	f.serial++
	token := fmt.Sprintf("%064x", f.serial)
	f.access[token] = grant.user
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	fmt.Fprintf(w, `{"access_token": %q, "token_type": "Bearer", "expires_in": 7200, "refresh_token": "%064x", "scope": %q, "created_at": 1607635748}`,
		token, f.serial+1000, f.scope)
}

func (f *fakeGitLab) api(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	user := f.access[token]
	override := f.fail[r.URL.Path]
	var u glUser
	if user != nil {
		u = *user
		u.Groups = make(map[string]int, len(user.Groups))
		for k, v := range user.Groups {
			u.Groups[k] = v
		}
	}
	if r.URL.Path == "/api/v4/groups" {
		f.minLevel = append(f.minLevel, r.URL.Query().Get("min_access_level"))
	}
	f.mu.Unlock()
	if user == nil {
		answerJSON(w, http.StatusUnauthorized, `{"message":"401 Unauthorized"}`)
		return
	}
	if override != nil {
		override(w, r)
		return
	}
	if r.URL.Path == "/api/v4/user" {
		confirmed := "null"
		if u.ConfirmedAt != "" {
			confirmed = strconv.Quote(u.ConfirmedAt)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": %d, "username": %q, "email": %q, "name": "John Smith", "state": "active",
  "locked": false, "avatar_url": "http://localhost:3000/uploads/user/avatar/1/index.jpg",
  "web_url": "http://localhost:3000/john_smith", "created_at": "2012-05-23T08:00:58Z", "bio": "",
  "public_email": "john@example.com", "confirmed_at": %s, "last_sign_in_at": "2012-06-01T11:41:01Z",
  "identities": [], "can_create_group": true, "can_create_project": true, "two_factor_enabled": true,
  "external": false, "private_profile": false, "commit_email": "admin@example.com"}`, u.ID, u.Username, u.Email, confirmed)
		return
	}
	minLevel, _ := strconv.Atoi(r.URL.Query().Get("min_access_level"))
	paths := make([]string, 0, len(u.Groups))
	for p, level := range u.Groups {
		if level >= minLevel {
			paths = append(paths, p)
		}
	}
	// The fillers first, so that the groups a test cares about come last.
	rank := func(p string) int {
		if strings.HasPrefix(p, "filler-") {
			return 0
		}
		return 1
	}
	slices.SortFunc(paths, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b)) })
	items := make([]string, 0, len(paths))
	for i, p := range paths {
		name := p[strings.LastIndex(p, "/")+1:]
		items = append(items, fmt.Sprintf(`{"id": %d, "name": %q, "path": %q, "description": "An interesting group",
  "visibility": "private", "lfs_enabled": true, "avatar_url": null, "web_url": "http://localhost:3000/groups/%s",
  "request_access_enabled": false, "full_name": "Foobar Group", "full_path": %q, "parent_id": null,
  "created_at": "2020-01-15T12:36:29.590Z"}`, i+1, name, name, p, p))
	}
	answerPage(w, r, items, 20, true)
}

// kindApp is newApp whose upstream also records {http.auth.user.provider}
// (as the X-Test-Provider of the headers it keeps).
func kindApp(t *testing.T, g *Gatehouse) *app {
	t.Helper()
	a := &app{g: g}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(contextWithReplacer(r, repl))
		err := g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			h := r.Header.Clone()
			provider, ok := repl.Get("http.auth.user.provider")
			if !ok {
				provider = "<unset>"
			}
			h.Set("X-Test-Provider", fmt.Sprint(provider))
			a.mu.Lock()
			a.seen = append(a.seen, h)
			a.mu.Unlock()
			_, _ = w.Write([]byte("hello " + r.Header.Get("X-Forwarded-User")))
			return nil
		}))
		if err != nil {
			var he caddyhttp.HandlerError
			errors.As(err, &he)
			w.WriteHeader(he.StatusCode)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

// upstreamSaw returns and forgets the headers the upstream received.
func upstreamSaw(a *app) []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := a.seen
	a.seen = nil
	return seen
}

// githubApp is a gateway for the fake GitHub (Enterprise Server at its
// base URL), with mod applied to its config.
func githubApp(t *testing.T, fake *fakeGitHub, mod func(*Gatehouse)) *app {
	t.Helper()
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{Kind: "github", BaseURL: fake.URL(), ClientID: testClientID, ClientSecret: testClientSecret}
		if mod != nil {
			mod(g)
		}
	})
	a := kindApp(t, g)
	fake.update(func() { fake.callback = a.URL + "/oauth2/callback" })
	return a
}

// walkPlainLogin navigates to target at a (one provider), lets the provider
// approve at once, and returns the browser and the callback's answer.
func walkPlainLogin(t *testing.T, a *app, providerURL, target string) (*browser, *http.Response, string) {
	t.Helper()
	b := newBrowser(t)
	resp, _ := b.get(a.URL + target)
	resp, body := followToCallback(t, a, b, resp, providerURL, "/oauth2/callback")
	return b, resp, body
}

// followToCallback follows resp, a redirect to the provider at providerURL, to
// the callback at callbackPath, and returns the callback's answer.
func followToCallback(t *testing.T, a *app, b *browser, resp *http.Response, providerURL, callbackPath string) (*http.Response, string) {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, providerURL+"/") {
		t.Fatalf("login start: %d to %q, want the provider at %s", resp.StatusCode, loc, providerURL)
	}
	resp, body := b.get(loc)
	cb := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(cb, a.URL+callbackPath+"?") {
		t.Fatalf("provider: %d to %q, want %s%s: %s", resp.StatusCode, cb, a.URL, callbackPath, body)
	}
	return b.get(cb)
}

// holdsSession reports whether the browser holds a session cookie of a.
func holdsSession(a *app, b *browser) bool {
	r := httptest.NewRequest("GET", a.URL, nil)
	u, _ := url.Parse(a.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	_, _, err := a.g.sessions.Load(r)
	return err == nil
}

// assertRefused checks that a callback answer is status with no session.
func assertRefused(t *testing.T, name string, a *app, b *browser, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Errorf("%s: callback %d, want %d: %s", name, resp.StatusCode, want, body)
	}
	for _, c := range resp.Cookies() {
		if c.MaxAge >= 0 && c.Value != "" {
			t.Errorf("%s: the refusal set cookie %s", name, c.Name)
		}
	}
	if holdsSession(a, b) {
		t.Errorf("%s: the browser holds a session", name)
	}
	if seen := upstreamSaw(a); len(seen) > 0 {
		t.Errorf("%s: the upstream was reached %d times", name, len(seen))
	}
}

// TestKindGitHubOrgs: allow_orgs at a GitHub Enterprise Server. A
// non-member is refused (403), memberships that cannot be read refuse the
// login (502: fail closed, oauth2-proxy CVE-2021-21411), neither with a
// session; a member whose organization is on the second page signs in
// with the numeric id as the user, the login as preferred username, the
// verified primary address only, and the organizations as groups.
func TestKindGitHubOrgs(t *testing.T) {
	user := octocat()
	fake := newFakeGitHub(t, user)
	a := githubApp(t, fake, func(g *Gatehouse) { g.AllowOrgs = []string{"acme"} })

	// Not a member: acme missing from every page.
	fake.update(func() { user.Orgs = append(slices.Clone(user.Orgs[:100]), "acme-labs", "other") })
	b, resp, body := walkPlainLogin(t, a, fake.URL(), "/reports")
	assertRefused(t, "non-member", a, b, resp, body, http.StatusForbidden)
	if !strings.Contains(body, "Access denied") || !strings.Contains(body, "not a member") {
		t.Errorf("non-member page: %s", body)
	}
	if fake.count("/api/v3/user/orgs") != 2 {
		t.Errorf("/user/orgs read %d times for a list of two pages", fake.count("/api/v3/user/orgs"))
	}
	fake.update(func() { user.Orgs = octocat().Orgs })

	// Memberships that cannot be read: a server error, a rate limit (403
	// with x-ratelimit-remaining: 0), an organization's SAML SSO (403
	// with X-GitHub-SSO), a second page that fails.
	failures := map[string]http.HandlerFunc{
		"server error": func(w http.ResponseWriter, r *http.Request) {
			answerJSON(w, http.StatusInternalServerError, `{"message":"Server Error"}`)
		},
		"rate limited": func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Ratelimit-Limit", "5000")
			h.Set("X-Ratelimit-Remaining", "0")
			h.Set("X-Ratelimit-Used", "5000")
			h.Set("X-Ratelimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
			h.Set("X-Ratelimit-Resource", "core")
			answerJSON(w, http.StatusForbidden, `{"message":"API rate limit exceeded for user ID 583231.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}`)
		},
		"saml sso": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-GitHub-SSO", "required; url=https://github.com/orgs/acme/sso?authorization_request=AZSCKtL4U8yX1H3sCQIVnVgmjmon5fWxks5YrqhJgah0b2tlbl9pZM4EuMz4")
			answerJSON(w, http.StatusForbidden, `{"message":"Resource protected by organization SAML enforcement. You must grant your OAuth token access to this organization.","documentation_url":"https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/"}`)
		},
	}
	for name, h := range failures {
		fake.update(func() { fake.fail["/user/orgs"] = h })
		b, resp, body := walkPlainLogin(t, a, fake.URL(), "/reports")
		assertRefused(t, name, a, b, resp, body, http.StatusBadGateway)
		if !strings.Contains(body, "Sign-in is unavailable") {
			t.Errorf("%s: page %s", name, body)
		}
	}
	fake.update(func() {
		fake.fail["/user/orgs"] = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "2" {
				answerJSON(w, http.StatusServiceUnavailable, `{"message":"Server Error"}`)
				return
			}
			w.Header().Set("Link", fmt.Sprintf(`<http://%s/api/v3/user/orgs?per_page=100&page=2>; rel="next", <http://%[1]s/api/v3/user/orgs?per_page=100&page=2>; rel="last"`, r.Host))
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write([]byte(`[{"login": "acme", "id": 1}]`)) // acme on page 1: no partial list is trusted
		}
	})
	b, resp, body = walkPlainLogin(t, a, fake.URL(), "/reports")
	assertRefused(t, "second page fails", a, b, resp, body, http.StatusBadGateway)
	fake.update(func() { clear(fake.fail) })
	if n := fake.count("/api/v3/user/teams"); n != 0 {
		t.Errorf("/user/teams read %d times without a team rule", n)
	}

	// A member, acme on page 2.
	orgsBefore := fake.count("/api/v3/user/orgs")
	b, resp, body = walkPlainLogin(t, a, fake.URL(), "/reports?q=1")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/reports?q=1" {
		t.Fatalf("member: callback %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if n := fake.count("/api/v3/user/orgs") - orgsBefore; n != 2 {
		t.Errorf("member: /user/orgs read %d times, want 2 pages", n)
	}
	resp, body = b.get(a.URL + "/reports?q=1")
	if resp.StatusCode != http.StatusOK || body != "hello 583231" {
		t.Fatalf("member: %d %q", resp.StatusCode, body)
	}
	h := upstreamSaw(a)[0]
	want := map[string]string{
		"X-Forwarded-User": "583231", "X-Forwarded-Preferred-Username": "octocat",
		"X-Forwarded-Email": "octocat@github.example", "X-Test-Provider": "",
	}
	for name, v := range want {
		if got := h.Get(name); got != v {
			t.Errorf("upstream %s = %q, want %q", name, got, v)
		}
	}
	groups := strings.Split(h.Get("X-Forwarded-Groups"), ",")
	if !slices.Contains(groups, "acme") || len(groups) != 101 || slices.Contains(groups, "ACME") {
		t.Errorf("upstream groups %q…, want the 101 organizations in lower case", groups[:min(3, len(groups))])
	}
	s := a.session(t, b)
	if s.Subject != "583231" || s.Name != "The Octocat" || s.IDToken != "" || s.Provider != "" || s.AccessExpiry != 0 || s.RefreshToken != "" {
		t.Errorf("session: sub %q name %q id token %q provider %q expiry %d refresh %q",
			s.Subject, s.Name, s.IDToken, s.Provider, s.AccessExpiry, s.RefreshToken)
	}

	// An unverified primary address is not forwarded, though another
	// address is verified; the login works.
	fake.update(func() {
		user.Emails = []ghEmail{{Email: "octocat@github.example", Primary: true}, {Email: "octo-other@example.com", Verified: true}}
	})
	b, resp, body = walkPlainLogin(t, a, fake.URL(), "/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("unverified primary: callback %d: %s", resp.StatusCode, body)
	}
	if resp, body := b.get(a.URL + "/"); resp.StatusCode != http.StatusOK || body != "hello 583231" {
		t.Fatalf("unverified primary: %d %q", resp.StatusCode, body)
	}
	if h := upstreamSaw(a)[0]; h.Values("X-Forwarded-Email") != nil || h.Get("X-Forwarded-Preferred-Username") != "octocat" {
		t.Errorf("unverified primary: upstream email %q, username %q", h.Values("X-Forwarded-Email"), h.Get("X-Forwarded-Preferred-Username"))
	}
	if s := a.session(t, b); !s.EmailUnverified || s.Email != "octocat@github.example" {
		t.Errorf("unverified primary: session email %q unverified %v", s.Email, s.EmailUnverified)
	}

	// Sign-out ends the session without any call to the provider: GitHub
	// has no end-session or RFC 7009 revocation endpoint.
	before := fake.total()
	r, _ := http.NewRequest("POST", a.URL+"/oauth2/sign_out", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp := b.do(r); resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", resp.StatusCode)
	}
	if holdsSession(a, b) || fake.total() != before {
		t.Errorf("sign-out: session kept %t, %d requests to GitHub", holdsSession(a, b), fake.total()-before)
	}
	if n := fake.count("/.well-known/openid-configuration"); n != 0 {
		t.Errorf("%d discovery requests to GitHub", n)
	}

	// Each login asked for user:email read:org and redeemed its code once.
	fake.update(func() {
		if len(fake.asked) != len(failures)+4 || len(fake.codes) != 0 {
			t.Errorf("%d authorization requests, %d codes left unredeemed", len(fake.asked), len(fake.codes))
		}
		if fake.grants["authorization_code"] != len(fake.asked) {
			t.Errorf("%d code grants for %d logins", fake.grants["authorization_code"], len(fake.asked))
		}
	})
}

// TestKindGitHubTeams: allow_teams with allow_orgs: both must hold;
// teams that cannot be read refuse the login.
func TestKindGitHubTeams(t *testing.T) {
	user := octocat()
	fake := newFakeGitHub(t, user)
	a := githubApp(t, fake, func(g *Gatehouse) {
		g.AllowOrgs = []string{"acme"}
		g.AllowTeams = []string{"acme/platform"}
	})
	for _, tc := range []struct {
		name  string
		orgs  []string
		teams []string
		want  int
	}{
		{"org, no team", []string{"acme"}, []string{"acme/web"}, http.StatusForbidden},
		{"team of another org", []string{"acme"}, []string{"other/platform"}, http.StatusForbidden},
		{"team, org not listed", []string{"other"}, []string{"acme/platform"}, http.StatusForbidden},
		{"neither", nil, nil, http.StatusForbidden},
		{"both, any case", []string{"other", "ACME"}, []string{"acme/web", "Acme/Platform"}, http.StatusFound},
	} {
		fake.update(func() { user.Orgs, user.Teams = tc.orgs, tc.teams })
		b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
		if tc.want != http.StatusFound {
			assertRefused(t, tc.name, a, b, resp, body, tc.want)
			continue
		}
		if resp.StatusCode != tc.want {
			t.Fatalf("%s: callback %d: %s", tc.name, resp.StatusCode, body)
		}
		b.get(a.URL + "/")
		if g := upstreamSaw(a)[0].Get("X-Forwarded-Groups"); g != "other,acme,acme/web,acme/platform" {
			t.Errorf("%s: groups %q", tc.name, g)
		}
	}

	fake.update(func() {
		fake.fail["/user/teams"] = func(w http.ResponseWriter, r *http.Request) {
			answerJSON(w, http.StatusInternalServerError, `{"message":"Server Error"}`)
		}
	})
	b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
	assertRefused(t, "teams unreadable", a, b, resp, body, http.StatusBadGateway)
}

// TestKindGitHubAllowGroups: without allow_orgs or allow_teams, a block's
// allow_groups rule has organizations and teams read (read:org asked
// for) and decides after the login, as for any provider.
func TestKindGitHubAllowGroups(t *testing.T) {
	user := octocat()
	user.Teams = []string{"acme/platform"}
	fake := newFakeGitHub(t, user)
	a := githubApp(t, fake, func(g *Gatehouse) { g.AllowGroups = []string{"acme/platform"} })
	b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("team member: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.get(a.URL + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("team member: %d %s", resp.StatusCode, body)
	}
	fake.update(func() { user.Teams = []string{"acme/web"} })
	b, resp, _ = walkPlainLogin(t, a, fake.URL(), "/")
	upstreamSaw(a)
	if resp, _ := b.get(a.URL + "/"); resp.StatusCode != http.StatusForbidden || len(upstreamSaw(a)) != 0 {
		t.Fatalf("not in the team: %d", resp.StatusCode)
	}

	// Without any group rule only user:email is asked for, and no
	// membership is read.
	fake2 := newFakeGitHub(t, octocat())
	fake2.scope = "user:email"
	a2 := githubApp(t, fake2, nil)
	if _, resp, body := walkPlainLogin(t, a2, fake2.URL(), "/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("no rule: %d %s", resp.StatusCode, body)
	}
	if n := fake2.count("/api/v3/user/orgs") + fake2.count("/api/v3/user/teams"); n != 0 {
		t.Errorf("no rule: %d membership requests", n)
	}
}

// TestKindGitLabGroups: allow_gitlab_groups acme/platform admits members
// of the group and of its ancestors (GitLab's membership is inherited
// downwards), not of its subgroups, of look-alike paths, or with Minimal
// Access; groups that cannot be read refuse the login; the list is read
// through x-next-page.
func TestKindGitLabGroups(t *testing.T) {
	user := &glUser{ID: 1, Username: "john_smith", Email: "john@example.com", ConfirmedAt: "2012-05-23T09:05:22Z"}
	fake := newFakeGitLab(t, user)
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{Kind: "gitlab", BaseURL: fake.srv.URL + "/", ClientID: testClientID, ClientSecret: testClientSecret,
			AllowGitLabGroups: []string{"acme/platform"}}
	})
	a := kindApp(t, g)
	fake.update(func() { fake.callback = a.URL + "/oauth2/callback" })
	fillers := func(level int) map[string]int {
		m := map[string]int{}
		for i := range 100 {
			m[fmt.Sprintf("filler-%03d", i)] = level
		}
		return m
	}
	with := func(groups map[string]int) map[string]int {
		m := fillers(30)
		for k, v := range groups {
			m[k] = v
		}
		return m
	}

	for _, tc := range []struct {
		name   string
		groups map[string]int
	}{
		{"none", nil},
		{"subgroup only", with(map[string]int{"acme/platform/infra": 30})},
		{"look-alikes", with(map[string]int{"acme/plat": 30, "acme-platform": 30, "acme/platform-old": 30, "platform": 30})},
		{"sibling", with(map[string]int{"acme/web": 50})},
		{"minimal access", with(map[string]int{"acme/platform": 5, "acme": 5})},
	} {
		fake.update(func() { user.Groups = tc.groups })
		b, resp, body := walkPlainLogin(t, a, fake.srv.URL, "/")
		assertRefused(t, tc.name, a, b, resp, body, http.StatusForbidden)
	}

	for _, h := range []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) {
			answerJSON(w, http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("RateLimit-Remaining", "0")
			w.Header().Set("Retry-After", "60")
			answerJSON(w, http.StatusTooManyRequests, `Retry later`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			answerJSON(w, http.StatusForbidden, `{"message":"403 Forbidden"}`)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Next-Page", "two")
			answerJSON(w, http.StatusOK, `[{"full_path":"acme/platform"}]`)
		},
	} {
		fake.update(func() {
			user.Groups = with(map[string]int{"acme/platform": 30})
			fake.fail["/api/v4/groups"] = h
		})
		b, resp, body := walkPlainLogin(t, a, fake.srv.URL, "/")
		assertRefused(t, "groups unreadable", a, b, resp, body, http.StatusBadGateway)
	}
	fake.update(func() { clear(fake.fail) })

	for _, tc := range []struct {
		name   string
		groups map[string]int
		header string
	}{
		{"member of the group, page 2", with(map[string]int{"Acme/Platform": 10}), "acme/platform"},
		{"member of the parent", with(map[string]int{"acme": 30}), "acme"},
	} {
		fake.update(func() { user.Groups = tc.groups })
		before := fake.count("/api/v4/groups")
		b, resp, body := walkPlainLogin(t, a, fake.srv.URL, "/")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("%s: callback %d: %s", tc.name, resp.StatusCode, body)
		}
		if n := fake.count("/api/v4/groups") - before; n != 2 {
			t.Errorf("%s: /groups read %d times, want 2 pages", tc.name, n)
		}
		if resp, body := b.get(a.URL + "/"); resp.StatusCode != http.StatusOK || body != "hello 1" {
			t.Fatalf("%s: %d %q", tc.name, resp.StatusCode, body)
		}
		h := upstreamSaw(a)[0]
		groups := strings.Split(h.Get("X-Forwarded-Groups"), ",")
		if len(groups) != 101 || groups[100] != tc.header || h.Get("X-Forwarded-Email") != "john@example.com" || h.Get("X-Forwarded-Preferred-Username") != "john_smith" {
			t.Errorf("%s: upstream groups …%q email %q username %q", tc.name, groups[len(groups)-1], h.Get("X-Forwarded-Email"), h.Get("X-Forwarded-Preferred-Username"))
		}
	}
	fake.update(func() {
		for _, l := range fake.minLevel {
			if l != "10" {
				t.Errorf("/groups asked with min_access_level %q, want 10 (Guest)", l)
			}
		}
	})

	// An unconfirmed account's address is not forwarded.
	fake.update(func() { user.ConfirmedAt = "" })
	b, resp, body := walkPlainLogin(t, a, fake.srv.URL, "/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("unconfirmed: callback %d: %s", resp.StatusCode, body)
	}
	b.get(a.URL + "/")
	if h := upstreamSaw(a)[0]; h.Values("X-Forwarded-Email") != nil {
		t.Errorf("unconfirmed: upstream email %q", h.Values("X-Forwarded-Email"))
	}
}

// TestKindConfigErrors: what Validate refuses, each naming the
// sub-directive at fault, for a Gatehouse built by hand and from a
// Caddyfile.
func TestKindConfigErrors(t *testing.T) {
	client := func(pc ProviderConfig) ProviderConfig {
		pc.ClientID, pc.ClientSecret = "c", "s"
		return pc
	}
	for _, tc := range []struct {
		name string
		g    Gatehouse
		want string
	}{
		{"allow_orgs with gitlab", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "gitlab", AllowOrgs: []string{"acme"}})}, "allow_orgs"},
		{"allow_teams without slash", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "github", AllowTeams: []string{"noslash"}})}, "allow_teams"},
		{"allow_gitlab_groups with github", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "github", AllowGitLabGroups: []string{"acme"}})}, "allow_gitlab_groups"},
		{"oauth2 without userinfo", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "oauth2",
			AuthorizationEndpoint: "https://idp.example/authorize", TokenEndpoint: "https://idp.example/token"})}, "userinfo_endpoint"},
		{"unknown kind", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "saml", Issuer: "https://idp.example"})}, "kind"},
		{"jwks_uri with github", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "github", JWKSURI: "https://github.example/jwks"})}, "jwks_uri"},
		{"subject_path with github", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "github", SubjectPath: "id"})}, "subject_path"},
		{"bearer, github first", Gatehouse{ProviderConfig: client(ProviderConfig{Kind: "github"}),
			Bearer: &BearerConfig{Audiences: []string{"api"}}}, "bearer issuer"},
		{"bearer, named github first", Gatehouse{Providers: []*NamedProvider{
			{Name: "gh", ProviderConfig: client(ProviderConfig{Kind: "github"})},
			{Name: "corp", ProviderConfig: client(ProviderConfig{Issuer: "https://idp.example"})},
		}, Bearer: &BearerConfig{Audiences: []string{"api"}}}, "bearer issuer"},
		{"bearer only with github", Gatehouse{ProviderConfig: ProviderConfig{Kind: "github"},
			Bearer: &BearerConfig{Audiences: []string{"api"}, Issuer: "https://idp.example", JWKSURI: "https://idp.example/jwks", Only: true}}, "kind"},
	} {
		g := tc.g
		g.CookieSecrets = []string{testCookieSecret}
		if g.Bearer != nil && g.Bearer.Only {
			g.CookieSecrets, g.Unauthenticated = nil, "401"
		}
		g.applyDefaults()
		err := g.Validate()
		if err == nil || !strings.Contains(err.Error(), ": "+tc.want+": ") {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}

	for _, tc := range []struct{ name, block, want string }{
		{"allow_orgs with gitlab", "kind gitlab\nallow_orgs acme", "allow_orgs"},
		{"allow_teams without slash", "kind github\nallow_teams noslash", "allow_teams"},
		{"oauth2 without userinfo", "kind oauth2\nauthorization_endpoint https://idp.example/a\ntoken_endpoint https://idp.example/t", "userinfo_endpoint"},
		{"unknown kind", "kind saml\nissuer https://idp.example", "kind"},
		{"bearer, github first", "kind github\nbearer {\naudience api\n}", "bearer issuer"},
		{"named provider", "provider gh {\nkind gitlab\nallow_orgs acme\nclient_id c\nclient_secret s\n}", "provider gh: allow_orgs"},
	} {
		var g Gatehouse
		cf := "gatehouse {\n" + tc.block + "\n"
		if !strings.HasPrefix(tc.block, "provider") {
			cf += "client_id c\nclient_secret s\n"
		}
		cf += "cookie_secret " + testCookieSecret + "\n}"
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(cf))
		if err == nil {
			g.applyDefaults()
			err = g.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want+": ") {
			t.Errorf("Caddyfile %s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}

	// And what is accepted: github.com by default, GitHub Enterprise
	// Server and self-managed GitLab by base_url.
	for _, pc := range []ProviderConfig{
		{Kind: "github", AllowOrgs: []string{"acme"}, AllowTeams: []string{"acme/platform"}},
		{Kind: "github", BaseURL: "https://github.example.com"},
		{Kind: "gitlab", BaseURL: "https://gitlab.example.com", AllowGitLabGroups: []string{"acme/platform"}},
		{Kind: "oauth2", AuthorizationEndpoint: "https://idp.example/a", TokenEndpoint: "https://idp.example/t",
			UserinfoEndpoint: "https://idp.example/me", SubjectPath: "data.id"},
	} {
		g := Gatehouse{ProviderConfig: client(pc), CookieSecrets: []string{testCookieSecret}}
		g.applyDefaults()
		if err := g.Validate(); err != nil {
			t.Errorf("%+v: %v", pc, err)
		}
	}
	var pc ProviderConfig
	pc.Kind = "github"
	pc.applyDefaults()
	if pc.AuthorizationEndpoint != "https://github.com/login/oauth/authorize" || pc.TokenEndpoint != "https://github.com/login/oauth/access_token" || pc.Issuer != "https://github.com" {
		t.Errorf("github.com endpoints: %+v", pc)
	}
	if api := pc.userAPIConfig(nil, nil, false).BaseURL; api != "" {
		t.Errorf("github.com API base %q, want userapi's default (api.github.com)", api)
	}
	pc = ProviderConfig{Kind: "gitlab", BaseURL: "https://gitlab.example.com/"}
	pc.applyDefaults()
	if pc.AuthorizationEndpoint != "https://gitlab.example.com/oauth/authorize" || pc.TokenEndpoint != "https://gitlab.example.com/oauth/token" {
		t.Errorf("gitlab endpoints: %+v", pc)
	}
}

// TestKindGitHubBesideOIDC: a block with a devidp provider and a GitHub
// one: the chooser lists both, each signs in at its own callback, the
// upstream sees the provider; the GitHub session is refreshed with its
// refresh token once its access token expires, the memberships read
// again: kept while they cannot be read, ended once the user left the
// organization.
func TestKindGitHubBesideOIDC(t *testing.T) {
	clock := &testClock{t: time.Now()}
	user := octocat()
	fake := newFakeGitHub(t, user)
	fake.expiring = true
	staff := newIDP(t)
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{}
		g.now = clock.now
		g.Providers = []*NamedProvider{
			{Name: "staff", ProviderConfig: ProviderConfig{Issuer: staff.Issuer(), ClientID: testClientID, ClientSecret: testClientSecret}},
			{Name: "github", DisplayName: "GitHub", ProviderConfig: ProviderConfig{Kind: "github", BaseURL: fake.URL(),
				ClientID: testClientID, ClientSecret: testClientSecret, AllowOrgs: []string{"acme"}}},
		}
	})
	a := kindApp(t, g)
	fake.update(func() { fake.callback = a.URL + "/oauth2/callback" })

	b := newBrowser(t)
	resp, _ := b.get(a.URL + "/x")
	resp, page := b.get(a.URL + resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `data-provider="staff"`) || !strings.Contains(page, `data-provider="github"`) || !strings.Contains(page, ">GitHub</a>") {
		t.Fatalf("sign-in page: %d\n%s", resp.StatusCode, page)
	}

	if _, resp := chooseAndLogin(t, a, "/y", "staff", "alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("staff login: %d", resp.StatusCode)
	}
	upstreamSaw(a)

	resp, _ = b.get(a.URL + "/oauth2/start?provider=github&rd=%2Fx")
	resp, body := followToCallback(t, a, b, resp, fake.URL(), "/oauth2/callback/github")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/x" {
		t.Fatalf("github login: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if resp, body := b.get(a.URL + "/x"); resp.StatusCode != http.StatusOK || body != "hello 583231" {
		t.Fatalf("github user: %d %q", resp.StatusCode, body)
	}
	if p := upstreamSaw(a)[0].Get("X-Test-Provider"); p != "github" {
		t.Errorf("{http.auth.user.provider} = %q", p)
	}
	s := a.session(t, b)
	if s.Provider != "github" || s.RefreshToken == "" || s.AccessExpiry == 0 {
		t.Fatalf("session: provider %q refresh token %t expiry %d", s.Provider, s.RefreshToken != "", s.AccessExpiry)
	}

	// The access token expires: one refresh grant, the user and the
	// memberships read again.
	users, orgs := fake.count("/api/v3/user"), fake.count("/api/v3/user/orgs")
	clock.advance(8*time.Hour + time.Minute)
	if !signedIn(t, a, b) {
		t.Fatal("the session ended at its refresh")
	}
	if n := fake.granted("refresh_token"); n != 1 {
		t.Fatalf("%d refresh grants, want 1", n)
	}
	if fake.count("/api/v3/user") != users+1 || fake.count("/api/v3/user/orgs") != orgs+2 {
		t.Errorf("at the refresh /user read %d times, /user/orgs %d, want 1 and 2 (pages)",
			fake.count("/api/v3/user")-users, fake.count("/api/v3/user/orgs")-orgs)
	}
	if s2 := a.session(t, b); s2.ID != s.ID || s2.RefreshToken == s.RefreshToken {
		t.Errorf("the refresh did not rotate the refresh token of the same session")
	}

	// Memberships that cannot be read at a refresh keep the session (the
	// provider is unavailable, not the user refused).
	fake.update(func() {
		fake.fail["/user/orgs"] = func(w http.ResponseWriter, r *http.Request) {
			answerJSON(w, http.StatusInternalServerError, `{"message":"Server Error"}`)
		}
	})
	clock.advance(8*time.Hour + time.Minute)
	if !signedIn(t, a, b) {
		t.Fatal("the session ended while the memberships could not be read")
	}
	if n := fake.granted("refresh_token"); n != 2 {
		t.Fatalf("%d refresh grants, want 2", n)
	}

	// The user left acme: the next refresh ends the session.
	fake.update(func() {
		clear(fake.fail)
		user.Orgs = []string{"other"}
	})
	clock.advance(8*time.Hour + time.Minute)
	if signedIn(t, a, b) {
		t.Fatal("a user who left the organization is still signed in after the refresh")
	}
	if n := fake.granted("refresh_token"); n != 3 {
		t.Fatalf("%d refresh grants, want 3", n)
	}
	if holdsSession(a, b) {
		t.Error("the ended session's cookie is still in the browser")
	}
}

// TestKindOAuth2Login: kind oauth2 with explicit endpoints — here
// GitHub's web flow, with its GET /user as the user-info endpoint: only
// the configured scopes are asked for, the subject and username come from
// subject_path and username_path, other claims from the same object, and
// an address without email_verified is not forwarded.
func TestKindOAuth2Login(t *testing.T) {
	fake := newFakeGitHub(t, octocat())
	fake.scope = "read:user"
	g := newHandler(t, "", func(g *Gatehouse) {
		g.ProviderConfig = ProviderConfig{Kind: "oauth2", ClientID: testClientID, ClientSecret: testClientSecret, ClientAuth: "post",
			AuthorizationEndpoint: fake.URL() + "/login/oauth/authorize", TokenEndpoint: fake.URL() + "/login/oauth/access_token",
			UserinfoEndpoint: fake.URL() + "/api/v3/user", Scopes: []string{"read:user"}, SubjectPath: "id", UsernamePath: "login"}
		g.Headers = map[string]string{"X-Company": "company"}
	})
	a := kindApp(t, g)
	fake.update(func() { fake.callback = a.URL + "/oauth2/callback" })
	b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback %d: %s", resp.StatusCode, body)
	}
	if resp, body := b.get(a.URL + "/"); resp.StatusCode != http.StatusOK || body != "hello 583231" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	h := upstreamSaw(a)[0]
	if h.Get("X-Forwarded-Preferred-Username") != "octocat" || h.Get("X-Company") != "GitHub" || h.Values("X-Forwarded-Email") != nil {
		t.Errorf("upstream username %q company %q email %q", h.Get("X-Forwarded-Preferred-Username"), h.Get("X-Company"), h.Values("X-Forwarded-Email"))
	}
	if n := fake.count("/api/v3/user/emails") + fake.count("/api/v3/user/orgs"); n != 0 {
		t.Errorf("the oauth2 kind read %d GitHub-specific endpoints", n)
	}
	fake.update(func() {
		if !slices.Equal(fake.auth, []string{"post"}) {
			t.Errorf("client authentication at the token endpoint: %q, want post", fake.auth)
		}
	})
}

// TestKindGitHubRefreshOnGatewayClock: a refreshed GitHub token expires
// expires_in after its refresh on the gateway's clock, so one request
// right after a refresh does not refresh again. (The token request used
// to carry no Accept: application/json, so GitHub answered form-encoded
// and x/oauth2 put expires_in on the wall clock, not the gateway's:
// every request after a refresh refreshed again.)
func TestKindGitHubRefreshOnGatewayClock(t *testing.T) {
	clock := &testClock{t: time.Now()}
	user := octocat()
	fake := newFakeGitHub(t, user)
	fake.expiring = true
	a := githubApp(t, fake, func(g *Gatehouse) {
		g.now = clock.now
		g.AllowOrgs = []string{"acme"}
	})
	b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	clock.advance(8*time.Hour + time.Minute)
	if !signedIn(t, a, b) || !signedIn(t, a, b) {
		t.Fatal("the session ended")
	}
	if n := fake.granted("refresh_token"); n != 1 {
		t.Errorf("%d refresh grants for two requests after one expiry, want 1 (token endpoint asked for JSON %d times)", n, fake.jsonAsks)
	}
}

// TestKindOAuth2AllowGroups: an oauth2 provider's groups come from its
// user-info object (groups_claim; here GitHub's /user "type"), so a block
// with allow_groups provisions and decides by them, and no GitHub
// membership endpoint is read.
func TestKindOAuth2AllowGroups(t *testing.T) {
	fake := newFakeGitHub(t, octocat())
	fake.scope = "read:user"
	for _, tc := range []struct {
		allow string
		want  int
	}{{"Organization", http.StatusForbidden}, {"User", http.StatusOK}} {
		g := newHandler(t, "", func(g *Gatehouse) {
			g.ProviderConfig = ProviderConfig{Kind: "oauth2", ClientID: testClientID, ClientSecret: testClientSecret,
				AuthorizationEndpoint: fake.URL() + "/login/oauth/authorize", TokenEndpoint: fake.URL() + "/login/oauth/access_token",
				UserinfoEndpoint: fake.URL() + "/api/v3/user", Scopes: []string{"read:user"}, SubjectPath: "id", GroupsClaim: "type"}
			g.AllowGroups = []string{tc.allow}
		})
		a := kindApp(t, g)
		fake.update(func() { fake.callback = a.URL + "/oauth2/callback" })
		b, resp, body := walkPlainLogin(t, a, fake.URL(), "/")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("allow_groups %s: callback %d: %s", tc.allow, resp.StatusCode, body)
		}
		if resp, body := b.get(a.URL + "/"); resp.StatusCode != tc.want {
			t.Errorf("allow_groups %s: %d %q, want %d", tc.allow, resp.StatusCode, body, tc.want)
		}
	}
	if n := fake.count("/api/v3/user/orgs") + fake.count("/api/v3/user/teams") + fake.count("/api/v3/user/emails"); n != 0 {
		t.Errorf("the oauth2 kind read %d GitHub-specific endpoints", n)
	}
}
