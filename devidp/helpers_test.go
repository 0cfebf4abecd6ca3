package devidp_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Test fixtures. The "app" client has a registered redirect URI that carries
// a query; "loop" registers none, so loopback redirect URIs are accepted.
const (
	appID       = "app"
	appSecret   = "app secret:+/%" // exercises form-urlencoding in Basic auth
	appRedirect = "https://app.example.test/oauth2/callback?tenant=t1"
	appAudience = "api://demo"
	loopID      = "loop"
	loopSecret  = "loop-secret"
	loopRedir   = "http://127.0.0.1:8080/cb"
)

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one provider under httptest with a fake clock and a client that
// does not follow redirects.
type env struct {
	t      *testing.T
	p      *devidp.Provider
	srv    *httptest.Server
	clock  *fakeClock
	client *http.Client
	base   string // server URL; the issuer is base + path
}

func testConfig(issuer string, clock *fakeClock) devidp.Config {
	return devidp.Config{
		Issuer: issuer,
		Clients: []devidp.Client{
			{ID: appID, Secret: appSecret, RedirectURIs: []string{appRedirect}, Audience: appAudience},
			{ID: loopID, Secret: loopSecret},
		},
		Users: []devidp.User{
			{Subject: "alice", Email: "alice@example.com", Name: "Alice Example", PreferredUsername: "alice", Groups: []string{"admins", "staff"}},
			{Subject: "bob", Email: "bob@example.com", Groups: []string{"staff"}},
			{Subject: "mallory", Name: `<script>alert("x")</script>`},
		},
		Now: clock.Now,
	}
}

// newEnv starts a provider whose issuer is the server URL plus issuerPath.
// mutate, if not nil, adjusts the configuration before New.
func newEnv(t *testing.T, issuerPath string, mutate func(*devidp.Config)) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	clock := newFakeClock()
	cfg := testConfig(base+issuerPath, clock)
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := devidp.New(cfg)
	if err != nil {
		srv.Close()
		t.Fatalf("New: %v", err)
	}
	srv.Config.Handler = p
	srv.Start()
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &env{t: t, p: p, srv: srv, clock: clock, client: c, base: base}
}

// url returns the absolute URL of an endpoint path under the issuer.
func (e *env) url(path string) string {
	return strings.TrimSuffix(e.p.Issuer(), "/") + path
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) location(t *testing.T) *url.URL {
	t.Helper()
	loc := r.header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location header (status %d, body %q)", r.status, r.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("bad Location %q: %v", loc, err)
	}
	return u
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body is not JSON (status %d): %q", r.status, r.body)
	}
	return m
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("reading body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func (e *env) get(rawURL string, header http.Header) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return e.do(req)
}

func (e *env) postForm(rawURL string, form url.Values, header http.Header) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range header {
		req.Header[k] = vs
	}
	return e.do(req)
}

// pkce returns a verifier and its S256 challenge.
func pkce(seed string) (verifier, challenge string) {
	verifier = strings.Repeat(seed, 43/len(seed)+1)[:43]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authzParams returns a valid authorization request for the app client.
func authzParams(challenge string) url.Values {
	return url.Values{
		"client_id":             {appID},
		"redirect_uri":          {appRedirect},
		"response_type":         {"code"},
		"scope":                 {"openid email profile groups"},
		"state":                 {"st-123"},
		"nonce":                 {"n-456"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// loginForm GETs the login page and returns it with its hidden fields, as a
// browser would submit them.
func (e *env) loginForm(params url.Values) (response, url.Values) {
	e.t.Helper()
	page := e.get(e.url("/authorize?"+params.Encode()), nil)
	if page.status != http.StatusOK {
		e.t.Fatalf("GET authorize: status %d, body %q", page.status, page.body)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page.body, -1) {
		form.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return page, form
}

// login runs the browser part of the flow: GET the page, choose user,
// return the redirect back to the client.
func (e *env) login(params url.Values, user string) *url.URL {
	e.t.Helper()
	_, form := e.loginForm(params)
	form.Set("user", user)
	resp := e.postForm(e.url("/authorize"), form, nil)
	if resp.status != http.StatusFound {
		e.t.Fatalf("POST authorize: status %d, body %q", resp.status, resp.body)
	}
	return resp.location(e.t)
}

// code runs login and returns the issued code.
func (e *env) code(params url.Values, user string) string {
	e.t.Helper()
	loc := e.login(params, user)
	code := loc.Query().Get("code")
	if code == "" {
		e.t.Fatalf("no code in redirect %s", loc)
	}
	return code
}

func basicAuth(id, secret string) http.Header {
	cred := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}}
}

// token POSTs form to the token endpoint with basic auth for the app client.
func (e *env) token(form url.Values) response {
	e.t.Helper()
	return e.postForm(e.url("/token"), form, basicAuth(appID, appSecret))
}

func codeForm(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {appRedirect},
		"code_verifier": {verifier},
	}
}

// jwks fetches and parses the published key set.
func (e *env) jwks() jwk.Set {
	e.t.Helper()
	resp := e.get(e.url("/jwks"), nil)
	if resp.status != http.StatusOK {
		e.t.Fatalf("GET jwks: status %d", resp.status)
	}
	set, err := jwk.ParseString(resp.body)
	if err != nil {
		e.t.Fatalf("parsing JWKS: %v", err)
	}
	return set
}

// parseJWT verifies token against the published JWKS and validates iss, exp
// and aud with the fake clock.
func (e *env) parseJWT(token, aud string) jwt.Token {
	e.t.Helper()
	tok, err := jwt.ParseString(token,
		jwt.WithKeySet(e.jwks()),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(e.clock.Now)),
		jwt.WithIssuer(e.p.Issuer()),
		jwt.WithAudience(aud),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	)
	if err != nil {
		e.t.Fatalf("verifying JWT: %v", err)
	}
	return tok
}

// claims decodes a JWT payload without verifying it.
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	return decodeSegment(t, parts[1])
}

// header decodes a JWT's protected header without verifying it.
func header(t *testing.T, token string) map[string]any {
	t.Helper()
	return decodeSegment(t, strings.Split(token, ".")[0])
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decoding segment: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("segment is not JSON: %v", err)
	}
	return m
}

func atHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// wantOAuthError checks an RFC 6749 §5.2 error response.
func wantOAuthError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if got := r.json(t)["error"]; got != code {
		t.Fatalf("error = %v, want %q (body %q)", got, code, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", cc)
	}
}
