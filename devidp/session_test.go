package devidp_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// tokensFor runs a full login of user at the app client and returns the
// token response body.
func (e *env) tokensFor(user, scope string) map[string]any {
	e.t.Helper()
	verifier, challenge := pkce("tokens")
	params := authzParams(challenge)
	params.Set("scope", scope)
	r := e.token(codeForm(e.code(params, user), verifier))
	if r.status != http.StatusOK {
		e.t.Fatalf("token: %d %q", r.status, r.body)
	}
	return r.json(e.t)
}

func TestUserinfoRejectsBadTokens(t *testing.T) {
	e := newEnv(t, "", nil)
	other := newEnv(t, "", nil)
	tokens := e.tokensFor("alice", "openid")
	at, _ := tokens["access_token"].(string)
	idt, _ := tokens["id_token"].(string)
	expired, err := e.p.MintAccessToken("alice", []string{appID}, []string{"openid"}, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.p.MintAccessToken("alice", []string{appID}, nil, 0)
	stranger, _ := e.p.MintAccessToken("eve", []string{appID}, nil, 0)
	parts := strings.Split(at, ".")
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"` + header(t, at)["kid"].(string) + `"}`))
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + e.p.Issuer() + `","sub":"bob","exp":9999999999}`))

	tests := []struct {
		name      string
		authz     string
		wantError bool // error="invalid_token" in WWW-Authenticate
	}{
		{"no token", "", false},
		{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), false},
		{"garbage", "Bearer not-a-jwt", true},
		{"empty bearer", "Bearer ", false}, // the header value is trimmed to "Bearer": no credentials
		{"ID token as access token", "Bearer " + idt, true},
		{"expired", "Bearer " + expired, true},
		{"signed by another provider", "Bearer " + foreign, true},
		{"unknown subject", "Bearer " + stranger, true},
		{"tampered payload", "Bearer " + parts[0] + "." + tamperedPayload + "." + parts[2], true},
		{"alg none", "Bearer " + noneHeader + "." + parts[1] + ".", true},
		{"huge", "Bearer " + strings.Repeat("a.", 20000) + "a", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.authz != "" {
				hdr.Set("Authorization", tc.authz)
			}
			r := e.get(e.url("/userinfo"), hdr)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401 (body %q)", r.status, r.body)
			}
			wa := r.header.Get("WWW-Authenticate")
			want := "Bearer"
			if tc.wantError {
				want = `Bearer error="invalid_token"`
			}
			if wa != want {
				t.Fatalf("WWW-Authenticate = %q", wa)
			}
		})
	}

	t.Run("valid, scheme case-insensitive", func(t *testing.T) {
		r := e.get(e.url("/userinfo"), http.Header{"Authorization": {"bearer " + at}})
		if r.status != http.StatusOK || r.json(t)["sub"] != "alice" {
			t.Fatalf("status %d body %q", r.status, r.body)
		}
	})
	t.Run("user without email", func(t *testing.T) {
		tok, _ := e.p.MintAccessToken("mallory", []string{appID}, nil, 0)
		u := e.get(e.url("/userinfo"), http.Header{"Authorization": {"Bearer " + tok}}).json(t)
		if _, ok := u["email_verified"]; ok || u["sub"] != "mallory" || len(strList(u["groups"])) != 0 || u["groups"] == nil {
			t.Fatalf("userinfo = %v", u)
		}
	})
}

