package flow

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

const (
	clientID     = "gatehouse-test"
	clientSecret = "s3cret with spaces & symbols"
	redirectURL  = "https://app.example/oauth2/callback"
)

var epoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// scripted is a provider whose every answer the test decides: tests that
// need a misbehaving provider sign their own tokens (STYLE §1).
type scripted struct {
	*httptest.Server
	key *jwttest.Key

	mu        sync.Mutex
	doc       map[string]any
	idToken   string
	token     http.HandlerFunc // replaces the token endpoint when set
	userinfo  http.HandlerFunc // replaces the userinfo endpoint when set
	jwksKeys  []*jwttest.Key   // published keys; nil: just key
	jwksDown  bool
	discovery atomic.Int64
	tokenHits atomic.Int64
	jwksHits  atomic.Int64
	lastForm  url.Values
	lastAuth  string
}

func newScripted(t *testing.T) *scripted {
	p := &scripted{key: jwttest.NewKey("k1", "RS256")}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discovery.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		json.NewEncoder(w).Encode(p.doc)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		keys, down := p.jwksKeys, p.jwksDown
		if keys == nil {
			keys = []*jwttest.Key{p.key}
		}
		p.mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(jwttest.JWKS(keys...))
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		p.tokenHits.Add(1)
		r.ParseForm()
		p.mu.Lock()
		p.lastForm, p.lastAuth = r.PostForm, r.Header.Get("Authorization")
		custom, idToken := p.token, p.idToken
		p.mu.Unlock()
		if custom != nil {
			custom(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": "access-token-1", "token_type": "Bearer", "expires_in": 300,
			"refresh_token": "refresh-token-1", "id_token": idToken,
		})
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		custom := p.userinfo
		p.mu.Unlock()
		if custom != nil {
			custom(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer access-token-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"sub":"user-1","email":"user1@example.com","groups":["staff"]}`))
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	p.doc = map[string]any{
		"issuer":                                p.URL,
		"authorization_endpoint":                p.URL + "/authorize",
		"token_endpoint":                        p.URL + "/token",
		"userinfo_endpoint":                     p.URL + "/userinfo",
		"jwks_uri":                              p.URL + "/jwks",
		"id_token_signing_alg_values_supported": []string{"RS256", "HS256", "none"},
		"authorization_response_iss_parameter_supported": true,
	}
	return p
}

func (p *scripted) set(f func(p *scripted)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *scripted) claims(nonce string) map[string]any {
	at := sha256.Sum256([]byte("access-token-1"))
	return map[string]any{
		"iss": p.URL, "sub": "user-1", "aud": clientID, "azp": clientID,
		"exp": epoch.Add(5 * time.Minute).Unix(), "iat": epoch.Unix(),
		"nonce": nonce, "at_hash": base64.RawURLEncoding.EncodeToString(at[:16]),
		"email": "user1@example.com", "preferred_username": "user.one",
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newClient returns a Client of a Provider for p; mod may change either's options.
func newClient(t *testing.T, p *scripted, mod ...func(*ProviderOptions, *ClientOptions)) *Client {
	t.Helper()
	now := (&testClock{t: epoch}).now
	popts := ProviderOptions{
		Issuer:     p.URL,
		Now:        now,
		HTTPClient: httpx.NewClient(nil, 2*time.Second, 0),
	}
	opts := ClientOptions{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Scopes:       []string{"openid", "email"},
		Now:          now,
	}
	for _, m := range mod {
		m(&popts, &opts)
	}
	prov, err := NewProvider(context.Background(), popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.Close)
	opts.Provider = prov
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// login starts a login and returns it with the nonce and PKCE challenge the
// authorization URL carried.
func login(t *testing.T, c *Client, p *scripted) (*session.Login, url.Values) {
	t.Helper()
	authURL, l, err := c.StartLogin(context.Background(), redirectURL, "/back?x=1")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	return l, u.Query()
}

func callback(l *session.Login, iss string) url.Values {
	return url.Values{"state": {l.State}, "code": {"code-1"}, "iss": {iss}}
}

func TestNewProviderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts ProviderOptions
	}{
		{"no issuer", ProviderOptions{}},
		{"relative issuer", ProviderOptions{Issuer: "/realms/x"}},
		{"issuer without scheme", ProviderOptions{Issuer: "login.example.com"}},
		{"ftp issuer", ProviderOptions{Issuer: "ftp://login.example.com"}},
		{"relative endpoint", ProviderOptions{Issuer: "https://i.example", Endpoints: Endpoints{Token: "/token"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewProvider(context.Background(), tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	prov, _ := NewProvider(context.Background(), ProviderOptions{Issuer: "https://i.example"})
	for _, tc := range []struct {
		name string
		opts ClientOptions
	}{
		{"no provider", ClientOptions{ClientID: "c", ClientSecret: "s"}},
		{"no client id", ClientOptions{Provider: prov, ClientSecret: "s"}},
		{"no secret", ClientOptions{Provider: prov, ClientID: "c"}},
		{"no openid scope", ClientOptions{Provider: prov, ClientID: "c", ClientSecret: "s", Scopes: []string{"email"}}},
		{"HS256 ID tokens", ClientOptions{Provider: prov, ClientID: "c", ClientSecret: "s", IDTokenAlgorithms: []string{"HS256"}}},
		{"bad client auth", ClientOptions{Provider: prov, ClientID: "c", ClientSecret: "s", ClientAuth: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewClient(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestStartLogin(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p)
	if p.discovery.Load() != 0 {
		t.Fatal("New made a network call")
	}
	l1, q := login(t, c, p)
	for key, want := range map[string]string{
		"response_type":         "code",
		"client_id":             clientID,
		"redirect_uri":          redirectURL,
		"scope":                 "openid email",
		"state":                 l1.State,
		"nonce":                 l1.Nonce,
		"code_challenge_method": "S256",
	} {
		if got := q.Get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	sum := sha256.Sum256([]byte(l1.Verifier))
	if q.Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Error("code_challenge is not S256 of the verifier")
	}
	if q.Has("code_verifier") || strings.Contains(q.Encode(), l1.Verifier) {
		t.Error("the verifier leaked into the authorization URL")
	}
	if l1.ReturnTo != "/back?x=1" || l1.Created != epoch.Unix() {
		t.Errorf("login: %+v", l1)
	}
	// CVE-2024-21495: state, nonce and verifier are unpredictable and long.
	l2, _ := login(t, c, p)
	if l1.State == l2.State || l1.Nonce == l2.Nonce || l1.Verifier == l2.Verifier || l1.State == l1.Nonce {
		t.Error("state, nonce or verifier repeated")
	}
	for _, v := range []string{l1.State, l1.Nonce} {
		if len(v) < 26 { // rand.Text: 26 base32 characters = 130 bits
			t.Errorf("%q is shorter than 128 bits", v)
		}
	}
	if len(l1.Verifier) < 43 {
		t.Errorf("verifier %q shorter than RFC 7636 allows", l1.Verifier)
	}
	if p.discovery.Load() != 1 {
		t.Errorf("%d discovery fetches, want 1", p.discovery.Load())
	}
}

func TestFinishLoginHappyPath(t *testing.T) {
	for _, auth := range []ClientAuth{AuthBasic, AuthPost} {
		p := newScripted(t)
		c := newClient(t, p, func(_ *ProviderOptions, o *ClientOptions) { o.ClientAuth = auth })
		l, q := login(t, c, p)
		p.set(func(p *scripted) { p.idToken = p.key.Sign(p.claims(q.Get("nonce")), nil) })
		res, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
		if err != nil {
			t.Fatalf("auth %d: %v", auth, err)
		}
		if res.IDToken.Subject != "user-1" || res.Tokens.AccessToken != "access-token-1" || res.Tokens.RefreshToken != "refresh-token-1" {
			t.Fatalf("result: %+v", res)
		}
		// Userinfo completes what the ID token lacks, never overrides it.
		if res.Claims["email"] != "user1@example.com" || res.Claims["preferred_username"] != "user.one" {
			t.Fatalf("claims: %v", res.Claims)
		}
		if _, ok := res.Claims["groups"].([]any); !ok {
			t.Fatalf("userinfo groups not merged: %v", res.Claims)
		}
		// The exchange request: code, redirect_uri, verifier, client auth.
		form, authz := p.lastForm, p.lastAuth
		if form.Get("grant_type") != "authorization_code" || form.Get("code") != "code-1" ||
			form.Get("redirect_uri") != redirectURL || form.Get("code_verifier") != l.Verifier {
			t.Fatalf("token request form: %v", form)
		}
		switch auth {
		case AuthBasic:
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(clientSecret)))
			if authz != want || form.Has("client_secret") {
				t.Fatalf("basic auth: header %q, form %v", authz, form)
			}
		case AuthPost:
			if authz != "" || form.Get("client_id") != clientID || form.Get("client_secret") != clientSecret {
				t.Fatalf("post auth: header %q, form %v", authz, form)
			}
		}
	}
}

// TestFinishLoginIDTokenRejects: each case breaks one thing in the ID token
// of an otherwise good callback.
func TestFinishLoginIDTokenRejects(t *testing.T) {
	other := jwttest.NewKey("k1", "RS256")
	unknown := jwttest.NewKey("k-unknown", "RS256")
	for _, tc := range []struct {
		name  string
		token func(p *scripted, c map[string]any) string
	}{
		{"bad signature", func(p *scripted, c map[string]any) string {
			good := strings.Split(p.key.Sign(c, nil), ".")
			return good[0] + "." + good[1] + "." + strings.Split(other.Sign(c, nil), ".")[2]
		}},
		{"alg none", func(p *scripted, c map[string]any) string {
			return jwttest.Raw(map[string]any{"alg": "none"}, c, func([]byte) []byte { return []byte("x") })
		}},
		{"HS256 signed with the public key", func(p *scripted, c map[string]any) string {
			der, _ := x509.MarshalPKIXPublicKey(p.key.Private.Public())
			pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return jwttest.Raw(map[string]any{"alg": "HS256", "kid": "k1"}, c, jwttest.HMAC(pemKey))
		}},
		{"unknown kid", func(p *scripted, c map[string]any) string { return unknown.Sign(c, nil) }},
		{"wrong iss", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iss", "https://evil.example"), nil)
		}},
		{"wrong aud", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "aud", "other-client"), nil) }},
		{"untrusted extra aud (no azp)", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(set(c, "aud", []string{clientID, "other-client"}), "azp", nil), nil)
		}},
		{"several aud, no azp", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(set(c, "aud", []string{clientID, clientID}), "azp", nil), nil)
		}},
		{"azp mismatch", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "azp", "other-client"), nil) }},
		{"missing exp", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "exp", nil), nil) }},
		{"expired", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "exp", epoch.Add(-2*time.Minute).Unix()), nil)
		}},
		{"iat in the future", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iat", epoch.Add(2*time.Minute).Unix()), nil)
		}},
		{"missing iat", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "iat", nil), nil) }},
		{"missing sub", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "sub", nil), nil) }},
		{"bad nonce", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "nonce", "attacker-nonce"), nil) }},
		{"missing nonce", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "nonce", nil), nil) }},
		{"at_hash mismatch", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "at_hash", "AAAAAAAAAAAAAAAAAAAAAA"), nil)
		}},
		{"garbage", func(p *scripted, c map[string]any) string { return "not-a-jwt" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p)
			l, q := login(t, c, p)
			p.set(func(p *scripted) { p.idToken = tc.token(p, p.claims(q.Get("nonce"))) })
			res, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
			if !errors.Is(err, ErrIDToken) || res != nil {
				t.Fatalf("got %v, %v; want ErrIDToken", res, err)
			}
		})
	}
}

func set(c map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for key, val := range c {
		out[key] = val
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestFinishLoginCallbackRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query func(l *session.Login, iss string) url.Values
		login func(l *session.Login) *session.Login
		want  error
	}{
		{"state mismatch", func(l *session.Login, iss string) url.Values {
			return url.Values{"state": {"forged-state"}, "code": {"c"}, "iss": {iss}}
		}, nil, ErrStateMismatch},
		{"state differs by one byte", func(l *session.Login, iss string) url.Values {
			return url.Values{"state": {l.State[:len(l.State)-1] + "X"}, "code": {"c"}, "iss": {iss}}
		}, nil, ErrStateMismatch},
		{"no state", func(l *session.Login, iss string) url.Values { return url.Values{"code": {"c"}, "iss": {iss}} }, nil, ErrStateMismatch},
		{"no login cookie", callback, func(*session.Login) *session.Login { return nil }, ErrStateMismatch},
		{"no code", func(l *session.Login, iss string) url.Values { return url.Values{"state": {l.State}, "iss": {iss}} }, nil, ErrMissingCode},
		{"huge code", func(l *session.Login, iss string) url.Values {
			return url.Values{"state": {l.State}, "code": {strings.Repeat("c", 5000)}, "iss": {iss}}
		}, nil, ErrMissingCode},
		{"wrong iss parameter (mix-up)", func(l *session.Login, iss string) url.Values {
			return url.Values{"state": {l.State}, "code": {"c"}, "iss": {"https://evil.example"}}
		}, nil, ErrIssuerMismatch},
		{"missing iss parameter the provider promised", func(l *session.Login, iss string) url.Values {
			return url.Values{"state": {l.State}, "code": {"c"}}
		}, nil, ErrIssuerMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p)
			l, q := login(t, c, p)
			p.set(func(p *scripted) { p.idToken = p.key.Sign(p.claims(q.Get("nonce")), nil) })
			use := l
			if tc.login != nil {
				use = tc.login(l)
			}
			res, err := c.FinishLogin(context.Background(), redirectURL, tc.query(l, p.URL), use)
			if !errors.Is(err, tc.want) || res != nil {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
			if p.tokenHits.Load() != 0 {
				t.Fatal("the code was exchanged for a rejected callback")
			}
		})
	}
}

func TestFinishLoginProviderError(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p)
	l, _ := login(t, c, p)
	for _, tc := range []struct {
		code, desc, wantCode, wantDesc string
	}{
		{"access_denied", "The user cancelled", "access_denied", "The user cancelled"},
		{"login_required", "", "login_required", ""},
		{"<script>alert(1)</script>", "x", "invalid_error", "x"},
		{"access_denied", "line\nbreak", "access_denied", ""},
		{"", "", "invalid_error", ""},
	} {
		q := url.Values{"error": {tc.code}, "error_description": {tc.desc}, "state": {l.State}, "iss": {p.URL}}
		_, err := c.FinishLogin(context.Background(), redirectURL, q, l)
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.Code != tc.wantCode || pe.Description != tc.wantDesc {
			t.Fatalf("error=%q: got %#v", tc.code, err)
		}
	}
	// RFC 9207 §2.4 (review SA2-21): an error response naming another
	// issuer is a mix-up, not that provider's error; so is one without
	// iss from a provider that sends it. A forged error needs the state.
	for _, q := range []url.Values{
		{"error": {"access_denied"}, "state": {l.State}, "iss": {"https://evil.example"}},
		{"error": {"access_denied"}, "state": {l.State}},
	} {
		if _, err := c.FinishLogin(context.Background(), redirectURL, q, l); !errors.Is(err, ErrIssuerMismatch) {
			t.Fatalf("%v: got %v, want ErrIssuerMismatch", q, err)
		}
	}
	if _, err := c.FinishLogin(context.Background(), redirectURL, url.Values{"error": {"access_denied"}, "iss": {p.URL}}, l); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("an error response without state: %v", err)
	}
	if p.tokenHits.Load() != 0 {
		t.Fatal("exchanged a code after a provider error")
	}
}

// TestReplayedCallback: the login cookie is consumed by the first
// callback, so replaying the same callback URL finds no login.
func TestReplayedCallback(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p)
	store, err := session.New(session.Options{Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	l, q := login(t, c, p)
	p.set(func(p *scripted) { p.idToken = p.key.Sign(p.claims(q.Get("nonce")), nil) })
	w := httptest.NewRecorder()
	if err := store.SaveLogin(w, httptest.NewRequest("GET", "/", nil), l); err != nil {
		t.Fatal(err)
	}
	jar := w.Result().Cookies()
	cb := callback(l, p.URL)

	first := httptest.NewRequest("GET", "/oauth2/callback?"+cb.Encode(), nil)
	for _, ck := range jar {
		first.AddCookie(ck)
	}
	w1 := httptest.NewRecorder()
	taken, _ := store.TakeLogin(w1, first, cb.Get("state"))
	if _, err := c.FinishLogin(context.Background(), redirectURL, cb, taken); err != nil {
		t.Fatalf("first callback: %v", err)
	}
	// The browser applies the deletion; the replay carries no login cookie.
	replay := httptest.NewRequest("GET", "/oauth2/callback?"+cb.Encode(), nil)
	for _, ck := range jar {
		deleted := false
		for _, d := range w1.Result().Cookies() {
			deleted = deleted || d.Name == ck.Name && d.MaxAge < 0
		}
		if !deleted {
			replay.AddCookie(ck)
		}
	}
	taken2, _ := store.TakeLogin(httptest.NewRecorder(), replay, cb.Get("state"))
	if _, err := c.FinishLogin(context.Background(), redirectURL, cb, taken2); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("replayed callback: %v", err)
	}
	if n := p.tokenHits.Load(); n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
}

func TestFinishLoginTokenEndpointTrouble(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		check   func(error) bool
	}{
		{"invalid_grant", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"code reused"}`))
		}, func(err error) bool {
			var ee *ExchangeError
			return errors.As(err, &ee) && ee.Code == "invalid_grant" && ee.Status == 400
		}},
		{"error with status 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"error":"invalid_client"}`))
		}, func(err error) bool { var ee *ExchangeError; return errors.As(err, &ee) && ee.Code == "invalid_client" }},
		{"server error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) },
			func(err error) bool { return errors.Is(err, ErrProviderUnavailable) }},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}, func(err error) bool { return errors.Is(err, ErrProviderUnavailable) }},
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`))
		}, func(err error) bool {
			return errors.Is(err, ErrTokenResponse) || errors.Is(err, ErrProviderUnavailable)
		}},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`<html>`))
		}, func(err error) bool { return errors.Is(err, ErrTokenResponse) }},
		{"no access token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"token_type":"Bearer","id_token":"x"}`))
		}, func(err error) bool { return errors.Is(err, ErrTokenResponse) }},
		{"no ID token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"a","token_type":"Bearer"}`))
		}, func(err error) bool { return errors.Is(err, ErrTokenResponse) }},
		{"token type not Bearer", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"a","token_type":"MAC","id_token":"x"}`))
		}, func(err error) bool { return errors.Is(err, ErrTokenResponse) }},
		// Review SA2-22: RFC 6749 §5.1 requires token_type (x/oauth2
		// reports Bearer when it is missing).
		{"no token type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"a","id_token":"x"}`))
		}, func(err error) bool { return errors.Is(err, ErrTokenResponse) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p, func(o *ProviderOptions, _ *ClientOptions) { o.HTTPClient = httpx.NewClient(nil, 2*time.Second, 0) })
			l, _ := login(t, c, p)
			p.set(func(p *scripted) { p.token = tc.handler })
			res, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
			if res != nil || !tc.check(err) {
				t.Fatalf("got %v, %v", res, err)
			}
			if strings.Contains(err.Error(), clientSecret) {
				t.Fatal("client secret in the error")
			}
		})
	}
}

func TestFinishLoginUserinfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"sub mismatch", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"someone-else","email":"x@example.com"}`))
		}, ErrUserinfo},
		{"no sub", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"email":"x@example.com"}`))
		}, ErrUserinfo},
		{"sub of wrong type", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"sub":1}`)) }, ErrUserinfo},
		{"401", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) }, ErrUserinfo},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`[1,2]`)) }, ErrUserinfo},
		{"signed JWT", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/jwt")
			w.Write([]byte(`eyJ.x.y`))
		}, ErrUserinfo},
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"sub":"user-1","x":"` + strings.Repeat("a", 2<<20) + `"}`))
		}, ErrProviderUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p)
			l, q := login(t, c, p)
			p.set(func(p *scripted) {
				p.idToken = p.key.Sign(p.claims(q.Get("nonce")), nil)
				p.userinfo = tc.handler
			})
			res, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
			if !errors.Is(err, tc.want) || res != nil {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
		})
	}
}

func TestDiscoveryRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(doc map[string]any, url string)
	}{
		{"issuer mismatch", func(d map[string]any, u string) { d["issuer"] = "https://evil.example" }},
		{"issuer with extra slash", func(d map[string]any, u string) { d["issuer"] = u + "/" }},
		{"no token endpoint", func(d map[string]any, u string) { delete(d, "token_endpoint") }},
		{"no jwks_uri", func(d map[string]any, u string) { delete(d, "jwks_uri") }},
		{"relative endpoint", func(d map[string]any, u string) { d["authorization_endpoint"] = "/authorize" }},
		{"javascript endpoint", func(d map[string]any, u string) { d["authorization_endpoint"] = "javascript:alert(1)" }},
		{"endpoint with user info", func(d map[string]any, u string) { d["token_endpoint"] = "http://user:pw@evil.example/token" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			p.set(func(p *scripted) { tc.mod(p.doc, p.URL) })
			c := newClient(t, p)
			if _, _, err := c.StartLogin(context.Background(), redirectURL, "/"); !errors.Is(err, ErrProviderUnavailable) {
				t.Fatalf("got %v, want ErrProviderUnavailable", err)
			}
		})
	}
	if err := checkEndpoints("https://idp.example", Endpoints{Authorization: "https://idp.example/a", Token: "http://idp.example/t", JWKS: "https://idp.example/j"}, true); err == nil {
		t.Fatal("plain-HTTP token endpoint accepted under an https issuer")
	}
}

