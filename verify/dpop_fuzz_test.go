package verify

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

// FuzzDPoPProof: any proof, method and request URL gives a thumbprint or
// an error, never a panic; an accepted proof yields a SHA-256 thumbprint.
func FuzzDPoPProof(f *testing.F) {
	for _, alg := range DPoPAlgorithms {
		f.Add(proof(proofKey(alg), proofClaims(), nil), "GET", dpopURL)
	}
	k := proofKey("ES256")
	c := proofClaims()
	c["htu"] = "HTTPS://API.example.com:443/a/./%7e/../orders?q#f"
	f.Add(proof(k, c, nil), "GET", "https://api.example.com/a/orders")
	f.Add(proof(k, proofClaims(), map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}), "GET", dpopURL)
	f.Add(jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": publicJWKMap(k)}, proofClaims(), func([]byte) []byte { return []byte{0} }), "POST", dpopURL)
	f.Add("a.b.c", "GET", "https://[::1]:8443/%zz")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, p, method, rawURL string) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		v, err := NewDPoPVerifier(DPoPConfig{Now: func() time.Time { return epoch }, ReplayCacheSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		jkt, err := v.Verify([]string{p}, method, u, "")
		if err == nil && len(jkt) != 43 {
			t.Fatalf("accepted with thumbprint %q", jkt)
		}
		if err != nil && jkt != "" {
			t.Fatal("a thumbprint returned with an error")
		}
	})
}

// FuzzNormalizeHTU: normalization never panics and is idempotent, and its
// result has no query, fragment or user info.
func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{
		dpopURL, "HTTPS://API.Example.COM:443/a/./b/../c?x#y", "https://[2001:DB8::1%25eth0]:8443/%7e",
		"http://h/%2e%2E/x", "https://h:0443/", "https://u:p@h/", "https://h/a%2Fb/..", "https://h/../../..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := normalizeHTU(s)
		if !ok || len(n) > 8<<10 { // escaping may push it past the size cap
			return
		}
		again, ok := normalizeHTU(n)
		if !ok || again != n {
			t.Fatalf("%q → %q → %q (%v): not idempotent", s, n, again, ok)
		}
		if u, err := url.Parse(n); err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(n, "?") || strings.Contains(n, "#") {
			t.Fatalf("%q → %q keeps a query, fragment or user info", s, n)
		}
	})
}
