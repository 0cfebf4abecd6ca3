package devidp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
)

// TestHostileInputs sends requests no well-behaved client would: each gets a
// 4xx, never a 500 or a panic.
func TestHostileInputs(t *testing.T) {
	e := newEnv(t, "", nil)
	huge := "grant_type=authorization_code&code=" + strings.Repeat("a", 1<<20)
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		basic       bool
		want        int
	}{
		{"huge token body", "POST", "/token", form, huge, true, 400},
		{"huge authorize body", "POST", "/authorize", form, huge, false, 400},
		{"huge end_session body", "POST", "/end_session", form, huge, false, 400},
		{"bad form encoding, token", "POST", "/token", form, "grant_type=%zz", true, 400},
		{"bad form encoding, authorize", "POST", "/authorize", form, "client_id=%zz", false, 400},
		{"bad query, authorize", "GET", "/authorize?client_id=%zz;", "", "", false, 400},
		{"bad query, end_session", "GET", "/end_session?state=%zz", "", "", false, 400},
		{"JSON body at token", "POST", "/token", "application/json", `{"grant_type":"authorization_code"}`, true, 400},
		{"multipart at token", "POST", "/token", "multipart/form-data; boundary=x", "--x--", true, 400},
		{"no content type", "POST", "/token", "", "grant_type=refresh_token&refresh_token=x", true, 400},
		{"NUL bytes", "POST", "/token", form, "grant_type=authorization_code&code=%00&code_verifier=%00&redirect_uri=%00", true, 400},
		{"encoded dot segments", "GET", "/%2e%2e/jwks", "", "", false, 404},
		{"authorize with only garbage", "GET", "/authorize?%00=%ff&client_id=" + strings.Repeat("%ff", 100), "", "", false, 400},
		{"userinfo POST body", "POST", "/userinfo", form, huge, false, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.basic {
				req.Header.Set("Authorization", basicAuth(appID, appSecret).Get("Authorization"))
			}
			r := e.do(req)
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d (body %.200q)", r.status, tc.want, r.body)
			}
		})
	}
}

// FuzzServeHTTP feeds arbitrary requests to the provider: it must never
// panic nor answer with a 5xx.
func FuzzServeHTTP(f *testing.F) {
	clock := newFakeClock()
	cfg := testConfig("http://127.0.0.1:9000/idp", clock)
	cfg.Algorithm = "ES256"
	p, err := devidp.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	_, challenge := pkce("fuzz")
	seeds := []struct{ method, target, authz, body string }{
		{"GET", "/idp/.well-known/openid-configuration", "", ""},
		{"GET", "/idp/jwks", "", ""},
		{"GET", "/idp/authorize?" + authzParams(challenge).Encode(), "", ""},
		{"POST", "/idp/authorize", "", withUser(authzParams(challenge), "alice").Encode()},
		{"POST", "/idp/authorize", "", "action=cancel&" + authzParams(challenge).Encode()},
		{"POST", "/idp/token", basicAuth(appID, appSecret).Get("Authorization"), "grant_type=authorization_code&code=x&code_verifier=y"},
		{"POST", "/idp/token", "", "grant_type=refresh_token&refresh_token=x&client_id=app&client_secret=y"},
		{"GET", "/idp/userinfo", "Bearer a.b.c", ""},
		{"GET", "/idp/end_session?id_token_hint=a.b.c&post_logout_redirect_uri=http://localhost/", "", ""},
		{"POST", "/idp/token", "Basic %%%", "%zz"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.authz, s.body)
	}
	f.Fuzz(func(t *testing.T, method, target, authz, body string) {
		req, err := http.NewRequest(method, "http://127.0.0.1:9000"+target, bytes.NewBufferString(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, target, rec.Code, rec.Body)
		}
		clock.Advance(time.Second)
	})
}