func TestDiscoveryBackoff(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	p := newScripted(t)
	inner := p.Config.Handler
	p.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			p.discovery.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	})
	clock := &testClock{t: epoch}
	c := newClient(t, p, func(o *ProviderOptions, _ *ClientOptions) { o.Now = clock.now })
	for range 20 {
		if _, err := c.p.Metadata(context.Background()); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("provider down: %v", err)
		}
	}
	if n := p.discovery.Load(); n != 1 {
		t.Fatalf("%d discovery attempts within the backoff, want 1", n)
	}
	clock.advance(time.Second)
	c.p.Metadata(context.Background())
	if n := p.discovery.Load(); n != 2 {
		t.Fatalf("%d attempts after 1s, want 2", n)
	}
	clock.advance(time.Second) // the second failure backs off 2s
	c.p.Metadata(context.Background())
	if n := p.discovery.Load(); n != 2 {
		t.Fatalf("%d attempts 1s after the second failure, want 2", n)
	}
	down.Store(false)
	clock.advance(time.Second)
	m, err := c.p.Metadata(context.Background())
	if err != nil || m.Endpoints.Token != p.URL+"/token" {
		t.Fatalf("provider back: %v %v", m, err)
	}
	if backoff(1) != time.Second || backoff(2) != 2*time.Second || backoff(30) != time.Minute {
		t.Fatal("backoff schedule")
	}
}

