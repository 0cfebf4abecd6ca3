package flow

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
)

// fakeUserAPI answers who a token is, or err.
type fakeUserAPI struct {
	id    identity.Identity
	err   error
	calls atomic.Int32
	token string // the last token asked about
}

func (f *fakeUserAPI) Identity(_ context.Context, token string) (identity.Identity, error) {
	f.calls.Add(1)
	f.token = token
	return f.id, f.err
}

// plainProvider is a GitHub-like token endpoint: it answers the code
// "good" and any refresh token with a lower-case "bearer" token (as
// GitHub does) and counts its requests.
func plainProvider(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = r.ParseForm()
		if r.PostForm.Get("code_verifier") == "" && r.PostForm.Get("grant_type") == "authorization_code" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		if r.PostForm.Get("grant_type") == "authorization_code" && r.PostForm.Get("code") != "good" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "gho_" + r.PostForm.Get("grant_type"), "token_type": "bearer", "scope": "user:email",
			"refresh_token": "ghr_next", "expires_in": 28800,
		})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func plainClient(t *testing.T, tokenURL string, api UserAPI) *Client {
	t.Helper()
	p, err := NewProvider(context.Background(), ProviderOptions{
		Issuer: "http://github.test", Plain: true,
		Endpoints: Endpoints{Authorization: "http://github.test/login/oauth/authorize", Token: tokenURL},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := NewClient(ClientOptions{Provider: p, ClientID: "Iv1.abc", ClientSecret: "s3cret", ClientAuth: AuthPost,
		Scopes: []string{"user:email", "read:org"}, UserAPI: api})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPlainOAuth2Login: a login at a plain OAuth 2.0 provider sends no
// nonce, asks the given scopes without openid, keeps PKCE and state,
// takes the identity from the user API with the new token, and needs no
// discovery or keys; the session has no ID token.
func TestPlainOAuth2Login(t *testing.T) {
	srv, tokenCalls := plainProvider(t)
	api := &fakeUserAPI{id: identity.Identity{Subject: "583231", User: "583231", PreferredUsername: "octocat"}}
	c := plainClient(t, srv.URL, api)
	authURL, login, err := c.StartLogin(context.Background(), "https://app.example/oauth2/callback/github", "/")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Has("nonce") || q.Get("scope") != "user:email read:org" || q.Get("code_challenge_method") != "S256" || q.Get("state") != login.State {
		t.Fatalf("authorization request %s", authURL)
	}

	res, err := c.FinishLogin(context.Background(), "https://app.example/oauth2/callback/github", url.Values{"state": {login.State}, "code": {"good"}}, login)
	if err != nil {
		t.Fatal(err)
	}
	if api.token != "gho_authorization_code" || res.Identity == nil || res.Identity.PreferredUsername != "octocat" || res.IDToken != nil {
		t.Fatalf("result %+v (user API asked about %q)", res, api.token)
	}
	s, err := NewSession(res, c.opts.Now())
	if err != nil || s.Subject != "583231" || s.IDToken != "" || s.RefreshToken != "ghr_next" || s.AccessExpiry == 0 {
		t.Fatalf("session %+v, %v", s, err)
	}

	// A code the provider refuses, and an iss that is not the provider's.
	if _, err := c.FinishLogin(context.Background(), "https://app.example/cb", url.Values{"state": {login.State}, "code": {"bad"}}, login); err == nil {
		t.Fatal("a refused code signed in")
	}
	if _, err := c.FinishLogin(context.Background(), "https://app.example/cb", url.Values{"state": {login.State}, "code": {"good"}, "iss": {"https://evil.example"}}, login); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("another iss: %v", err)
	}
	if n := tokenCalls.Load(); n != 2 {
		t.Fatalf("token endpoint called %d times, want 2 (the good and the bad code)", n)
	}
}

// TestPlainOAuth2Refusals: the user API's refusal fails the login; its
// unavailability fails a login but keeps a session's identity at a
// refresh; a refresh naming another user ends the session.
func TestPlainOAuth2Refusals(t *testing.T) {
	srv, _ := plainProvider(t)
	notMember := errors.New("not a member of an allowed organization")
	api := &fakeUserAPI{err: notMember}
	c := plainClient(t, srv.URL, api)
	_, login, err := c.StartLogin(context.Background(), "https://app.example/cb", "/")
	if err != nil {
		t.Fatal(err)
	}
	finish := func() error {
		_, err := c.FinishLogin(context.Background(), "https://app.example/cb", url.Values{"state": {login.State}, "code": {"good"}}, login)
		return err
	}
	if err := finish(); !errors.Is(err, ErrUserAPI) || !errors.Is(err, notMember) {
		t.Fatalf("a refused user: %v", err)
	}
	api.err = ErrProviderUnavailable
	if err := finish(); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("user API down at login: %v", err)
	}

	sess := &session.Session{Identity: identity.Identity{Subject: "583231"}, RefreshToken: "ghr_1"}
	res, err := c.Refresh(context.Background(), sess)
	if err != nil || res.Identity != nil || res.Tokens.AccessToken != "gho_refresh_token" {
		t.Fatalf("refresh while the user API is down: %+v %v", res, err)
	}
	api.err = notMember
	if _, err := c.Refresh(context.Background(), sess); !errors.Is(err, notMember) {
		t.Fatalf("refresh of a user no longer allowed: %v", err)
	}
	api.err, api.id = nil, identity.Identity{Subject: "999"}
	if _, err := c.Refresh(context.Background(), sess); !errors.Is(err, ErrUserinfo) {
		t.Fatalf("refresh naming another user: %v", err)
	}
	if _, err := NewSession(&Result{Identity: &identity.Identity{Subject: "x"}}, c.opts.Now()); !errors.Is(err, identity.ErrIncomplete) {
		t.Fatalf("an OpenID result without an ID token: %v", err)
	}
}

// TestAuthParamsRefused: AuthParams may not set what the flow sets
// itself, nor give a parameter twice; MaxAge under a second is refused.
func TestAuthParamsRefused(t *testing.T) {
	p, err := NewProvider(context.Background(), ProviderOptions{Issuer: "https://idp.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, params := range []url.Values{{"state": {"x"}}, {"redirect_uri": {"https://evil.example"}}, {"nonce": {"n"}},
		{"request_uri": {"urn:x"}}, {"hd": {"a", "b"}}, {"": {"x"}}} {
		_, err := NewClient(ClientOptions{Provider: p, ClientID: "c", ClientSecret: "s", AuthParams: params})
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != "AuthParams" {
			t.Errorf("AuthParams %v: %v", params, err)
		}
	}
	if _, err := NewClient(ClientOptions{Provider: p, ClientID: "c", ClientSecret: "s", MaxAge: 500e6}); err == nil {
		t.Error("MaxAge 500ms accepted")
	}
}
