package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUserinfoEndpoint: path_prefix/userinfo tells a front-end who is
// signed in — never a token (Pomerium CVE-2024-39315) — and answers 401
// JSON, not a login redirect, without a session.
func TestUserinfoEndpoint(t *testing.T) {
	g := newHandler(t, "https://idp.example", func(g *Gatehouse) { g.AllowGroups = []string{"nobody"} })
	sess := aliceSession()
	sess.AccessToken, sess.RefreshToken, sess.IDToken = "secret-access-token", "secret-refresh-token", "secret.id.token"
	sess.EmailUnverified = true
	get := func(method string, withSession bool) (*http.Response, string, *upstream) {
		r := navigation(method, "/oauth2/userinfo")
		if withSession {
			for _, c := range sessionCookies(t, g, sess) {
				r.AddCookie(c)
			}
		}
		resp, up, err := serve(t, g, r)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readBody(resp), up
	}

	resp, body, up := get("GET", true)
	if resp.StatusCode != http.StatusOK || up.called || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("signed in: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	for _, secret := range []string{"secret-access-token", "secret-refresh-token", "secret.id.token", "alice@example.com"} {
		if strings.Contains(body, secret) {
			t.Fatalf("userinfo shows %q (a token, or an unverified e-mail): %s", secret, body)
		}
	}
	var got userinfo
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := userinfo{User: "alice", PreferredUsername: "alice", Name: "Alice", Groups: []string{"admins", "staff"},
		ExpiresAt: time.Unix(sess.Created, 0).Add(time.Duration(g.SessionLifetime)).Unix()}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("userinfo %+v, want %+v (the allow rules do not apply: anyone may ask who they are)", got, want)
	}

	resp, body, _ = get("GET", false)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" || !strings.HasPrefix(body, `{"error":"unauthenticated"`) {
		t.Fatalf("no session: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if resp, _, _ := get("POST", true); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	api := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = &BearerConfig{Audiences: []string{apiAudience}, Only: true}
	})
	if resp, up, _ := serve(t, api, httptest.NewRequest("GET", "/oauth2/userinfo", nil)); resp.StatusCode != http.StatusNotFound || up.called {
		t.Fatalf("bearer only: %d", resp.StatusCode)
	}
}