func TestExplicitEndpointsSkipDiscovery(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p, func(o *ProviderOptions, _ *ClientOptions) {
		o.Endpoints = Endpoints{Authorization: p.URL + "/authorize", Token: p.URL + "/token", JWKS: p.URL + "/jwks"}
	})
	l, q := login(t, c, p)
	p.set(func(p *scripted) { p.idToken = p.key.Sign(p.claims(q.Get("nonce")), nil) })
	if _, err := c.FinishLogin(context.Background(), redirectURL, url.Values{"state": {l.State}, "code": {"c"}}, l); err != nil {
		t.Fatal(err)
	}
	if p.discovery.Load() != 0 {
		t.Fatal("discovery fetched although all endpoints were given")
	}
}

func TestDiscoveredAlgorithmsAreIntersected(t *testing.T) {
	// The provider advertises HS256 and none; only RS256 may be used.
	p := newScripted(t)
	c := newClient(t, p)
	l, q := login(t, c, p)
	es := jwttest.NewKey("k1", "ES256")
	p.set(func(p *scripted) { p.key = es; p.idToken = es.Sign(p.claims(q.Get("nonce")), nil) })
	_, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
	if !errors.Is(err, ErrIDToken) || !errors.Is(err, verify.ErrAlgorithm) {
		t.Fatalf("ES256 ID token although the provider advertised RS256 only: %v", err)
	}
}

