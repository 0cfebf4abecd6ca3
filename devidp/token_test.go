package devidp_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// tokenCase is one token endpoint request made right after a fresh login of
// alice at the app client.
type tokenCase struct {
	name   string
	build  func(code, verifier string) (url.Values, http.Header)
	status int
	error  string
}

func (tc tokenCase) run(t *testing.T, e *env) {
	verifier, challenge := pkce("tc")
	code := e.code(authzParams(challenge), "alice")
	form, hdr := tc.build(code, verifier)
	r := e.postForm(e.url("/token"), form, hdr)
	wantOAuthError(t, r, tc.status, tc.error)
	if tc.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("401 without WWW-Authenticate")
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t, "", nil)
	basic := basicAuth(appID, appSecret)
	tests := []tokenCase{
		{"missing code_verifier", func(c, _ string) (url.Values, http.Header) {
			f := codeForm(c, "")
			f.Del("code_verifier")
			return f, basic
		}, 400, "invalid_grant"},
		{"wrong code_verifier", func(c, _ string) (url.Values, http.Header) {
			v, _ := pkce("wrong")
			return codeForm(c, v), basic
		}, 400, "invalid_grant"},
		{"challenge as verifier (plain)", func(c, _ string) (url.Values, http.Header) {
			_, ch := pkce("tc")
			return codeForm(c, ch), basic
		}, 400, "invalid_grant"},
		{"malformed code_verifier", func(c, v string) (url.Values, http.Header) {
			return codeForm(c, v[:42]+"!"), basic
		}, 400, "invalid_grant"},
		{"wrong redirect_uri", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Set("redirect_uri", "https://app.example.test/oauth2/callback")
			return f, basic
		}, 400, "invalid_grant"},
		{"missing redirect_uri", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Del("redirect_uri")
			return f, basic
		}, 400, "invalid_grant"},
		{"unknown code", func(_, v string) (url.Values, http.Header) {
			return codeForm("bm90LWEtY29kZQ", v), basic
		}, 400, "invalid_grant"},
		{"missing code", func(_, v string) (url.Values, http.Header) {
			f := codeForm("", v)
			f.Del("code")
			return f, basic
		}, 400, "invalid_request"},
		{"code of another client", func(c, v string) (url.Values, http.Header) {
			return codeForm(c, v), basicAuth(loopID, loopSecret)
		}, 400, "invalid_grant"},
		{"wrong secret", func(c, v string) (url.Values, http.Header) {
			return codeForm(c, v), basicAuth(appID, "wrong")
		}, 401, "invalid_client"},
		{"secret not form-encoded in basic", func(c, v string) (url.Values, http.Header) {
			req, _ := http.NewRequest("POST", "/", nil)
			req.SetBasicAuth(appID, appSecret) // raw '%' is not a valid escape
			return codeForm(c, v), req.Header
		}, 401, "invalid_client"},
		{"unknown client", func(c, v string) (url.Values, http.Header) {
			return codeForm(c, v), basicAuth("nope", appSecret)
		}, 401, "invalid_client"},
		{"wrong secret, post", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Set("client_id", appID)
			f.Set("client_secret", appSecret+"x")
			return f, nil
		}, 401, "invalid_client"},
		{"both auth methods", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Set("client_id", appID)
			f.Set("client_secret", appSecret)
			return f, basic
		}, 401, "invalid_client"},
		{"basic with other client_id", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Set("client_id", loopID)
			return f, basic
		}, 401, "invalid_client"},
		{"no client authentication", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Set("client_id", appID)
			return f, nil
		}, 401, "invalid_client"},
		{"bearer instead of basic", func(c, v string) (url.Values, http.Header) {
			return codeForm(c, v), http.Header{"Authorization": {"Bearer x"}}
		}, 401, "invalid_client"},
		{"unsupported grant type", func(_, _ string) (url.Values, http.Header) {
			return url.Values{"grant_type": {"client_credentials"}}, basic
		}, 400, "unsupported_grant_type"},
		{"password grant", func(_, _ string) (url.Values, http.Header) {
			return url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}}, basic
		}, 400, "unsupported_grant_type"},
		{"missing grant type", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Del("grant_type")
			return f, basic
		}, 400, "invalid_request"},
		{"duplicate parameter", func(c, v string) (url.Values, http.Header) {
			f := codeForm(c, v)
			f.Add("code", c)
			return f, basic
		}, 400, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, e) })
	}
}

