package flow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/verify"
)

const opaqueToken = "2YotnFZFEjr1zCsicMWpAA.opaque-token-of-alice"

// introspection is an RFC 7662 endpoint whose answers the test decides,
// counting the calls it receives.
type introspection struct {
	*httptest.Server
	calls atomic.Int64

	mu      sync.Mutex
	answer  func(w http.ResponseWriter, token string) // default: activeAnswer
	gate    chan struct{}                             // when set, each call waits for it
	form    url.Values
	header  http.Header
	entered chan struct{} // when set, signalled as a call arrives
}

func newIntrospection(t *testing.T) *introspection {
	s := &introspection{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		r.ParseForm()
		s.mu.Lock()
		s.form, s.header = r.PostForm, r.Header.Clone()
		answer, gate, entered := s.answer, s.gate, s.entered
		s.mu.Unlock()
		if entered != nil {
			entered <- struct{}{}
		}
		if gate != nil {
			<-gate
		}
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if answer == nil {
			answer = func(w http.ResponseWriter, token string) { writeJSON(w, activeAnswer(s.URL)) }
		}
		answer(w, r.PostForm.Get("token"))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *introspection) set(f func(s *introspection)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// answers makes the endpoint answer body (JSON) for every token.
func (s *introspection) answers(body any) {
	s.set(func(s *introspection) {
		s.answer = func(w http.ResponseWriter, _ string) { writeJSON(w, body) }
	})
}

func writeJSON(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json")
	if s, ok := body.(string); ok {
		w.Write([]byte(s))
		return
	}
	json.NewEncoder(w).Encode(body)
}

// activeAnswer is a Keycloak-like answer for an active access token, with
// the issuer of the scripted provider iss.
func activeAnswer(iss string) map[string]any {
	return map[string]any{
		"active": true, "iss": iss, "sub": "user-1", "username": "alice",
		"client_id": "spa", "aud": []string{apiAudience, "account"}, "token_type": "Bearer", "typ": "Bearer",
		"scope": "openid orders:read", "exp": epoch.Add(time.Hour).Unix(), "iat": epoch.Unix(),
		"email": "alice@example.com", "groups": []string{"staff"},
		"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
	}
}

// newIntrospector returns an Introspector of a Client of a scripted
// provider, asking s (unless mod says otherwise), on a test clock.
func newIntrospector(t *testing.T, s *introspection, mod ...func(*ProviderOptions, *ClientOptions, *IntrospectorOptions)) (*Introspector, *scripted, *testClock) {
	t.Helper()
	p := newScripted(t)
	clock := &testClock{t: epoch}
	iopts := IntrospectorOptions{Endpoint: s.URL, Now: clock.now}
	c := newClient(t, p, func(po *ProviderOptions, co *ClientOptions) {
		for _, m := range mod {
			m(po, co, &iopts)
		}
	})
	iopts.Client = c
	if iopts.Issuer == "" {
		iopts.Issuer = s.URL // the answers name the endpoint's URL as iss
	}
	i, err := NewIntrospector(iopts)
	if err != nil {
		t.Fatal(err)
	}
	return i, p, clock
}

func TestNewIntrospectorRejects(t *testing.T) {
	prov, err := NewProvider(context.Background(), ProviderOptions{Issuer: "https://idp.example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.Close)
	c, err := NewClient(ClientOptions{Provider: prov, ClientID: "id", ClientSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts IntrospectorOptions
	}{
		{"no client", IntrospectorOptions{Endpoint: "https://idp.example/introspect"}},
		{"relative endpoint", IntrospectorOptions{Client: c, Endpoint: "/introspect"}},
		{"endpoint with a fragment", IntrospectorOptions{Client: c, Endpoint: "https://idp.example/introspect#x"}},
		{"http endpoint for an https issuer", IntrospectorOptions{Client: c, Endpoint: "http://idp.example/introspect"}},
		{"empty audience", IntrospectorOptions{Client: c, Audiences: []string{""}}},
		{"negative active TTL", IntrospectorOptions{Client: c, ActiveTTL: -time.Second}},
		{"negative inactive TTL", IntrospectorOptions{Client: c, InactiveTTL: -time.Second}},
		{"huge clock skew", IntrospectorOptions{Client: c, ClockSkew: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewIntrospector(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestIntrospectRefuses: each answer says, one way or another, that the
// token must not be accepted: a token error (401), never a success.
func TestIntrospectRefuses(t *testing.T) {
	with := func(iss, name string, value any) map[string]any {
		a := activeAnswer(iss)
		if value == nil {
			delete(a, name)
		} else {
			a[name] = value
		}
		return a
	}
	for _, tc := range []struct {
		name   string
		answer func(iss string) any
		opts   func(*IntrospectorOptions)
		want   error
	}{
		{"active false", func(string) any { return `{"active":false}` }, nil, ErrInactiveToken},
		{"active the string true", func(iss string) any { return with(iss, "active", "true") }, nil, ErrInactiveToken},
		{"active 1", func(iss string) any { return with(iss, "active", 1) }, nil, ErrInactiveToken},
		{"active missing", func(iss string) any { return with(iss, "active", nil) }, nil, ErrInactiveToken},
		{"active null", func(string) any { return `{"active":null,"sub":"user-1"}` }, nil, ErrInactiveToken},
		{"exp past", func(iss string) any { return with(iss, "exp", epoch.Add(-DefaultBearerClockSkew).Unix()) }, nil, ErrInactiveToken},
		{"nbf ahead", func(iss string) any { return with(iss, "nbf", epoch.Add(time.Hour).Unix()) }, nil, ErrInactiveToken},
		{"another issuer", func(string) any { return with("https://evil.example", "iss", "https://evil.example") }, nil, verify.ErrIssuer},
		{"issuer with a trailing slash", func(iss string) any { return with(iss, "iss", iss+"/") }, nil, verify.ErrIssuer},
		{"another audience", func(iss string) any { return with(iss, "aud", "api://billing") },
			func(o *IntrospectorOptions) { o.Audiences = []string{apiAudience} }, verify.ErrAudience},
		{"Keycloak refresh token", func(iss string) any { return with(iss, "typ", "Refresh") }, nil, ErrNotAnAccessToken},
		{"Keycloak offline token", func(iss string) any { return with(iss, "typ", "Offline") }, nil, ErrNotAnAccessToken},
		{"Hydra refresh token", func(iss string) any { return with(iss, "token_use", "refresh_token") }, nil, ErrNotAnAccessToken},
		{"token_type refresh_token", func(iss string) any { return with(iss, "token_type", "refresh_token") }, nil, ErrNotAnAccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIntrospection(t)
			s.answers(tc.answer(s.URL))
			i, _, _ := newIntrospector(t, s, func(_ *ProviderOptions, _ *ClientOptions, o *IntrospectorOptions) {
				if tc.opts != nil {
					tc.opts(o)
				}
			})
			in, err := i.Introspect(context.Background(), opaqueToken)
			if !errors.Is(err, tc.want) || !errors.Is(err, verify.ErrInvalidToken) || errors.Is(err, ErrProviderUnavailable) {
				t.Fatalf("err = %v, want %v (an invalid token)", err, tc.want)
			}
			if in != nil {
				t.Fatal("an answer returned with an error")
			}
			if strings.Contains(err.Error(), opaqueToken) {
				t.Fatal("the error quotes the token")
			}
			if st := i.Stats(); st.Invalid != 1 || st.Valid != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}

	// The unchanged answer is accepted, so each case failed for its reason.
	s := newIntrospection(t)
	i, _, _ := newIntrospector(t, s, func(_ *ProviderOptions, _ *ClientOptions, o *IntrospectorOptions) {
		o.Audiences = []string{apiAudience}
	})
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatal(err)
	}
}

// TestIntrospectUnavailable: answers that say nothing about the token are
// provider trouble (503), never a token verdict, and are not remembered.
func TestIntrospectUnavailable(t *testing.T) {
	status := func(code int) func(w http.ResponseWriter, _ string) {
		return func(w http.ResponseWriter, _ string) { w.WriteHeader(code) }
	}
	body := func(ct, b string) func(w http.ResponseWriter, _ string) {
		return func(w http.ResponseWriter, _ string) {
			w.Header().Set("Content-Type", ct)
			w.Write([]byte(b))
		}
	}
	pad := strings.Repeat("x", MaxIntrospectionResponse)
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, token string)
		say    string // in the error
	}{
		{"500", status(http.StatusInternalServerError), "answered 500"},
		{"503", status(http.StatusServiceUnavailable), "answered 503"},
		{"404", status(http.StatusNotFound), "answered 404"},
		{"401: our client credentials", status(http.StatusUnauthorized), "client credentials"},
		{"403", status(http.StatusForbidden), "client credentials"},
		{"not JSON", body("text/html", "<html>login</html>"), "not a usable JSON object"},
		{"a JSON array", body("application/json", `[{"active":true}]`), "not a usable JSON object"},
		{"JSON null", body("application/json", `null`), "not a usable JSON object"},
		{"trailing data", body("application/json", `{"active":true}{"active":false}`), "not a usable JSON object"},
		{"exp a string", body("application/json", `{"active":true,"exp":"1700000000"}`), "not a usable JSON object"},
		{"aud a number", body("application/json", `{"active":true,"aud":7}`), "not a usable JSON object"},
		{"scope an array", body("application/json", `{"active":true,"scope":["a"]}`), "not a usable JSON object"},
		{"oversized", body("application/json", `{"active":true,"pad":"`+pad+`"}`), "exceeds"},
		{"a signed answer", body("application/token-introspection+jwt", "eyJ.eyJ.sig"), "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIntrospection(t)
			s.set(func(s *introspection) { s.answer = tc.answer })
			i, _, _ := newIntrospector(t, s)
			for range 2 {
				_, err := i.Introspect(context.Background(), opaqueToken)
				if !errors.Is(err, ErrProviderUnavailable) || errors.Is(err, verify.ErrInvalidToken) {
					t.Fatalf("err = %v, want ErrProviderUnavailable only", err)
				}
				if !strings.Contains(err.Error(), tc.say) {
					t.Fatalf("err = %v, want it to say %q", err, tc.say)
				}
				if strings.Contains(err.Error(), opaqueToken) {
					t.Fatal("the error quotes the token")
				}
			}
			if n := s.calls.Load(); n != 2 {
				t.Fatalf("%d calls, want 2: a non-answer is not remembered", n)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		s := newIntrospection(t)
		i, _, _ := newIntrospector(t, s)
		s.Close()
		if _, err := i.Introspect(context.Background(), opaqueToken); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("err = %v", err)
		}
		if st := i.Stats(); st.Unavailable != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestIntrospectActive: an active answer, the request that asked for it,
// and the claims it yields.
func TestIntrospectActive(t *testing.T) {
	s := newIntrospection(t)
	i, _, _ := newIntrospector(t, s, func(_ *ProviderOptions, _ *ClientOptions, o *IntrospectorOptions) {
		o.RequiredScopes = []string{"orders:read"}
		o.Audiences = []string{apiAudience}
	})
	in, err := i.Introspect(context.Background(), opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if in.Subject != "user-1" || in.Username != "alice" || in.ClientID != "spa" || in.Issuer != s.URL ||
		in.TokenType != "Bearer" || !in.Expiry.Equal(epoch.Add(time.Hour)) || !in.IssuedAt.Equal(epoch) ||
		strings.Join(in.Audience, " ") != apiAudience+" account" || strings.Join(in.Scopes, " ") != "openid orders:read" {
		t.Fatalf("introspection %+v", in)
	}
	m := in.Map()
	if m["email"] != "alice@example.com" || m["active"] != true || m["exp"] != json.Number(fmt.Sprint(epoch.Add(time.Hour).Unix())) {
		t.Fatalf("map %v", m)
	}
	if jkt, ok := verify.ConfirmationThumbprint(m); !ok || jkt != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Fatalf("cnf.jkt %q, %v", jkt, ok)
	}

	// RFC 7662 §2.1: a form POST with the token and its type hint, asking
	// for JSON, authenticated as the client (client_secret_basic here).
	s.mu.Lock()
	form, h := s.form, s.header
	s.mu.Unlock()
	if form.Get("token") != opaqueToken || form.Get("token_type_hint") != "access_token" || form.Has("client_secret") || len(form) != 2 {
		t.Fatalf("form %v", form)
	}
	if h.Get("Content-Type") != "application/x-www-form-urlencoded" || h.Get("Accept") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	// RFC 6749 §2.3.1: the id and secret are form-encoded, then Basic.
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(clientSecret)))
	if got := h.Get("Authorization"); got != want {
		t.Fatalf("Authorization %q, want %q", got, want)
	}
	if !strings.Contains(want, base64.StdEncoding.EncodeToString([]byte("gatehouse-test:s3cret+with+spaces+%26+symbols"))) {
		t.Fatal("the expected header is not form-encoded")
	}

	// A token without a required scope.
	s.answers(func() map[string]any { a := activeAnswer(s.URL); a["scope"] = "openid"; return a }())
	var scopeErr *InsufficientScopeError
	if _, err := i.Introspect(context.Background(), "another-token"); !errors.As(err, &scopeErr) || scopeErr.Missing[0] != "orders:read" {
		t.Fatalf("err = %v, want InsufficientScopeError", err)
	}
}

func TestIntrospectClientSecretPost(t *testing.T) {
	s := newIntrospection(t)
	i, _, _ := newIntrospector(t, s, func(_ *ProviderOptions, co *ClientOptions, _ *IntrospectorOptions) {
		co.ClientAuth = AuthPost
	})
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.form.Get("client_id") != clientID || s.form.Get("client_secret") != clientSecret || s.form.Get("token") != opaqueToken {
		t.Fatalf("form %v", s.form)
	}
	if auth := s.header.Get("Authorization"); auth != "" {
		t.Fatalf("Authorization %q sent with client_secret_post", auth)
	}
}

// TestIntrospectCachesActive: an active answer is trusted until the
// token's exp or ActiveTTL, whichever comes first; then the provider is
// asked again, and a revoked token is refused.
func TestIntrospectCachesActive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exp   time.Time
		until time.Duration
	}{
		{"until exp", epoch.Add(30 * time.Second), 30 * time.Second},
		{"until the TTL", epoch.Add(time.Hour), DefaultIntrospectionActiveTTL},
		{"until the TTL, no exp", time.Time{}, DefaultIntrospectionActiveTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIntrospection(t)
			a := activeAnswer(s.URL)
			if tc.exp.IsZero() {
				delete(a, "exp")
			} else {
				a["exp"] = tc.exp.Unix()
			}
			s.answers(a)
			i, _, clock := newIntrospector(t, s)
			for range 3 {
				if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
					t.Fatal(err)
				}
			}
			clock.advance(tc.until - time.Second)
			if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
				t.Fatal(err)
			}
			if n := s.calls.Load(); n != 1 {
				t.Fatalf("%d calls before the answer lapsed, want 1", n)
			}
			s.answers(`{"active":false}`) // revoked meanwhile
			clock.advance(time.Second)
			if _, err := i.Introspect(context.Background(), opaqueToken); !errors.Is(err, ErrInactiveToken) {
				t.Fatalf("revoked token after the answer lapsed: %v", err)
			}
			if n := s.calls.Load(); n != 2 {
				t.Fatalf("%d calls, want 2", n)
			}
			if st := i.Stats(); st.CacheHits != 3 || st.CacheMisses != 2 || st.Valid != 4 || st.Invalid != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestIntrospectCachesInactive: a refusal is remembered for InactiveTTL.
func TestIntrospectCachesInactive(t *testing.T) {
	s := newIntrospection(t)
	s.answers(`{"active":false}`)
	i, _, clock := newIntrospector(t, s)
	for range 3 {
		if _, err := i.Introspect(context.Background(), opaqueToken); !errors.Is(err, ErrInactiveToken) {
			t.Fatal(err)
		}
	}
	clock.advance(DefaultIntrospectionInactiveTTL - time.Second)
	i.Introspect(context.Background(), opaqueToken)
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d calls within the inactive TTL, want 1", n)
	}
	s.answers(activeAnswer(s.URL)) // e.g. a token issued a moment ago at another node
	clock.advance(time.Second)
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatalf("after the inactive TTL: %v", err)
	}
	if n := s.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
}

// TestIntrospectProviderDown: a remembered active answer keeps working
// while the provider is down, until it lapses; a token not seen before is
// ErrProviderUnavailable; when the provider is back, it is asked at once.
func TestIntrospectProviderDown(t *testing.T) {
	s := newIntrospection(t)
	i, _, clock := newIntrospector(t, s)
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatal(err)
	}
	s.set(func(s *introspection) {
		s.answer = func(w http.ResponseWriter, _ string) { w.WriteHeader(http.StatusBadGateway) }
	})
	clock.advance(30 * time.Second)
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatalf("remembered token while the provider is down: %v", err)
	}
	if _, err := i.Introspect(context.Background(), "a-new-token"); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("new token while the provider is down: %v", err)
	}
	clock.advance(DefaultIntrospectionActiveTTL)
	if _, err := i.Introspect(context.Background(), opaqueToken); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("lapsed answer while the provider is down: %v", err)
	}
	s.set(func(s *introspection) { s.answer = nil })
	if _, err := i.Introspect(context.Background(), "a-new-token"); err != nil {
		t.Fatalf("the provider is back: %v", err)
	}
	if n := s.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4", n)
	}
}

// TestIntrospectSharesCalls: concurrent requests with the same token
// share one call to the provider.
func TestIntrospectSharesCalls(t *testing.T) {
	s := newIntrospection(t)
	gate := make(chan struct{})
	s.set(func(s *introspection) { s.gate = gate })
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open)
	i, _, _ := newIntrospector(t, s)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := i.Introspect(context.Background(), opaqueToken)
			errs <- err
		}()
	}
	// The provider answers once every request has missed the cache: each
	// then joins the call in flight, or (scheduled late) finds its answer
	// in the cache. Without the shared call, each would ask.
	for i.misses.Load() < n || s.calls.Load() < 1 {
		runtime.Gosched()
	}
	open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := s.calls.Load(); c != 1 {
		t.Fatalf("%d introspection calls for %d concurrent requests, want 1", c, n)
	}
}

