package flow

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
	"github.com/gatehouse-auth/gatehouse/verify"
)

const apiAudience = "api://orders"

func accessClaims(iss string) map[string]any {
	return map[string]any{
		"iss": iss, "sub": "client-7", "aud": []string{apiAudience, "other"},
		"exp": epoch.Add(5 * time.Minute).Unix(), "iat": epoch.Unix(),
		"scope": "orders:read orders:write", "email": "svc@example.com",
	}
}

func newBearer(t *testing.T, p *scripted, mod func(*ProviderOptions, *BearerOptions)) *Bearer {
	t.Helper()
	clock := &testClock{t: epoch}
	popts := ProviderOptions{Issuer: p.URL, Now: clock.now}
	bopts := BearerOptions{Audiences: []string{apiAudience}, RequiredScopes: []string{"orders:read"}, Now: clock.now}
	if mod != nil {
		mod(&popts, &bopts)
	}
	prov, err := NewProvider(context.Background(), popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.Close)
	bopts.Provider = prov
	b, err := NewBearer(bopts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewBearerRejects(t *testing.T) {
	prov, _ := NewProvider(context.Background(), ProviderOptions{Issuer: "https://idp.example"})
	for _, tc := range []struct {
		name string
		opts BearerOptions
	}{
		{"no provider", BearerOptions{Audiences: []string{"a"}}},
		{"no audience", BearerOptions{Provider: prov}},
		{"empty audience", BearerOptions{Provider: prov, Audiences: []string{""}}},
		{"HS256", BearerOptions{Provider: prov, Audiences: []string{"a"}, Algorithms: []string{"HS256"}}},
		{"other issuer without jwks_uri", BearerOptions{Provider: prov, Audiences: []string{"a"}, Issuer: "https://other.example"}},
		{"relative jwks_uri", BearerOptions{Provider: prov, Audiences: []string{"a"}, JWKSURI: "/jwks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewBearer(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestBearerRejects: each case breaks one thing of a valid access token.
func TestBearerRejects(t *testing.T) {
	other := jwttest.NewKey("k1", "RS256")
	unknown := jwttest.NewKey("k-unknown", "RS256")
	es := jwttest.NewKey("k-es", "ES256")
	for _, tc := range []struct {
		name  string
		algs  []string
		token func(p *scripted, c map[string]any) string
		want  error
	}{
		{"bad signature", nil, func(p *scripted, c map[string]any) string {
			good := strings.Split(p.key.Sign(c, nil), ".")
			return good[0] + "." + good[1] + "." + strings.Split(other.Sign(c, nil), ".")[2]
		}, verify.ErrSignature},
		{"alg none", nil, func(p *scripted, c map[string]any) string {
			return jwttest.Raw(map[string]any{"alg": "none", "kid": "k1"}, c, func([]byte) []byte { return []byte("x") })
		}, verify.ErrAlgorithm},
		{"HS256 signed with the RSA public key", nil, func(p *scripted, c map[string]any) string {
			der, _ := x509.MarshalPKIXPublicKey(p.key.Private.Public())
			return jwttest.Raw(map[string]any{"alg": "HS256", "kid": "k1"}, c,
				jwttest.HMAC(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
		}, verify.ErrAlgorithm},
		{"RS256 token, ES256-only allow-list", []string{"ES256"}, func(p *scripted, c map[string]any) string { return p.key.Sign(c, nil) }, verify.ErrAlgorithm},
		{"unknown kid", nil, func(p *scripted, c map[string]any) string { return unknown.Sign(c, nil) }, verify.ErrUnknownKey},
		{"wrong iss", nil, func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iss", "https://evil.example"), nil)
		}, verify.ErrIssuer},
		{"wrong aud (a token for another API)", nil, func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "aud", "api://billing"), nil)
		}, verify.ErrAudience},
		{"missing exp", nil, func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "exp", nil), nil) }, verify.ErrMissingExpiry},
		{"expired", nil, func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "exp", epoch.Add(-time.Minute).Unix()), nil)
		}, verify.ErrExpired},
		{"nbf in the future", nil, func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "nbf", epoch.Add(time.Minute).Unix()), nil)
		}, verify.ErrNotYetValid},
		{"ES256 key not published", nil, func(p *scripted, c map[string]any) string { return es.Sign(c, nil) }, verify.ErrAlgorithm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			b := newBearer(t, p, func(_ *ProviderOptions, o *BearerOptions) { o.Algorithms = tc.algs })
			c, err := b.Verify(context.Background(), tc.token(p, accessClaims(p.URL)))
			if !errors.Is(err, tc.want) || c != nil {
				t.Fatalf("got %v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

func TestBearerScopes(t *testing.T) {
	p := newScripted(t)
	b := newBearer(t, p, func(_ *ProviderOptions, o *BearerOptions) { o.RequiredScopes = []string{"orders:read", "orders:admin"} })
	_, err := b.Verify(context.Background(), p.key.Sign(accessClaims(p.URL), nil))
	var se *InsufficientScopeError
	if !errors.As(err, &se) || len(se.Missing) != 1 || se.Missing[0] != "orders:admin" {
		t.Fatalf("err = %v", err)
	}
	ok := set(accessClaims(p.URL), "scope", nil)
	ok["scp"] = []string{"orders:admin", "orders:read"}
	if _, err := b.Verify(context.Background(), p.key.Sign(ok, nil)); err != nil {
		t.Fatalf("scp array with both scopes: %v", err)
	}
}

func TestBearerValid(t *testing.T) {
	p := newScripted(t)
	b := newBearer(t, p, nil)
	tok := p.key.Sign(accessClaims(p.URL), nil)
	for range 5 {
		c, err := b.Verify(context.Background(), tok)
		if err != nil || c.Subject != "client-7" {
			t.Fatalf("%v %v", c, err)
		}
	}
	if s := b.Stats(); s.CacheHits != 4 || s.CacheMisses != 1 {
		t.Fatalf("stats %+v", s)
	}
	if n := p.jwksHits.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches", n)
	}
}

func TestBearerKeyRotation(t *testing.T) {
	p := newScripted(t)
	clock := &testClock{t: epoch}
	b := newBearer(t, p, func(po *ProviderOptions, bo *BearerOptions) {
		po.KeySet = testKeySet(t, clock)
	})
	oldKey := p.key
	oldToken := oldKey.Sign(accessClaims(p.URL), nil)
	if _, err := b.Verify(context.Background(), oldToken); err != nil {
		t.Fatal(err)
	}
	newKey := jwttest.NewKey("k2", "RS256")
	p.set(func(p *scripted) { p.jwksKeys = []*jwttest.Key{newKey, oldKey} })
	clock.advance(verify.DefaultMinRefetchInterval)
	if _, err := b.Verify(context.Background(), newKey.Sign(accessClaims(p.URL), nil)); err != nil {
		t.Fatalf("new key after one refetch, no restart: %v", err)
	}
	if _, err := b.Verify(context.Background(), oldKey.Sign(set(accessClaims(p.URL), "jti", "2"), nil)); err != nil {
		t.Fatalf("old key still published: %v", err)
	}
	if n := p.jwksHits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
}

func TestBearerJWKSDownThenUp(t *testing.T) {
	p := newScripted(t)
	p.set(func(p *scripted) { p.jwksDown = true })
	clock := &testClock{t: epoch}
	b := newBearer(t, p, func(po *ProviderOptions, bo *BearerOptions) {
		po.KeySet = testKeySet(t, clock)
	})
	tok := p.key.Sign(accessClaims(p.URL), nil)
	for range 5 {
		if _, err := b.Verify(context.Background(), tok); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("JWKS down: %v", err)
		}
	}
	p.set(func(p *scripted) { p.jwksDown = false })
	clock.advance(verify.DefaultMinRefetchInterval)
	if _, err := b.Verify(context.Background(), tok); err != nil {
		t.Fatalf("JWKS back: %v", err)
	}
}

func TestBearerDiscoveryDown(t *testing.T) {
	b := newBearer(t, newScripted(t), func(po *ProviderOptions, _ *BearerOptions) { po.Issuer = "http://127.0.0.1:1" })
	if _, err := b.Verify(context.Background(), "a.b.c"); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestBearerExplicitIssuerAndJWKS(t *testing.T) {
	p := newScripted(t)
	b := newBearer(t, p, func(po *ProviderOptions, bo *BearerOptions) {
		po.Issuer = "https://login.example.com" // never discovered
		bo.Issuer = "https://api-tokens.example.com"
		bo.JWKSURI = p.URL + "/jwks"
		bo.Algorithms = []string{"RS256"}
	})
	if _, err := b.Verify(context.Background(), p.key.Sign(accessClaims("https://api-tokens.example.com"), nil)); err != nil {
		t.Fatal(err)
	}
	if p.discovery.Load() != 0 {
		t.Fatal("discovery used although issuer, jwks_uri and algorithms were given")
	}
}

// testKeySet returns a key-set factory whose rate limit runs on clock.
func testKeySet(t *testing.T, clock *testClock) func(string) (verify.KeySet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return func(uri string) (verify.KeySet, error) {
		return verify.NewRemoteKeySet(ctx, uri, verify.RemoteOptions{Now: clock.now})
	}
}

// TestBearerRefusesIDTokens: an ID token for gatehouse's own client is
// not an access token, even when the audiences would let it in; nor is a
// logout token or a token typed as another kind (RFC 9068 §4, RFC 8725
// §3.11; review SA2-06). Tokens for other audiences pass even with an ID
// token's marks: Dex's access tokens carry at_hash and no typ (issue 10,
// defect 10 — they used to be refused).
func TestBearerRefusesIDTokens(t *testing.T) {
	p := newScripted(t)
	b := newBearer(t, p, func(_ *ProviderOptions, o *BearerOptions) {
		o.Audiences = []string{apiAudience, clientID}
		o.RequiredScopes = nil
		o.ClientID = clientID
	})
	base := accessClaims(p.URL)
	ours := set(base, "aud", clientID)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		header map[string]any
		ok     bool
	}{
		{"access token", base, nil, true},
		{"Dex access token: at_hash, no typ, another audience", set(base, "at_hash", "x"), nil, true},
		{"c_hash for another audience", set(base, "c_hash", "x"), nil, true},
		{"our client, with at_hash", set(ours, "at_hash", "x"), nil, false},
		{"our client, with c_hash", set(ours, "c_hash", "x"), nil, false},
		{"our ID token (nonce, aud = client)", set(ours, "nonce", "n"), nil, false},
		{"our client, no nonce, no at_hash, no scope (a refreshed ID token)", unset(ours, "scope"), map[string]any{"typ": "JWT"}, false},
		{"our client, with scopes", ours, nil, true},
		{"nonce for another audience (Keycloak < 25 access tokens)", set(base, "nonce", "n"), nil, true},
		{"typ at+jwt with a nonce", set(ours, "nonce", "n"), map[string]any{"typ": "at+jwt"}, true},
		{"typ application/at+jwt", ours, map[string]any{"typ": "application/at+jwt"}, true},
		{"logout token by typ", base, map[string]any{"typ": "logout+jwt"}, false},
		{"logout token by events", set(base, "events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}), nil, false},
		{"DPoP proof", base, map[string]any{"typ": "dpop+jwt"}, false},
		{"Keycloak ID token (payload typ ID)", set(base, "typ", "ID"), nil, false},
		{"Keycloak access token (payload typ Bearer)", set(base, "typ", "Bearer"), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second time from the verified-token cache, with
			// the verdict kept with the claims.
			tok := p.key.Sign(tc.claims, tc.header)
			for range 2 {
				_, err := b.Verify(context.Background(), tok)
				if tc.ok != (err == nil) {
					t.Fatalf("err = %v, want ok=%v", err, tc.ok)
				}
				if err != nil && !errors.Is(err, ErrNotAnAccessToken) {
					t.Fatalf("err = %v", err)
				}
			}
		})
	}
	strict := newBearer(t, p, func(_ *ProviderOptions, o *BearerOptions) { o.RequireAccessTokenType = true })
	if _, err := strict.Verify(context.Background(), p.key.Sign(base, nil)); !errors.Is(err, ErrNotAnAccessToken) {
		t.Fatalf("require at+jwt: an untyped token: %v", err)
	}
	if _, err := strict.Verify(context.Background(), p.key.Sign(base, map[string]any{"typ": "at+jwt"})); err != nil {
		t.Fatalf("require at+jwt: an at+jwt token: %v", err)
	}
}

func unset(m map[string]any, k string) map[string]any {
	out := map[string]any{}
	for key, v := range m {
		if key != k {
			out[key] = v
		}
	}
	return out
}