func TestPKCEFailureUsesUpCode(t *testing.T) {
	e := newEnv(t, "", nil)
	verifier, challenge := pkce("burn")
	code := e.code(authzParams(challenge), "alice")
	wrong, _ := pkce("nope")
	wantOAuthError(t, e.token(codeForm(code, wrong)), 400, "invalid_grant")
	wantOAuthError(t, e.token(codeForm(code, verifier)), 400, "invalid_grant")
}

func TestCodeOfAnotherClientStaysValid(t *testing.T) {
	e := newEnv(t, "", nil)
	verifier, challenge := pkce("other")
	code := e.code(authzParams(challenge), "alice")
	wantOAuthError(t, e.postForm(e.url("/token"), codeForm(code, verifier), basicAuth(loopID, loopSecret)), 400, "invalid_grant")
	if r := e.token(codeForm(code, verifier)); r.status != http.StatusOK {
		t.Fatalf("rightful client: %d %q", r.status, r.body)
	}
}

func TestCodeReuse(t *testing.T) {
	e := newEnv(t, "", nil)
	verifier, challenge := pkce("reuse")
	params := authzParams(challenge)
	params.Set("scope", "openid offline_access")
	code := e.code(params, "alice")
	first := e.token(codeForm(code, verifier))
	if first.status != http.StatusOK {
		t.Fatalf("first exchange: %d %q", first.status, first.body)
	}
	rt, _ := first.json(t)["refresh_token"].(string)

	for range 2 { // the code stays dead
		wantOAuthError(t, e.token(codeForm(code, verifier)), 400, "invalid_grant")
	}
	// Replaying the code revoked the tokens issued from it.
	wantOAuthError(t, e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}), 400, "invalid_grant")
}

