package session

import (
	"net/http"
	"strings"
	"testing"
)

// realisticSession is about what a login leaves: a JWT access token, an ID
// token, a refresh token and a few groups.
func realisticSession(extra int) *Session {
	s := testSession(epoch)
	s.AccessToken = strings.Repeat("a", 600)
	s.IDToken = strings.Repeat("i", 800)
	s.RefreshToken = strings.Repeat("r", 200)
	if extra > 0 {
		s.Claims = map[string][]string{"pad": {noise(extra)}}
	}
	return s
}

func benchLoad(b *testing.B, extra, cacheSize int, wantChunks int) {
	c := &clock{epoch}
	s, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: DefaultLifetime, CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	cookies := save(b, s, request(nil), realisticSession(extra))
	if len(cookies) != wantChunks {
		b.Fatalf("%d chunks, want %d", len(cookies), wantChunks)
	}
	r := request(cookies)
	r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Load(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnseal1Chunk(b *testing.B)      { benchLoad(b, 0, -1, 1) }
func BenchmarkUnseal3Chunks(b *testing.B)     { benchLoad(b, 5000, -1, 3) }
func BenchmarkLoadCached1Chunk(b *testing.B)  { benchLoad(b, 0, 0, 1) }
func BenchmarkLoadCached3Chunks(b *testing.B) { benchLoad(b, 5000, 0, 3) }
