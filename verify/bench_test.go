package verify

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

func benchVerifier(b *testing.B, k *jwttest.Key, cacheSize int) *Verifier {
	v, err := New(Config{
		Issuer: testIssuer, Audiences: []string{testAudience}, Keys: staticKeys(b, k),
		Now: func() time.Time { return epoch }, CacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// accessToken is a realistic access token: about 900 bytes.
func accessToken(k *jwttest.Key, i int) string {
	c := validClaims()
	c["jti"] = i
	c["scope"] = "openid email profile orders:read orders:write"
	c["email"] = "alice@example.com"
	c["preferred_username"] = "alice"
	c["groups"] = []string{"admins", "staff", "engineering", "on-call"}
	c["client_id"] = "spa"
	return k.Sign(c, nil)
}

// BenchmarkVerifyCacheHit: a client repeating its token.
func BenchmarkVerifyCacheHit(b *testing.B) {
	k := jwttest.NewKey("k", "RS256")
	v := benchVerifier(b, k, 1024)
	tok := accessToken(k, 0)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMiss cycles through more distinct tokens than the cache holds, so
// every verification checks a signature (and inserts into the cache).
func benchMiss(b *testing.B, alg string) {
	k := jwttest.NewKey("k", alg)
	v := benchVerifier(b, k, 256)
	toks := make([]string, 512)
	for i := range toks {
		toks[i] = accessToken(k, i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.Verify(context.Background(), toks[i%len(toks)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if s := v.Stats(); s.CacheHits != 0 {
		b.Fatalf("%d cache hits in a miss benchmark", s.CacheHits)
	}
}

func BenchmarkVerifyCacheMissRS256(b *testing.B) { benchMiss(b, "RS256") }
func BenchmarkVerifyCacheMissES256(b *testing.B) { benchMiss(b, "ES256") }
