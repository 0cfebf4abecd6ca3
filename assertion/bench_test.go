package assertion

import (
	"strconv"
	"testing"
)

// BenchmarkTokenHit: a request of a session whose assertion is cached.
func BenchmarkTokenHit(b *testing.B) {
	clk := newClock()
	s := newRingSigner(b, &MemoryStorage{}, clk)
	c := claims()
	token(b, s, "session-1", c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token("session-1", c); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMiss cycles through more sessions than the cache holds, so every
// call signs (and inserts into the cache).
func benchMiss(b *testing.B, alg string) {
	clk := newClock()
	s := newRingSigner(b, &MemoryStorage{}, clk, func(o *Options) { o.Algorithm = alg; o.CacheSize = 256 })
	c := claims()
	keys := make([]string, 512)
	for i := range keys {
		keys[i] = "session-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Token(keys[i%len(keys)], c); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkTokenMiss: a session's first request in a half lifetime.
func BenchmarkTokenMiss(b *testing.B) { benchMiss(b, "ES256") }

// BenchmarkTokenMissRS256: the same with an RSA key.
func BenchmarkTokenMissRS256(b *testing.B) { benchMiss(b, "RS256") }

// BenchmarkTokenMissEdDSA: the same with an Ed25519 key.
func BenchmarkTokenMissEdDSA(b *testing.B) { benchMiss(b, "EdDSA") }
