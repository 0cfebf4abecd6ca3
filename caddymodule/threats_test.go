package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestNoHeaderBypassesAuthentication: nothing a client can put in headers
// lets a request without a session through.
//
//   - oauth2-proxy CVE-2026-34457: a health-check User-Agent skipped auth.
//   - oauth2-proxy CVE-2026-40575: client-supplied X-Forwarded-Uri decided
//     whether auth applied.
//   - Envoy CVE-2022-29226: the mere presence of an access token counted as
//     authenticated (bearer validation is off here, so a token is ignored).
func TestNoHeaderBypassesAuthentication(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	for _, h := range [][2]string{
		{"User-Agent", "kube-probe/1.30"},
		{"User-Agent", "GoogleHC/1.0"},
		{"User-Agent", "ELB-HealthChecker/2.0"},
		{"X-Forwarded-Uri", "/health"},
		{"X-Original-Uri", "/public"},
		{"X-Forwarded-Prefix", "/public"},
		{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."},
		{"Authorization", "Basic YWRtaW46YWRtaW4="},
		{"X-Forwarded-User", "admin"},
		{"Cookie", "_gatehouse=; _gatehouse_1=x"},
		{"Cookie", `_gatehouse="forged"`},
	} {
		t.Run(h[0]+": "+h[1], func(t *testing.T) {
			r := httptest.NewRequest("GET", "/private", nil)
			r.Header.Set("Accept", "application/json")
			r.Header.Set(h[0], h[1])
			resp, up, err := serve(t, g, r)
			if err != nil || up.called || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, upstream %v, err %v", resp.StatusCode, up.called, err)
			}
		})
	}
}

// TestReturnToComesFromTheRequestURL: the post-login target is the
// request's own path and query (Caddy-normalised r.URL), never a header
// (oauth2-proxy CVE-2026-40575) and never the Referer (caddy-security
// CVE-2024-21496, which reflected a javascript: Referer).
func TestReturnToComesFromTheRequestURL(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	r := navigation("GET", "/reports?y=2026")
	r.Header.Set("Referer", "javascript:alert(document.cookie)")
	r.Header.Set("X-Forwarded-Uri", "//evil.example/")
	r.Header.Set("X-Original-Url", "https://evil.example/")
	resp, _, _ := serve(t, g, r)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	cb := httptest.NewRequest("GET", "/oauth2/callback", nil)
	for _, c := range resp.Cookies() {
		cb.AddCookie(c)
	}
	login, err := g.sessions.TakeLogin(httptest.NewRecorder(), cb, loc.Query().Get("state"))
	if err != nil {
		t.Fatal(err)
	}
	if login.ReturnTo != "/reports?y=2026" {
		t.Fatalf("return-to %q", login.ReturnTo)
	}
	if strings.Contains(resp.Header.Get("Location"), "javascript") || strings.Contains(resp.Header.Get("Location"), "evil") {
		t.Fatalf("Location %q", resp.Header.Get("Location"))
	}
}

// TestHostileRequestsDoNotPanic (caddy-security #275: panic on an empty
// path): odd requests get an answer, never a panic or a 500.
func TestHostileRequestsDoNotPanic(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	for _, mk := range []func() *http.Request{
		func() *http.Request { r := navigation("GET", "/"); r.URL.Path = ""; r.URL.RawPath = ""; return r },
		func() *http.Request { r := navigation("GET", "/"); r.URL = &url.URL{}; return r },
		func() *http.Request { r := navigation("GET", "/"); r.Host = ""; return r },
		func() *http.Request { return navigation("GET", "/oauth2/callback?state="+strings.Repeat("s", 100000)) },
		func() *http.Request { return navigation("GET", "/oauth2/callback?code=x&state=a&state=b") },
		func() *http.Request {
			r := navigation("GET", "/")
			r.Header["Cookie"] = []string{strings.Repeat("_gatehouse_login_x=1; ", 5000)}
			return r
		},
	} {
		resp, _, err := serve(t, g, mk())
		if err != nil {
			t.Fatalf("error %v", err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}
