package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestResourceMetadata: a bearer block publishes RFC 9728 metadata at the
// well-known path its resource identifier derives, names it in every
// challenge, and the document says what a client needs; a client that
// follows the challenge ends at a document whose resource is the one it
// started from (§3.3).
func TestResourceMetadata(t *testing.T) {
	idp := newIDP(t)
	get := func(g *Gatehouse, method, target string) (*http.Response, *upstream) {
		t.Helper()
		resp, up, _ := serve(t, g, httptest.NewRequest(method, target, nil))
		return resp, up
	}
	doc := func(t *testing.T, resp *http.Response) map[string]any {
		t.Helper()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("metadata: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("default: the origin is the resource", func(t *testing.T) {
		g := bearerHandler(t, idp, nil)
		resp, up := get(g, "GET", "http://api.example.com/.well-known/oauth-protected-resource")
		if up.called {
			t.Fatal("the metadata request reached the upstream")
		}
		m := doc(t, resp)
		want := map[string]string{
			"resource":                 "http://api.example.com",
			"authorization_servers":    `["` + idp.Issuer() + `"]`,
			"scopes_supported":         `["orders:read"]`,
			"bearer_methods_supported": `["header"]`,
		}
		for k, v := range want {
			got, _ := json.Marshal(m[k])
			if s, ok := m[k].(string); ok {
				got = []byte(s)
			}
			if string(got) != v {
				t.Errorf("%s = %s, want %s", k, got, v)
			}
		}
		if len(m) != len(want) {
			t.Errorf("members %v", m)
		}
		// The challenge of a request without a token names the document.
		resp, _, _ = serve(t, g, func() *http.Request {
			r := apiRequest()
			r.Host = "api.example.com"
			return r
		}())
		if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `resource_metadata="http://api.example.com/.well-known/oauth-protected-resource"`) {
			t.Fatalf("challenge %q", ch)
		}
		// Other methods: 405, and nothing reaches the upstream.
		resp, up = get(g, "POST", "http://api.example.com/.well-known/oauth-protected-resource")
		if resp.StatusCode != http.StatusMethodNotAllowed || up.called {
			t.Fatalf("POST: %d, upstream %v", resp.StatusCode, up.called)
		}
	})

	t.Run("a configured resource with a path", func(t *testing.T) {
		g := bearerHandler(t, idp, func(g *Gatehouse) { g.Bearer.Resource = "https://api.example.com/mcp" })
		// The challenge, on any host the site answers for, names the
		// configured resource's metadata URL.
		resp, _, _ := serve(t, g, apiRequest("Bearer junk"))
		ch := resp.Header.Get("WWW-Authenticate")
		const metaURL = "https://api.example.com/.well-known/oauth-protected-resource/mcp"
		if !strings.Contains(ch, `error="invalid_token", resource_metadata="`+metaURL+`"`) {
			t.Fatalf("challenge %q", ch)
		}
		u, _ := url.Parse(metaURL)
		m := doc(t, func() *http.Response { r, _ := get(g, "GET", u.Path); return r }())
		if m["resource"] != "https://api.example.com/mcp" {
			t.Fatalf("resource %v", m["resource"])
		}
		// The bare well-known path is not this resource's: it is an
		// ordinary request, refused without a token.
		resp, up := get(g, "GET", "/.well-known/oauth-protected-resource")
		if resp.StatusCode != http.StatusUnauthorized || up.called {
			t.Fatalf("the root path: %d", resp.StatusCode)
		}
	})

	t.Run("a block without bearer publishes nothing", func(t *testing.T) {
		g := newHandler(t, idp.Issuer(), nil)
		r := apiRequest()
		r.URL.Path = "/.well-known/oauth-protected-resource"
		resp, up, _ := serve(t, g, r)
		if resp.StatusCode != http.StatusUnauthorized || up.called {
			t.Fatalf("%d", resp.StatusCode)
		}
		if ch := resp.Header.Get("WWW-Authenticate"); strings.Contains(ch, "resource_metadata") {
			t.Fatalf("challenge %q", ch)
		}
	})
}

// TestResourceConfigErrors: a resource identifier RFC 9728 does not allow
// stops the config, naming the directive.
func TestResourceConfigErrors(t *testing.T) {
	for _, bad := range []string{"api://orders", "/mcp", "https://api.example.com/mcp?x=1", "https://api.example.com/mcp#top", "https://user@api.example.com/"} {
		g := &Gatehouse{
			ProviderConfig: ProviderConfig{Issuer: "https://login.example.com", ClientID: testClientID, ClientSecret: testClientSecret},
			CookieSecrets:  []string{testCookieSecret},
			Bearer:         &BearerConfig{Audiences: []string{apiAudience}, Resource: bad},
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := g.Provision(ctx)
		if err == nil {
			err = g.Validate()
		}
		g.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), "bearer resource") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