func TestEndSession(t *testing.T) {
	e := newEnv(t, "", nil)
	other := newEnv(t, "", nil)
	idt, _ := e.tokensFor("alice", "openid")["id_token"].(string)
	foreignID, _ := other.tokensFor("alice", "openid")["id_token"].(string)
	at, _ := e.p.MintAccessToken("alice", []string{appID}, nil, 0)

	tests := []struct {
		name     string
		params   url.Values
		status   int
		location string // expected redirect, "" for a page
	}{
		{"bad id_token_hint", url.Values{"id_token_hint": {"garbage"}}, 400, ""},
		{"foreign id_token_hint", url.Values{"id_token_hint": {foreignID}}, 400, ""},
		{"access token as hint", url.Values{"id_token_hint": {at}}, 400, ""},
		{"hint and client_id disagree", url.Values{"id_token_hint": {idt}, "client_id": {loopID}}, 400, ""},
		{"duplicate state", url.Values{"client_id": {appID}, "state": {"a", "b"}}, 400, ""},
		{"unregistered post_logout_redirect_uri", url.Values{"client_id": {appID}, "post_logout_redirect_uri": {"https://evil.example/"}, "state": {"s"}}, 200, ""},
		{"post_logout_redirect_uri without client", url.Values{"post_logout_redirect_uri": {appRedirect}}, 200, ""},
		{"unknown client", url.Values{"client_id": {"nope"}, "post_logout_redirect_uri": {appRedirect}}, 200, ""},
		{"loop client, public host", url.Values{"client_id": {loopID}, "post_logout_redirect_uri": {"https://evil.example/"}}, 200, ""},
		{"no parameters", url.Values{}, 200, ""},
		{"hint only", url.Values{"id_token_hint": {idt}}, 200, ""},
		{"client_id and registered URI", url.Values{"client_id": {appID}, "post_logout_redirect_uri": {appRedirect}, "state": {"s1"}},
			302, "https://app.example.test/oauth2/callback?state=s1&tenant=t1"},
		{"hint and registered URI", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {appRedirect}},
			302, "https://app.example.test/oauth2/callback?tenant=t1"},
		{"loop client, loopback URI", url.Values{"client_id": {loopID}, "post_logout_redirect_uri": {"http://localhost:8080/bye"}, "state": {"x y"}},
			302, "http://localhost:8080/bye?state=x+y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []response{
				e.get(e.url("/end_session?"+tc.params.Encode()), nil),
				e.postForm(e.url("/end_session"), tc.params, nil),
			} {
				if r.status != tc.status || r.header.Get("Location") != tc.location {
					t.Fatalf("status %d Location %q, want %d %q", r.status, r.header.Get("Location"), tc.status, tc.location)
				}
				if tc.status == 200 && !strings.Contains(r.body, "You are signed out of devidp") {
					t.Fatalf("signed-out page missing: %q", r.body)
				}
				if tc.location == "" && !strings.Contains(r.body, devidp.Banner) {
					t.Fatalf("page lacks the banner: %q", r.body)
				}
			}
		})
	}

	t.Run("expired hint is accepted", func(t *testing.T) {
		e.clock.Advance(48 * time.Hour)
		r := e.get(e.url("/end_session?"+url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {appRedirect}}.Encode()), nil)
		if r.status != http.StatusFound {
			t.Fatalf("status %d", r.status)
		}
	})
	t.Run("revokes the login's refresh tokens", func(t *testing.T) {
		e := newEnv(t, "", nil)
		a := e.tokensFor("alice", "openid offline_access")
		b := e.tokensFor("bob", "openid offline_access")
		e.get(e.url("/end_session?id_token_hint="+url.QueryEscape(a["id_token"].(string))), nil)
		wantOAuthError(t, e.token(refreshForm(a["refresh_token"].(string))), 400, "invalid_grant")
		if r := e.token(refreshForm(b["refresh_token"].(string))); r.status != http.StatusOK {
			t.Fatalf("other login's refresh: %d %q", r.status, r.body)
		}
	})
}