func TestPrompt(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p, func(_ *ProviderOptions, o *ClientOptions) { o.Prompt = "consent" })
	_, q := login(t, c, p)
	if q.Get("prompt") != "consent" {
		t.Fatalf("prompt = %q", q.Get("prompt"))
	}
	_, q = login(t, newClient(t, p), p)
	if q.Has("prompt") {
		t.Fatal("prompt sent although not configured")
	}
	for _, bad := range []string{"always", "none login", "consent,login"} {
		if CheckPrompt(bad) == nil {
			t.Errorf("prompt %q accepted", bad)
		}
	}
	if CheckPrompt("login consent") != nil || CheckPrompt("none") != nil {
		t.Error("valid prompt refused")
	}
}

// TestExtraAudienceWithAzp (issue 10, defect 5): another audience next to
// ours is refused even when azp says the token was issued to us (Core
// §3.1.3.7 item 3: audiences the client does not trust) — it used to be
// accepted — unless trusted_audiences names it (Keycloak's audience
// mappers).
func TestExtraAudienceWithAzp(t *testing.T) {
	p := newScripted(t)
	for _, tc := range []struct {
		trusted []string
		ok      bool
	}{
		{nil, false},
		{[]string{"other"}, false},
		{[]string{"account"}, true},
	} {
		c := newClient(t, p, func(_ *ProviderOptions, o *ClientOptions) { o.TrustedAudiences = tc.trusted })
		l, q := login(t, c, p)
		p.set(func(p *scripted) {
			p.idToken = p.key.Sign(set(p.claims(q.Get("nonce")), "aud", []string{clientID, "account"}), nil)
		})
		_, err := c.FinishLogin(context.Background(), redirectURL, callback(l, p.URL), l)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrIDToken) {
			t.Fatalf("extra audience with azp = client, trusted %v: %v", tc.trusted, err)
		}
	}
}

