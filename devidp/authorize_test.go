package devidp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// TestAuthorizeNeverRedirectsUntrusted covers requests whose client_id or
// redirect_uri cannot be trusted: an error page, never a redirect, on GET
// and POST alike.
func TestAuthorizeNeverRedirectsUntrusted(t *testing.T) {
	e := newEnv(t, "", nil)
	_, challenge := pkce("fatal")
	tests := []struct {
		name   string
		mutate func(url.Values)
	}{
		{"missing client_id", func(v url.Values) { v.Del("client_id") }},
		{"unknown client_id", func(v url.Values) { v.Set("client_id", "nope") }},
		{"duplicate client_id", func(v url.Values) { v.Add("client_id", appID) }},
		{"missing redirect_uri", func(v url.Values) { v.Del("redirect_uri") }},
		{"unregistered redirect_uri", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }},
		{"registered prefix only", func(v url.Values) { v.Set("redirect_uri", appRedirect+"&x=1") }},
		{"registered without query", func(v url.Values) { v.Set("redirect_uri", "https://app.example.test/oauth2/callback") }},
		{"duplicate redirect_uri", func(v url.Values) { v.Add("redirect_uri", appRedirect) }},
		{"loopback not registered", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1/cb") }},
		{"loop client, public host", func(v url.Values) { v.Set("client_id", loopID); v.Set("redirect_uri", "https://evil.example/cb") }},
		{"loop client, localhost suffix", func(v url.Values) {
			v.Set("client_id", loopID)
			v.Set("redirect_uri", "http://localhost.evil.example/cb")
		}},
		{"loop client, user info", func(v url.Values) {
			v.Set("client_id", loopID)
			v.Set("redirect_uri", "http://evil.example@127.0.0.1/cb")
		}},
		{"loop client, fragment", func(v url.Values) { v.Set("client_id", loopID); v.Set("redirect_uri", "http://127.0.0.1/cb#x") }},
		{"loop client, javascript", func(v url.Values) {
			v.Set("client_id", loopID)
			v.Set("redirect_uri", "javascript://127.0.0.1/%0aalert(1)")
		}},
		{"loop client, relative", func(v url.Values) { v.Set("client_id", loopID); v.Set("redirect_uri", "//127.0.0.1/cb") }},
		{"loop client, private address", func(v url.Values) { v.Set("client_id", loopID); v.Set("redirect_uri", "http://10.0.0.1/cb") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := authzParams(challenge)
			tc.mutate(v)
			for _, r := range []response{
				e.get(e.url("/authorize?"+v.Encode()), nil),
				e.postForm(e.url("/authorize"), withUser(v, "alice"), nil),
			} {
				if r.status != http.StatusBadRequest {
					t.Fatalf("status = %d, want 400 (Location %q)", r.status, r.header.Get("Location"))
				}
				if loc := r.header.Get("Location"); loc != "" {
					t.Fatalf("redirected to %q", loc)
				}
				if !strings.Contains(r.body, devidp.Banner) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Fatalf("error page lacks the banner: %q", r.body)
				}
			}
		})
	}
}

func withUser(v url.Values, user string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	out.Set("user", user)
	return out
}