func TestExpiredCode(t *testing.T) {
	e := newEnv(t, "", func(c *devidp.Config) { c.CodeTTL = 30 * time.Second })
	verifier, challenge := pkce("expired")

	code := e.code(authzParams(challenge), "alice")
	e.clock.Advance(30 * time.Second)
	wantOAuthError(t, e.token(codeForm(code, verifier)), 400, "invalid_grant")

	code = e.code(authzParams(challenge), "alice")
	e.clock.Advance(29 * time.Second)
	if r := e.token(codeForm(code, verifier)); r.status != http.StatusOK {
		t.Fatalf("code just before expiry: %d %q", r.status, r.body)
	}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func TestRefresh(t *testing.T) {
	offline := func(e *env) (url.Values, string) {
		verifier, challenge := pkce("refresh")
		params := authzParams(challenge)
		params.Set("scope", "openid email offline_access")
		return codeForm(e.code(params, "alice"), verifier), verifier
	}
	rtOf := func(t *testing.T, r response) string {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("token: %d %q", r.status, r.body)
		}
		rt, _ := r.json(t)["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("no refresh_token in %q", r.body)
		}
		return rt
	}

	t.Run("none without offline_access", func(t *testing.T) {
		e := newEnv(t, "", nil)
		verifier, challenge := pkce("norefresh")
		r := e.token(codeForm(e.code(authzParams(challenge), "alice"), verifier))
		if _, ok := r.json(t)["refresh_token"]; ok || r.status != http.StatusOK {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	})
	t.Run("other client", func(t *testing.T) {
		e := newEnv(t, "", nil)
		f, _ := offline(e)
		rt := rtOf(t, e.token(f))
		wantOAuthError(t, e.postForm(e.url("/token"), refreshForm(rt), basicAuth(loopID, loopSecret)), 400, "invalid_grant")
		rtOf(t, e.token(refreshForm(rt))) // still valid for its own client
	})
	t.Run("unknown token", func(t *testing.T) {
		e := newEnv(t, "", nil)
		wantOAuthError(t, e.token(refreshForm("bm9wZQ")), 400, "invalid_grant")
		wantOAuthError(t, e.token(url.Values{"grant_type": {"refresh_token"}}), 400, "invalid_request")
	})
	t.Run("expired", func(t *testing.T) {
		e := newEnv(t, "", func(c *devidp.Config) { c.RefreshTokenTTL = time.Hour })
		f, _ := offline(e)
		rt := rtOf(t, e.token(f))
		e.clock.Advance(time.Hour)
		wantOAuthError(t, e.token(refreshForm(rt)), 400, "invalid_grant")
	})
	t.Run("wider scope", func(t *testing.T) {
		e := newEnv(t, "", nil)
		f, _ := offline(e)
		rt := rtOf(t, e.token(f))
		rf := refreshForm(rt)
		rf.Set("scope", "openid groups")
		wantOAuthError(t, e.token(rf), 400, "invalid_scope")
		rf.Set("scope", "openid") // narrower works, and the token was not used up
		r := e.token(rf)
		rtOf(t, r)
		if got := r.json(t)["scope"]; got != "openid" {
			t.Fatalf("scope = %v", got)
		}
	})
	t.Run("rotation and reuse detection", func(t *testing.T) {
		e := newEnv(t, "", nil)
		f, _ := offline(e)
		first := e.token(f)
		rt1 := rtOf(t, first)
		sid := claims(t, first.json(t)["id_token"].(string))["sid"]

		e.clock.Advance(10 * time.Minute)
		r2 := e.token(refreshForm(rt1))
		rt2 := rtOf(t, r2)
		if rt2 == rt1 {
			t.Fatalf("refresh token did not rotate")
		}
		body := r2.json(t)
		idt, _ := body["id_token"].(string)
		at, _ := body["access_token"].(string)
		e.parseJWT(idt, appID)
		e.parseJWT(at, appAudience)
		ic := claims(t, idt)
		if _, ok := ic["nonce"]; ok {
			t.Fatalf("refreshed ID token has a nonce")
		}
		if ic["sid"] != sid || ic["at_hash"] != atHash(at) || ic["iat"] != float64(e.clock.Now().Unix()) ||
			ic["auth_time"] != float64(e.clock.Now().Add(-10*time.Minute).Unix()) {
			t.Fatalf("refreshed ID token claims = %v", ic)
		}
		if body["scope"] != "openid email offline_access" {
			t.Fatalf("scope = %v", body["scope"])
		}

		rt3 := rtOf(t, e.token(refreshForm(rt2))) // the successor works
		// Replaying rt1 fails and revokes the family, so rt3 is dead too.
		wantOAuthError(t, e.token(refreshForm(rt1)), 400, "invalid_grant")
		wantOAuthError(t, e.token(refreshForm(rt3)), 400, "invalid_grant")
	})
	t.Run("reuse leaves other logins alone", func(t *testing.T) {
		e := newEnv(t, "", nil)
		fa, _ := offline(e)
		fb, _ := offline(e)
		a, b := rtOf(t, e.token(fa)), rtOf(t, e.token(fb))
		rtOf(t, e.token(refreshForm(a)))
		wantOAuthError(t, e.token(refreshForm(a)), 400, "invalid_grant")
		rtOf(t, e.token(refreshForm(b)))
	})
}

func TestStateIsBounded(t *testing.T) {
	e := newEnv(t, "", nil)
	devidp.SetMaxEntries(e.p, 2)
	verifier, challenge := pkce("cap")
	params := authzParams(challenge)
	params.Set("scope", "openid offline_access")

	c1, c2 := e.code(params, "alice"), e.code(params, "alice")
	q := e.login(params, "alice").Query()
	if q.Get("error") != "temporarily_unavailable" || q.Has("code") {
		t.Fatalf("third code: redirect query %v", q)
	}
	// Used codes stay (for replay detection) until they expire.
	rt1, _ := e.token(codeForm(c1, verifier)).json(t)["refresh_token"].(string)
	if r := e.token(codeForm(c2, verifier)); r.status != http.StatusOK {
		t.Fatalf("second exchange: %d %q", r.status, r.body)
	}
	// Refresh tokens: two live, so a rotation (one more) is refused.
	wantOAuthError(t, e.token(refreshForm(rt1)), http.StatusServiceUnavailable, "temporarily_unavailable")

	// Once the codes expire they are swept and logins work again.
	e.clock.Advance(devidp.DefaultCodeTTL)
	if q := e.login(params, "alice").Query(); q.Get("code") == "" {
		t.Fatalf("after expiry: redirect query %v", q)
	}
	// The refused rotation did not use up the refresh token.
	devidp.SetMaxEntries(e.p, 10)
	r := e.token(refreshForm(rt1))
	if r.status != http.StatusOK {
		t.Fatalf("refresh after raising the cap: %d %q", r.status, r.body)
	}
	// Expired refresh tokens are refused (and swept).
	rt2, _ := r.json(t)["refresh_token"].(string)
	e.clock.Advance(devidp.DefaultRefreshTokenTTL)
	wantOAuthError(t, e.token(refreshForm(rt2)), 400, "invalid_grant")
}