// TestAuthURLMatchesOAuth2: the hand-built authorization request carries
// exactly the parameters x/oauth2's AuthCodeURL would, also behind an
// endpoint with a query of its own, and escapes the redirect URI.
func TestAuthURLMatchesOAuth2(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p, func(_ *ProviderOptions, o *ClientOptions) {
		o.Prompt = "consent select_account"
		o.Scopes = []string{"openid", "email", "offline_access"}
	})
	login := &session.Login{State: "STATE", Nonce: "NONCE", Verifier: oauth2.GenerateVerifier()}
	for _, endpoint := range []string{"https://op.example/authorize", "https://op.example/authorize?p=B2C_1_signin&x=%20y"} {
		redirect := "https://app.example/oauth2/callback?a=b c&d=é"
		got, err := url.Parse(c.authURL(endpoint, redirect, login))
		if err != nil {
			t.Fatal(err)
		}
		cfg := &oauth2.Config{ClientID: c.opts.ClientID, RedirectURL: redirect, Scopes: c.opts.Scopes,
			Endpoint: oauth2.Endpoint{AuthURL: endpoint}}
		want, _ := url.Parse(cfg.AuthCodeURL(login.State, oauth2.S256ChallengeOption(login.Verifier),
			oauth2.SetAuthURLParam("nonce", login.Nonce), oauth2.SetAuthURLParam("prompt", c.opts.Prompt)))
		if got.Scheme+got.Host+got.Path != want.Scheme+want.Host+want.Path || !reflect.DeepEqual(got.Query(), want.Query()) {
			t.Fatalf("authorization request\n got %s\nwant %s", got, want)
		}
	}
}
