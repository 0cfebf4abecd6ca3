package caddymodule

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/testredis"
	"github.com/gatehouse-auth/gatehouse/session"
)

// benchServe runs r through g b.N times, restoring r's headers each time
// (the handler rewrites them), with a fresh replacer per request as Caddy
// makes one (caddy.NewReplacer: 2 allocations of the figures) and Caddy's
// request variables, so the figures are the handler's own plus that.
func benchServe(b *testing.B, g *Gatehouse, r *http.Request, wantStatus int) {
	b.Helper()
	orig := r.Header.Clone()
	holder := &replHolder{}
	// Caddy's request variables, as its server sets them on every request;
	// cleared and set again each time, so a variable the handler adds shows
	// as what it costs.
	vars := map[string]any{}
	r = r.WithContext(context.WithValue(context.WithValue(r.Context(), caddy.ReplacerCtxKey, holder), caddyhttp.VarsCtxKey, vars))
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(r.Header)
		maps.Copy(r.Header, orig)
		clear(w.h)
		clear(vars)
		vars[caddyhttp.TrustedProxyVarKey], vars[caddyhttp.ClientIPVarKey] = false, "127.0.0.1"
		w.status = http.StatusOK
		rr := r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if err := g.ServeHTTP(w, rr, next); err != nil {
			b.Fatal(err)
		}
		if w.status != wantStatus {
			b.Fatalf("status %d", w.status)
		}
	}
}

type replHolder struct{}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

func BenchmarkHandlerBearerCacheHit(b *testing.B) {
	idp := newIDP(b)
	g := bearerHandler(b, idp, nil)
	r := apiRequest("Bearer " + mint(b, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour))
	benchServe(b, g, r, http.StatusOK)
}

// realisticBearer returns a bearer handler and n distinct access tokens
// of a real provider's size (devidp.Config.RealisticAccessTokens: about
// 1.2 KB with RS256), as `make bench` sends them.
func realisticBearer(b *testing.B, n, cacheSize int) (*Gatehouse, []string) {
	idp, _ := newConfiguredIDP(b, func(c *devidp.Config) { c.RealisticAccessTokens = true })
	g := bearerHandler(b, idp, func(g *Gatehouse) { g.Bearer.CacheSize = cacheSize })
	toks := make([]string, n)
	for i := range toks {
		toks[i] = mint(b, idp, "alice", []string{apiAudience}, []string{"openid", "orders:read"}, time.Hour)
	}
	b.ReportMetric(float64(len(toks[0])), "token-bytes")
	return g, toks
}

// BenchmarkHandlerBearerRealisticCacheHit: a client repeating a 1.2 KB
// token, through the whole handler.
func BenchmarkHandlerBearerRealisticCacheHit(b *testing.B) {
	g, toks := realisticBearer(b, 1, 0)
	benchServe(b, g, apiRequest("Bearer "+toks[0]), http.StatusOK)
}

// BenchmarkHandlerBearerRealisticCacheMiss: a new 1.2 KB RS256 token on
// every request (more tokens than the cache holds, cycled), through the
// whole handler: a signature check, the claims decoded and mapped.
func BenchmarkHandlerBearerRealisticCacheMiss(b *testing.B) {
	g, toks := realisticBearer(b, 512, 256)
	reqs := make([]*http.Request, len(toks))
	for i, tok := range toks {
		reqs[i] = apiRequest("Bearer " + tok)
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		i++
		clear(w.h)
		w.status = http.StatusOK
		rr := r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		rr.Header = http.Header{"Accept": r.Header["Accept"], "Authorization": r.Header["Authorization"]}
		if err := g.ServeHTTP(w, rr, next); err != nil {
			b.Fatal(err)
		}
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

func benchSession(b *testing.B, mod func(*Gatehouse), edit func(*session.Session)) {
	idp := newIDP(b)
	g := newHandler(b, idp.Issuer(), mod)
	sess := aliceSession()
	if edit != nil {
		edit(sess)
	}
	cookies := sessionCookies(b, g, sess)
	r := httptest.NewRequest("GET", "/app", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
	r.Header.Set("Connection", "keep-alive") // what HTTP/1.1 browsers send
	b.ReportMetric(float64(len(cookies)), "cookies")
	benchServe(b, g, r, http.StatusOK)
}

func BenchmarkHandlerSession1Chunk(b *testing.B) { benchSession(b, nil, nil) }

// BenchmarkHandlerSession3Chunks: a session padded with 5 KB that does
// not compress.
func BenchmarkHandlerSession3Chunks(b *testing.B) {
	benchSession(b, nil, func(s *session.Session) {
		pad := make([]byte, 5000)
		rand.Read(pad)
		s.Claims = map[string][]string{"pad": {string(pad)}}
	})
}

// BenchmarkHandlerSession30Groups: a directory user's 30 groups go
// upstream in X-Forwarded-Groups.
func BenchmarkHandlerSession30Groups(b *testing.B) {
	benchSession(b, nil, func(s *session.Session) {
		s.Groups = nil
		for i := range 30 {
			s.Groups = append(s.Groups, fmt.Sprintf("department-%03d-engineering-group", i))
		}
	})
}

// BenchmarkHandlerSessionRedis: the session in a real Redis, read through
// the client-side cache.
func BenchmarkHandlerSessionRedis(b *testing.B) {
	srv := testredis.Start(b)
	benchSession(b, func(g *Gatehouse) { g.Store = &StoreConfig{Redis: &RedisConfig{Address: srv.Addr()}} }, nil)
}

func BenchmarkHandlerUnauthenticatedRedirect(b *testing.B) {
	idp := newIDP(b)
	g := newHandler(b, idp.Issuer(), nil)
	g.logger = zap.NewNop() // as in production: "login started" is a debug line
	benchServe(b, g, navigation("GET", "/app?x=1"), http.StatusFound)
}

// BenchmarkBaselineReplacerAndContext is what benchServe adds to each
// request itself (Caddy pays it anyway): subtract it from the handler
// figures.
func BenchmarkBaselineReplacerAndContext(b *testing.B) {
	r := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	}
}