func TestRotateKey(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, "", func(c *devidp.Config) { c.Algorithm = alg })
			bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
			kids := func() []string {
				var out []string
				set := e.jwks()
				for i := range set.Len() {
					k, _ := set.Key(i)
					out = append(out, k.KeyID())
				}
				return out
			}

			tok1, _ := e.p.MintAccessToken("alice", []string{appID}, nil, 0)
			kid1 := header(t, tok1)["kid"]
			if err := e.p.RotateKey(); err != nil {
				t.Fatal(err)
			}
			tok2, _ := e.p.MintAccessToken("alice", []string{appID}, nil, 0)
			kid2 := header(t, tok2)["kid"]
			if kid1 == kid2 {
				t.Fatalf("new tokens still use the old key")
			}
			if got := kids(); len(got) != 2 || got[0] != kid2 || got[1] != kid1 {
				t.Fatalf("JWKS kids = %v, want [%v %v]", got, kid2, kid1)
			}
			e.parseJWT(tok1, appID)
			e.parseJWT(tok2, appID)
			if r := e.get(e.url("/userinfo"), bearer(tok1)); r.status != http.StatusOK {
				t.Fatalf("userinfo with previous key: %d", r.status)
			}

			if err := e.p.RotateKey(); err != nil {
				t.Fatal(err)
			}
			if got := kids(); len(got) != 2 || got[1] != kid2 {
				t.Fatalf("JWKS kids = %v, want the current key and %v", got, kid2)
			}
			if _, err := jwt.ParseString(tok1, jwt.WithKeySet(e.jwks())); err == nil {
				t.Fatalf("token signed with a retired key still verifies")
			}
			if r := e.get(e.url("/userinfo"), bearer(tok1)); r.status != http.StatusUnauthorized {
				t.Fatalf("userinfo with retired key: %d", r.status)
			}
		})
	}
}

func TestMintAccessToken(t *testing.T) {
	e := newEnv(t, "", nil)
	for _, tc := range []struct {
		name string
		sub  string
		aud  []string
	}{
		{"no subject", "", []string{appID}},
		{"no audience", "alice", nil},
		{"empty audience", "alice", []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.p.MintAccessToken(tc.sub, tc.aud, nil, 0); err == nil || !strings.HasPrefix(err.Error(), "devidp: ") {
				t.Fatalf("err = %v", err)
			}
		})
	}

	t.Run("claims", func(t *testing.T) {
		tok, err := e.p.MintAccessToken("alice", []string{"api://demo", "other"}, []string{"read", "write"}, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		e.parseJWT(tok, "other")
		c := claims(t, tok)
		now := float64(e.clock.Now().Unix())
		want := map[string]any{
			"iss": e.p.Issuer(), "sub": "alice", "client_id": "api://demo", "scope": "read write",
			"email": "alice@example.com", "preferred_username": "alice", "iat": now, "exp": now + 300,
		}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s = %v, want %v", k, c[k], v)
			}
		}
		if h := header(t, tok); h["typ"] != "at+jwt" || h["alg"] != "RS256" {
			t.Errorf("header = %v", h)
		}
	})
	t.Run("default and negative TTL", func(t *testing.T) {
		tok, _ := e.p.MintAccessToken("bench-user", []string{appID}, nil, 0)
		if c := claims(t, tok); c["exp"] != float64(e.clock.Now().Add(devidp.DefaultAccessTokenTTL).Unix()) {
			t.Fatalf("exp = %v", c["exp"])
		}
		tok, _ = e.p.MintAccessToken("alice", []string{appID}, nil, -time.Minute)
		_, err := jwt.ParseString(tok, jwt.WithKeySet(e.jwks()), jwt.WithClock(jwt.ClockFunc(e.clock.Now)))
		if err == nil {
			t.Fatalf("negative TTL token is valid")
		}
	})
}

// TestConcurrentLogins runs logins, refreshes and key rotations at once for
// the race detector.
func TestConcurrentLogins(t *testing.T) {
	e := newEnv(t, "", func(c *devidp.Config) { c.Algorithm = "ES256" })
	t.Run("group", func(t *testing.T) {
		for i := range 6 {
			t.Run("login", func(t *testing.T) {
				t.Parallel()
				se := e.with(t)
				user := []string{"alice", "bob"}[i%2]
				tokens := se.tokensFor(user, "openid offline_access")
				rt, _ := tokens["refresh_token"].(string)
				for range 3 {
					r := se.token(refreshForm(rt))
					if r.status != http.StatusOK {
						t.Fatalf("refresh: %d %q", r.status, r.body)
					}
					rt, _ = r.json(t)["refresh_token"].(string)
				}
			})
		}
		t.Run("rotate", func(t *testing.T) {
			t.Parallel()
			for range 3 {
				if err := e.p.RotateKey(); err != nil {
					t.Error(err)
				}
				_ = e.p.Stats()
			}
		})
	})
}

// with returns a copy of e that reports failures to t.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}