// TestIntrospectCancelledWaiter: a request that gives up does not end the
// call others wait for.
func TestIntrospectCancelledWaiter(t *testing.T) {
	s := newIntrospection(t)
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	s.set(func(s *introspection) { s.gate, s.entered = gate, entered })
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // before the server closes, even when the test fails
	i, _, _ := newIntrospector(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := i.Introspect(ctx, opaqueToken)
		first <- err
	}()
	<-entered
	second := make(chan error, 1)
	go func() {
		_, err := i.Introspect(context.Background(), opaqueToken)
		second <- err
	}()
	cancel()
	if err := <-first; !errors.Is(err, ErrProviderUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	open()
	if err := <-second; err != nil {
		t.Fatalf("the other request: %v", err)
	}
	if c := s.calls.Load(); c != 1 {
		t.Fatalf("%d calls, want 1", c)
	}
}

// TestIntrospectDiscoveredEndpoint: without a configured endpoint, the
// provider's introspection_endpoint is used; without either, the token
// cannot be checked.
func TestIntrospectDiscoveredEndpoint(t *testing.T) {
	s := newIntrospection(t)
	i, p, _ := newIntrospector(t, s, func(_ *ProviderOptions, _ *ClientOptions, o *IntrospectorOptions) {
		o.Endpoint = ""
	})
	if _, err := i.Introspect(context.Background(), opaqueToken); !errors.Is(err, ErrProviderUnavailable) ||
		!strings.Contains(err.Error(), "no introspection_endpoint") {
		t.Fatalf("without an endpoint: %v", err)
	}

	s2 := newIntrospection(t)
	p2 := newScripted(t)
	p2.set(func(p *scripted) { p.doc["introspection_endpoint"] = s2.URL + "/introspect" })
	c := newClient(t, p2)
	i2, err := NewIntrospector(IntrospectorOptions{Client: c, Issuer: s2.URL, Now: (&testClock{t: epoch}).now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i2.Introspect(context.Background(), opaqueToken); err != nil {
		t.Fatal(err)
	}
	if s2.calls.Load() != 1 || s.calls.Load() != 0 {
		t.Fatalf("calls: %d discovered, %d other", s2.calls.Load(), s.calls.Load())
	}
	if p.discovery.Load() == 0 {
		t.Fatal("no discovery for the first introspector")
	}
}

func TestIntrospectTokenLimits(t *testing.T) {
	s := newIntrospection(t)
	i, _, _ := newIntrospector(t, s)
	if _, err := i.Introspect(context.Background(), ""); !errors.Is(err, verify.ErrInvalidToken) {
		t.Fatalf("empty token: %v", err)
	}
	if _, err := i.Introspect(context.Background(), strings.Repeat("t", verify.DefaultMaxTokenSize+1)); !errors.Is(err, verify.ErrTooLarge) {
		t.Fatalf("huge token: %v", err)
	}
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("%d calls for tokens refused up front", n)
	}
}

// FuzzParseIntrospection: any body is an answer or an error, never a
// panic; an answer is active.
func FuzzParseIntrospection(f *testing.F) {
	full, _ := json.Marshal(activeAnswer("https://idp.example"))
	for _, s := range []string{
		string(full), `{"active":true}`, `{"active":"true"}`, `{"active":false}`, `[]`, `null`, ``,
		`{"active":true,"exp":1e400}`, `{"active":true,"exp":-1}`, `{"active":true,"aud":["a",1]}`,
		`{"active":true}{}`, `{"active":true,"scope":"a  b"}`, `{"active":true,"nbf":1.5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := parseIntrospection(body)
		if err != nil {
			if in != nil {
				t.Fatal("an answer with an error")
			}
			if !errors.Is(err, ErrInactiveToken) && !errors.Is(err, errIntrospectionAnswer) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if in.Map()["active"] != true {
			t.Fatal("an answer that is not active")
		}
		otherTokenKind(in.Map())
	})
}

// BenchmarkIntrospectCacheHit: a client repeating its opaque token.
func BenchmarkIntrospectCacheHit(b *testing.B) {
	s := &introspection{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, activeAnswer(s.URL))
	}))
	defer s.Close()
	prov, err := NewProvider(context.Background(), ProviderOptions{Issuer: s.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer prov.Close()
	c, err := NewClient(ClientOptions{Provider: prov, ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		b.Fatal(err)
	}
	i, err := NewIntrospector(IntrospectorOptions{Client: c, Endpoint: s.URL, Now: func() time.Time { return epoch }})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := i.Introspect(context.Background(), opaqueToken); err != nil {
			b.Fatal(err)
		}
	}
}
