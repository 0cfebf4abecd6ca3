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

// TestIdleTimeoutThroughHandler (issue 11, session_idle_timeout): a
// session unused for the timeout counts as none — a navigation logs in
// again, an API call gets 401 — while use within it keeps the session,
// recorded in a re-issued cookie only now and then.
func TestIdleTimeoutThroughHandler(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: epochNow()}
	g := newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.now = clock.now
		g.SessionIdleTimeout = caddyDuration(30 * time.Minute)
	})
	sess := aliceSession()
	sess.Created = clock.now().Unix()
	cookies := sessionCookies(t, g, sess)
	visit := func(api bool) (*http.Response, bool) {
		r := navigation("GET", "/page")
		if api {
			r = apiRequest()
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		resp, up, _ := serve(t, g, r)
		return resp, up.called
	}
	clock.advance(2 * time.Minute)
	if resp, ok := visit(false); !ok || len(resp.Cookies()) != 0 {
		t.Fatalf("2 minutes in: passed %v, cookies %v (use is not recorded on every request)", ok, resp.Cookies())
	}
	clock.advance(2 * time.Minute)
	resp, ok := visit(false)
	if !ok || len(resp.Cookies()) == 0 {
		t.Fatalf("4 minutes in: passed %v, the use was not recorded", ok)
	}
	cookies = resp.Cookies()
	clock.advance(29 * time.Minute)
	if _, ok := visit(false); !ok {
		t.Fatal("29 minutes after the recorded use, the session was gone")
	}
	clock.advance(2 * time.Minute) // 31 minutes idle
	if resp, ok := visit(true); ok || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an idle session's API call: %d", resp.StatusCode)
	}
	if resp, ok := visit(false); ok || resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()) {
		t.Fatalf("an idle session's navigation: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
