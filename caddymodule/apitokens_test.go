package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// fakeIntrospection is an RFC 7662 endpoint: token → answer; it counts
// the calls it saw and can be taken down.
type fakeIntrospection struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]map[string]any
	calls   atomic.Int64
	down    atomic.Bool
	auth    atomic.Value // the last Authorization header
}

func newFakeIntrospection(t *testing.T) *fakeIntrospection {
	f := &fakeIntrospection{answers: map[string]map[string]any{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.auth.Store(r.Header.Get("Authorization"))
		if f.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = r.ParseForm()
		f.mu.Lock()
		a, ok := f.answers[r.PostForm.Get("token")]
		f.mu.Unlock()
		if !ok {
			a = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeIntrospection) set(token string, answer map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[token] = answer
}

// TestIntrospectionThroughHandler: an opaque token is checked at the
// introspection endpoint once, then from the cache; its answer names the
// user upstream; an inactive one is 401; with the endpoint down a cached
// token still passes and a new one gets 503; JWTs never go there.
func TestIntrospectionThroughHandler(t *testing.T) {
	idp := newIDP(t)
	f := newFakeIntrospection(t)
	g := bearerHandler(t, idp, func(g *Gatehouse) {
		g.Bearer.Introspection = &IntrospectionConfig{Endpoint: f.URL}
	})
	exp := time.Now().Add(time.Hour).Unix()
	f.set("opaque-alice", map[string]any{"active": true, "sub": "alice", "email": "alice@example.com", "email_verified": true,
		"scope": "orders:read", "exp": exp, "iss": idp.Issuer(), "client_id": "spa"})
	f.set("opaque-no-scope", map[string]any{"active": true, "sub": "bob", "scope": "profile", "exp": exp})

	for i := range 3 {
		resp, up, err := serve(t, g, apiRequest("Bearer opaque-alice"))
		if err != nil || resp.StatusCode != http.StatusOK || up.req.Header.Get("X-Forwarded-User") != "alice" || up.req.Header.Get("X-Forwarded-Email") != "alice@example.com" {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("3 requests with one token: %d introspection calls, want 1", n)
	}
	expect(t, metricsOf(t, g), map[string]float64{
		"gatehouse_cache_lookups_total cache introspection result hit":       2,
		"gatehouse_cache_lookups_total cache introspection result miss":      1,
		"gatehouse_provider_request_duration_seconds endpoint introspection": 1,
		"gatehouse_bearer_verifications_total result ok":                     3,
	})
	if auth, _ := f.auth.Load().(string); !strings.HasPrefix(auth, "Basic ") {
		t.Errorf("gatehouse did not authenticate at the endpoint: %q", auth)
	}
	for _, tc := range []struct {
		token  string
		status int
		want   string
	}{
		{"opaque-unknown", http.StatusUnauthorized, `error="invalid_token"`},
		{"opaque-no-scope", http.StatusForbidden, `error="insufficient_scope"`},
	} {
		resp, up, _ := serve(t, g, apiRequest("Bearer "+tc.token))
		if resp.StatusCode != tc.status || up.called || !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.want) {
			t.Errorf("%s: %d %q", tc.token, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// A JWT is verified locally, never introspected.
	before := f.calls.Load()
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	if resp, _, _ := serve(t, g, apiRequest("Bearer "+tok)); resp.StatusCode != http.StatusOK || f.calls.Load() != before {
		t.Fatalf("JWT: %d, introspection calls %d → %d", resp.StatusCode, before, f.calls.Load())
	}
	// The endpoint goes down: the cached token passes, a new one is 503.
	f.down.Store(true)
	if resp, _, _ := serve(t, g, apiRequest("Bearer opaque-alice")); resp.StatusCode != http.StatusOK {
		t.Errorf("cached token, endpoint down: %d", resp.StatusCode)
	}
	f.set("opaque-new", map[string]any{"active": true, "sub": "carol", "scope": "orders:read", "exp": exp})
	if resp, _, _ := serve(t, g, apiRequest("Bearer opaque-new")); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("new token, endpoint down: %d", resp.StatusCode)
	}
}

// TestDPoPRequired: with `dpop required` a Bearer token is refused with
// the DPoP challenge alone, naming the error there (RFC 9449 §7.1), and
// a request without a token is told which algorithms proofs may use.
func TestDPoPRequired(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, func(g *Gatehouse) { g.Bearer.DPoP = "required" })
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	for _, tc := range []struct {
		name, auth, want string
	}{
		{"a Bearer token", "Bearer " + tok, `error="invalid_token"`},
		{"DPoP without a proof", "DPoP " + tok, `error="invalid_dpop_proof"`},
	} {
		r := apiRequest(tc.auth)
		resp, up, _ := serve(t, g, r)
		ch := resp.Header.Values("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || up.called || len(ch) != 1 || !strings.HasPrefix(ch[0], `DPoP algs="ES256 ES384 RS256 PS256 EdDSA", `+tc.want) {
			t.Errorf("%s: %d %q", tc.name, resp.StatusCode, ch)
		}
	}
	// The metadata says DPoP is required.
	resp, _, _ := serve(t, g, httptest.NewRequest("GET", "/.well-known/oauth-protected-resource", nil))
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc["dpop_bound_access_tokens_required"] != true {
		t.Errorf("metadata %v %v", doc, err)
	}
}

// TestAPITokenConfigErrors: what cannot work stops the config, naming
// the directive.
func TestAPITokenConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Gatehouse)
		want string
	}{
		{"introspection without a client", func(g *Gatehouse) {
			g.ClientID, g.ClientSecret, g.CookieSecrets = "", "", nil
			g.Bearer.Only = true
			g.Bearer.Introspection = &IntrospectionConfig{}
		}, "bearer introspection: needs client_id and client_secret"},
		{"introspection endpoint", func(g *Gatehouse) { g.Bearer.Introspection = &IntrospectionConfig{Endpoint: "/introspect"} }, "bearer introspection endpoint"},
		{"introspection cache_ttl", func(g *Gatehouse) {
			g.Bearer.Introspection = &IntrospectionConfig{CacheTTL: caddy.Duration(2 * time.Hour)}
		}, "bearer introspection cache_ttl"},
		{"dpop", func(g *Gatehouse) { g.Bearer.DPoP = "sometimes" }, `bearer dpop: "sometimes" is neither optional nor required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gatehouse{
				ProviderConfig: ProviderConfig{Issuer: "https://login.example.com", ClientID: testClientID, ClientSecret: testClientSecret},
				CookieSecrets:  []string{testCookieSecret},
				Bearer:         &BearerConfig{Audiences: []string{apiAudience}},
			}
			tc.mod(g)
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := g.Provision(ctx)
			g.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPrivateKeyJWTConfig: private_key_jwt needs client_key and no
// client_secret; a bad key stops the config naming client_key, without
// echoing it.
func TestPrivateKeyJWTConfig(t *testing.T) {
	idp := newIDP(t)
	provision := func(mod func(*Gatehouse)) error {
		g := &Gatehouse{
			ProviderConfig: ProviderConfig{Issuer: idp.Issuer(), ClientID: testClientID, ClientAuth: "private_key_jwt"},
			CookieSecrets:  []string{testCookieSecret}, CookieInsecure: true,
		}
		mod(g)
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		err := g.Provision(ctx)
		g.Cleanup()
		return err
	}
	if err := provision(func(*Gatehouse) {}); err == nil || !strings.Contains(err.Error(), "client_key: is required with client_auth private_key_jwt") {
		t.Errorf("no key: %v", err)
	}
	const junk = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
	if err := provision(func(g *Gatehouse) { g.ClientKey = junk }); err == nil || !strings.Contains(err.Error(), "client_key") || strings.Contains(err.Error(), "bm90IGEga2V5") {
		t.Errorf("a bad key: %v", err)
	}
	if err := provision(func(g *Gatehouse) { g.ClientKey = ecKeyPEM(t) }); err != nil {
		t.Errorf("a good key, no secret: %v", err)
	}
}
