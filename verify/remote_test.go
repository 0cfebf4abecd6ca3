package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

// jwksServer is a provider's JWKS endpoint whose keys, availability and
// fetch count the test controls.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...*jwttest.Key) *jwksServer {
	s := &jwksServer{body: jwttest.JWKS(keys...), status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(keys ...*jwttest.Key) {
	s.mu.Lock()
	s.body = jwttest.JWKS(keys...)
	s.mu.Unlock()
}

func (s *jwksServer) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newRemote(t *testing.T, url string, c *testClock) *RemoteKeySet {
	t.Helper()
	ks, err := NewRemoteKeySet(context.Background(), url, RemoteOptions{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	return ks
}

func TestRemoteFetchesOnceAndCaches(t *testing.T) {
	k := jwttest.NewKey("k1", "RS256")
	srv := newJWKSServer(t, k)
	ks := newRemote(t, srv.URL, &testClock{t: epoch})
	v := newVerifier(t, ks)
	if srv.fetches.Load() != 0 {
		t.Fatal("NewRemoteKeySet fetched eagerly")
	}
	for range 50 {
		if _, err := v.Verify(context.Background(), k.Sign(validClaims(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 50 verifications, want 1", n)
	}
}

func TestRemoteKeyRotation(t *testing.T) {
	oldKey := jwttest.NewKey("2026-10", "RS256")
	newKey := jwttest.NewKey("2026-11", "RS256")
	srv := newJWKSServer(t, oldKey)
	c := &testClock{t: epoch}
	ks := newRemote(t, srv.URL, c)
	v := newVerifier(t, ks)
	oldToken := oldKey.Sign(validClaims(), nil)
	if _, err := v.Verify(context.Background(), oldToken); err != nil {
		t.Fatal(err)
	}

	// The provider rotates: it publishes the new key next to the old one
	// and signs new tokens with it.
	srv.publish(newKey, oldKey)
	c.advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(context.Background(), newKey.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one refetch for the new kid)", n)
	}
	if _, err := v.Verify(context.Background(), oldToken); err != nil {
		t.Fatalf("old token while the old key is still published: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after verifying known kids, want 2", n)
	}
}

func TestRemoteDownThenUp(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	srv.setStatus(http.StatusServiceUnavailable)
	c := &testClock{t: epoch}
	v := newVerifier(t, newRemote(t, srv.URL, c))
	token := k.Sign(validClaims(), nil)

	for range 10 {
		if _, err := v.Verify(context.Background(), token); !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("JWKS down: err = %v, want ErrKeysUnavailable", err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches while down within one interval, want 1", n)
	}

	srv.setStatus(http.StatusOK)
	c.advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("JWKS back up: %v", err)
	}
}

func TestRemoteOutageKeepsCachedKeys(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	c := &testClock{t: epoch}
	v := newVerifier(t, newRemote(t, srv.URL, c))
	token := k.Sign(validClaims(), nil)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	srv.setStatus(http.StatusInternalServerError)
	srv.publish() // and an empty set, should it come back
	c.advance(time.Hour)
	if _, err := v.Verify(context.Background(), jwttest.NewKey("other", "ES256").Sign(validClaims(), nil)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid during outage: %v", err)
	}
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("cached key during outage: %v", err)
	}
	// A reachable provider publishing an empty set does not wipe the keys either.
	srv.setStatus(http.StatusOK)
	c.advance(time.Hour)
	_, _ = v.Verify(context.Background(), jwttest.NewKey("other2", "ES256").Sign(validClaims(), nil))
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("cached key after an empty JWKS: %v", err)
	}
}

func TestRemoteRandomKidFlood(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	c := &testClock{t: epoch}
	v := newVerifier(t, newRemote(t, srv.URL, c))
	if _, err := v.Verify(context.Background(), k.Sign(validClaims(), nil)); err != nil {
		t.Fatal(err)
	}
	c.advance(DefaultMinRefetchInterval)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := jwttest.Raw(map[string]any{"alg": "ES256", "kid": fmt.Sprintf("random-%d", i)}, validClaims(), func([]byte) []byte { return make([]byte, 64) })
			if _, err := v.Verify(context.Background(), tok); err == nil {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 0 {
		t.Fatal("a token with a random kid was accepted")
	}
	if n := srv.fetches.Load(); n > 2 {
		t.Fatalf("1000 random kids caused %d JWKS fetches, want at most 2", n)
	}
	t.Logf("1000 random kids: %d JWKS fetches in all", srv.fetches.Load())
}

func TestRemoteHostileJWKS(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	token := k.Sign(validClaims(), nil)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"keys":[`))
			w.Write([]byte(strings.Repeat(" ", 2<<20)))
		}},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			ks, err := NewRemoteKeySet(context.Background(), srv.URL, RemoteOptions{
				HTTPClient: httpx.NewClient(nil, 300*time.Millisecond, 0),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ks.Close()
			v := newVerifier(t, ks)
			if _, err := v.Verify(context.Background(), token); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("err = %v, want ErrKeysUnavailable", err)
			}
		})
	}
}

func TestRemoteCallerContextBoundsTheWait(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	ks := newRemote(t, srv.URL, &testClock{t: epoch})
	v := newVerifier(t, ks)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, jwttest.NewKey("k", "ES256").Sign(validClaims(), nil)); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestRemoteCloseStopsGoroutines(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	before := runtime.NumGoroutine()
	for range 20 {
		ks, err := NewRemoteKeySet(context.Background(), srv.URL, RemoteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v := newVerifier(t, ks)
		if _, err := v.Verify(context.Background(), k.Sign(validClaims(), nil)); err != nil {
			t.Fatal(err)
		}
		ks.Close()
	}
	srv.CloseClientConnections()
	http.DefaultClient.CloseIdleConnections()
	var after int
	for range 100 {
		after = runtime.NumGoroutine()
		if after <= before+2 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("goroutines: %d before, %d after closing 20 key sets", before, after)
}

// TestRemoteRotationSoonAfterAFetch (issue 10, defect 3): a key rotation
// seconds after a fetch is picked up at once — the unknown kid used to
// wait out the refetch limit that the earlier fetch had started, and
// logins failed meanwhile. Repeated unknown kids stay limited.
func TestRemoteRotationSoonAfterAFetch(t *testing.T) {
	oldKey := jwttest.NewKey("2026-10", "RS256")
	newKey := jwttest.NewKey("2026-11", "RS256")
	srv := newJWKSServer(t, oldKey)
	c := &testClock{t: epoch}
	v := newVerifier(t, newRemote(t, srv.URL, c))
	if _, err := v.Verify(context.Background(), oldKey.Sign(validClaims(), nil)); err != nil {
		t.Fatal(err)
	}
	srv.publish(newKey, oldKey)
	c.advance(2 * time.Second)
	if _, err := v.Verify(context.Background(), newKey.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("a token signed with the key published 2s after the last fetch: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	for i := range 50 {
		tok := jwttest.Raw(map[string]any{"alg": "RS256", "kid": fmt.Sprintf("bogus-%d", i)}, validClaims(), func([]byte) []byte { return make([]byte, 256) })
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Fatal("a bogus kid was accepted")
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("50 bogus kids right after the rotation fetch caused %d fetches, want none more", n-2)
	}
}

// TestRemoteJWKSWithUnknownKeyType (issue 10, defect 4): a JWKS that also
// holds keys jwx cannot parse (a post-quantum kty, a made-up one, a broken
// RSA key) still serves its usable keys (RFC 7517 §5); each skipped key is
// logged once, not on every fetch.
func TestRemoteJWKSWithUnknownKeyType(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	usable := strings.TrimSuffix(strings.TrimPrefix(string(jwttest.JWKS(k)), `{"keys":[`), `]}`)
	srv.mu.Lock()
	srv.body = []byte(`{"keys":[{"kty":"AKP","alg":"ML-DSA-65","kid":"pq-1","pub":"AAAA"},` + usable +
		`,{"kty":"made-up","kid":"x"},{"kty":"RSA","kid":"broken","n":17,"e":"AQAB"}]}`)
	srv.mu.Unlock()
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	c := &testClock{t: epoch}
	ks, err := NewRemoteKeySet(context.Background(), srv.URL, RemoteOptions{Now: c.now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	v := newVerifier(t, ks)
	if _, err := v.Verify(context.Background(), k.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("the usable key of a JWKS with unknown key types: %v", err)
	}
	c.advance(DefaultMinRefetchInterval)
	ks.refresh(context.Background()) // a second fetch of the same document
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, kid := range []string{"pq-1", "x", "broken"} {
		if n := strings.Count(logs.String(), "kid="+kid+" "); n != 1 {
			t.Errorf("key %q logged %d times, want once:\n%s", kid, n, logs.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRemoteErrAndProbe: Err says whether the latest fetch worked; Probe
// fetches again at most once per refetch interval (issue 10, defect 9:
// what tells a login that the provider is down, and back).
func TestRemoteErrAndProbe(t *testing.T) {
	k := jwttest.NewKey("k1", "ES256")
	srv := newJWKSServer(t, k)
	c := &testClock{t: epoch}
	ks := newRemote(t, srv.URL, c)
	if ks.Err() != nil {
		t.Fatal("Err before any fetch")
	}
	if err := ks.Probe(context.Background()); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("probe of a healthy provider: %v (%d fetches)", err, srv.fetches.Load())
	}
	srv.setStatus(http.StatusServiceUnavailable)
	if err := ks.Probe(context.Background()); err == nil || ks.Err() == nil {
		t.Fatal("probe of a provider answering 503 succeeded")
	}
	srv.setStatus(http.StatusOK)
	if err := ks.Probe(context.Background()); err == nil || srv.fetches.Load() != 2 {
		t.Fatalf("a probe within the refetch interval fetched (%d fetches) or forgot the failure", srv.fetches.Load())
	}
	c.advance(DefaultMinRefetchInterval)
	if err := ks.Probe(context.Background()); err != nil || ks.Err() != nil {
		t.Fatalf("probe once the provider is back: %v", err)
	}
}

// TestKidlessTokenNeedsOneFittingKey (review SA2-27): a token without kid
// is checked against the one key that fits, never tried against many.
func TestKidlessTokenNeedsOneFittingKey(t *testing.T) {
	k1, k2 := jwttest.NewKey("k1", "RS256"), jwttest.NewKey("k2", "RS256")
	noKid := func(k *jwttest.Key) string {
		unnamed := *k
		unnamed.KID = ""
		return unnamed.Sign(validClaims(), nil)
	}
	one := newVerifier(t, newRemote(t, newJWKSServer(t, k1).URL, &testClock{t: epoch}))
	if _, err := one.Verify(context.Background(), noKid(k1)); err != nil {
		t.Fatalf("no kid, one key: %v", err)
	}
	two := newVerifier(t, newRemote(t, newJWKSServer(t, k1, k2).URL, &testClock{t: epoch}))
	if _, err := two.Verify(context.Background(), noKid(k2)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("no kid, two fitting keys: %v", err)
	}
}

// TestWithdrawnKeyStopsVerifyingCachedTokens (review SA2-11): a token
// verified and cached under a key the provider later withdraws is not
// served from the cache once a fetch brings the new key set.
func TestWithdrawnKeyStopsVerifyingCachedTokens(t *testing.T) {
	compromised := jwttest.NewKey("old", "RS256")
	replacement := jwttest.NewKey("new", "RS256")
	srv := newJWKSServer(t, compromised)
	c := &testClock{t: epoch}
	ks := newRemote(t, srv.URL, c)
	v, err := New(Config{Issuer: testIssuer, Audiences: []string{testAudience}, Keys: ks, Now: c.now, CacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	old := compromised.Sign(validClaims(), nil)
	for range 2 {
		if _, err := v.Verify(context.Background(), old); err != nil {
			t.Fatal(err)
		}
	}
	srv.publish(replacement) // the provider withdraws the key
	c.advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(context.Background(), replacement.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if _, err := v.Verify(context.Background(), old); err == nil {
		t.Fatal("a cached token of the withdrawn key still verifies")
	}
}