// TestAuthorizeRedirectsErrors covers bad requests from a trusted client:
// the error goes back to the redirect URI with state and iss.
func TestAuthorizeRedirectsErrors(t *testing.T) {
	e := newEnv(t, "", nil)
	_, challenge := pkce("redir")
	tests := []struct {
		name      string
		mutate    func(url.Values)
		wantError string
	}{
		{"missing response_type", func(v url.Values) { v.Del("response_type") }, "invalid_request"},
		{"implicit flow", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"hybrid flow", func(v url.Values) { v.Set("response_type", "code id_token") }, "unsupported_response_type"},
		{"fragment response mode", func(v url.Values) { v.Set("response_mode", "fragment") }, "invalid_request"},
		{"missing scope", func(v url.Values) { v.Del("scope") }, "invalid_scope"},
		{"scope without openid", func(v url.Values) { v.Set("scope", "email profile") }, "invalid_scope"},
		{"openid as substring", func(v url.Values) { v.Set("scope", "openidx") }, "invalid_scope"},
		{"malformed scope", func(v url.Values) { v.Set("scope", "openid \"x\"") }, "invalid_scope"},
		{"missing code_challenge", func(v url.Values) { v.Del("code_challenge") }, "invalid_request"},
		{"missing code_challenge_method", func(v url.Values) { v.Del("code_challenge_method") }, "invalid_request"},
		{"plain method", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"lowercase s256", func(v url.Values) { v.Set("code_challenge_method", "s256") }, "invalid_request"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, "invalid_request"},
		{"long challenge", func(v url.Values) { v.Set("code_challenge", strings.Repeat("a", 129)) }, "invalid_request"},
		{"padded challenge", func(v url.Values) { v.Set("code_challenge", challenge[:42]+"=") }, "invalid_request"},
		{"duplicate nonce", func(v url.Values) { v.Add("nonce", "other") }, "invalid_request"},
		{"huge nonce", func(v url.Values) { v.Set("nonce", strings.Repeat("n", 5000)) }, "invalid_request"},
		{"request object", func(v url.Values) { v.Set("request", "eyJ...") }, "request_not_supported"},
		{"prompt none", func(v url.Values) { v.Set("prompt", "none") }, "login_required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := authzParams(challenge)
			tc.mutate(v)
			for _, r := range []response{
				e.get(e.url("/authorize?"+v.Encode()), nil),
				e.postForm(e.url("/authorize"), withUser(v, "alice"), nil),
			} {
				if r.status != http.StatusFound {
					t.Fatalf("status = %d, want 302 (body %q)", r.status, r.body)
				}
				q := r.location(t).Query()
				if q.Get("error") != tc.wantError || q.Get("state") != "st-123" || q.Get("iss") != e.p.Issuer() ||
					q.Get("tenant") != "t1" || q.Has("code") {
					t.Fatalf("redirect query = %v, want error=%s with state and iss", q, tc.wantError)
				}
			}
		})
	}
}

func TestAuthorizeLoopbackRedirect(t *testing.T) {
	e := newEnv(t, "", nil)
	_, challenge := pkce("loopback")
	for _, ru := range []string{"http://127.0.0.1:8080/cb", "http://localhost/cb?x=y", "https://[::1]:9/cb", "http://127.9.8.7/cb"} {
		t.Run(ru, func(t *testing.T) {
			v := authzParams(challenge)
			v.Set("client_id", loopID)
			v.Set("redirect_uri", ru)
			loc := e.login(v, "bob")
			want, _ := url.Parse(ru)
			if loc.Host != want.Host || loc.Path != want.Path || loc.Query().Get("code") == "" {
				t.Fatalf("redirected to %s, want %s with a code", loc, ru)
			}
			if want.RawQuery != "" && loc.Query().Get("x") != "y" {
				t.Fatalf("redirect lost its query: %s", loc)
			}
		})
	}
}

func TestLoginSubmission(t *testing.T) {
	e := newEnv(t, "", nil)
	_, challenge := pkce("submit")

	t.Run("unknown user", func(t *testing.T) {
		_, form := e.loginForm(authzParams(challenge))
		form.Set("user", "eve")
		r := e.postForm(e.url("/authorize"), form, nil)
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, "Unknown user") {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("no user", func(t *testing.T) {
		_, form := e.loginForm(authzParams(challenge))
		r := e.postForm(e.url("/authorize"), form, nil)
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("two users", func(t *testing.T) {
		_, form := e.loginForm(authzParams(challenge))
		form["user"] = []string{"alice", "bob"}
		r := e.postForm(e.url("/authorize"), form, nil)
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("parameters in the query of a POST are ignored", func(t *testing.T) {
		v := authzParams(challenge)
		r := e.postForm(e.url("/authorize?"+v.Encode()), url.Values{"user": {"alice"}}, nil)
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		_, form := e.loginForm(authzParams(challenge))
		form.Set("action", "cancel")
		q := e.postForm(e.url("/authorize"), form, nil).location(t).Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "st-123" || q.Get("iss") != e.p.Issuer() || q.Has("code") {
			t.Fatalf("redirect query = %v", q)
		}
	})
	t.Run("no state, none echoed", func(t *testing.T) {
		v := authzParams(challenge)
		v.Del("state")
		q := e.login(v, "alice").Query()
		if q.Has("state") || q.Get("code") == "" || q.Get("iss") != e.p.Issuer() {
			t.Fatalf("redirect query = %v", q)
		}
	})
	t.Run("codes are unique", func(t *testing.T) {
		a, b := e.code(authzParams(challenge), "alice"), e.code(authzParams(challenge), "alice")
		if a == b {
			t.Fatalf("two logins got the same code")
		}
	})
}
