package assertion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestTokenRefuses: incomplete claims, an ended session and extra claims
// the package cannot carry give an error and no token.
func TestTokenRefuses(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	tests := []struct {
		name string
		mod  func(*Claims)
		want error
	}{
		{name: "no subject", mod: func(c *Claims) { c.Subject = "" }, want: ErrIncompleteClaims},
		{name: "no audience", mod: func(c *Claims) { c.Audience = "" }, want: ErrIncompleteClaims},
		{name: "no NotAfter", mod: func(c *Claims) { c.NotAfter = time.Time{} }, want: ErrIncompleteClaims},
		{name: "session ended", mod: func(c *Claims) { c.NotAfter = epoch.Add(-time.Second) }, want: ErrSessionEnded},
		{name: "session ends now", mod: func(c *Claims) { c.NotAfter = epoch }, want: ErrSessionEnded},
		{name: "session ends within the second", mod: func(c *Claims) { c.NotAfter = epoch.Add(999 * time.Millisecond) }, want: ErrSessionEnded},
		{name: "extra of a struct type", mod: func(c *Claims) { c.Extra = map[string]any{"x": struct{ A int }{1}} }, want: ErrExtraClaim},
		{name: "extra func", mod: func(c *Claims) { c.Extra = map[string]any{"x": func() {}} }, want: ErrExtraClaim},
		{name: "extra map of strings", mod: func(c *Claims) { c.Extra = map[string]any{"x": map[string]string{}} }, want: ErrExtraClaim},
		{name: "extra nested struct", mod: func(c *Claims) { c.Extra = map[string]any{"x": []any{"a", struct{}{}}} }, want: ErrExtraClaim},
		{name: "extra cycle", mod: func(c *Claims) { c.Extra = map[string]any{"x": cyclic} }, want: ErrExtraClaim},
		{name: "extra NaN", mod: func(c *Claims) { c.Extra = map[string]any{"x": zero / zero} }, want: ErrExtraClaim},
		{name: "extra without a name", mod: func(c *Claims) { c.Extra = map[string]any{"": "x"} }, want: ErrExtraClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := claims()
			tc.mod(&c)
			for _, key := range []string{"", "session-1"} {
				tok, err := s.Token(key, c)
				if !errors.Is(err, tc.want) || tok != "" {
					t.Errorf("Token(%q) = %q, %v; want no token, %v", key, tok, err, tc.want)
				}
			}
		})
	}
}

var zero float64

// TestTokenClaims: what an assertion says, checked as an upstream would
// with jwx and with the standard library.
func TestTokenClaims(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	c := claims()
	c.Extra = map[string]any{
		// Reserved names never override the registered claims.
		"iss": "https://evil.example", "sub": "root", "aud": "everything",
		"exp": 99999999999, "iat": 0, "nbf": 0, "jti": "x",
		"email": "root@example.com", "groups": []string{"root"},
		// Others come through.
		"tenant": "acme", "roles": []string{"reader"}, "level": 3,
		"meta": map[string]any{"a": []any{"b", 1.5, true, nil}},
	}
	tok := token(t, s, "session-1", c)
	now := clk.Now()

	got, err := verifyStdlib(s.JWKS(), tok, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"iss": testIssuer, "sub": c.Subject, "aud": testAudience,
		"email": c.Email, "groups": []any{"admins", "staff", "engineering", "on-call"},
		"iat": float64(epoch.Unix()), "exp": float64(epoch.Add(DefaultLifetime).Unix()),
		"tenant": "acme", "roles": []any{"reader"}, "level": float64(3),
		"meta": map[string]any{"a": []any{"b", 1.5, true, nil}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claims:\n got %v\nwant %v", got, want)
	}
	// Each claim appears once: no verifier has to guess which copy counts.
	dec := json.NewDecoder(bytes.NewReader(payloadOf(t, tok)))
	seen := map[string]bool{}
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if seen[k.(string)] {
			t.Errorf("claim %q appears twice", k)
		}
		seen[k.(string)] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"nbf", "jti"} {
		if seen[name] {
			t.Errorf("claim %s is set", name)
		}
	}

	jt, err := verifyJWX(s.JWKS(), tok, now)
	if err != nil {
		t.Fatalf("jwx: %v", err)
	}
	if jt.Subject() != c.Subject || !jt.Expiration().Equal(epoch.Add(time.Minute)) {
		t.Errorf("jwx: sub %q exp %v", jt.Subject(), jt.Expiration())
	}
	// The stock verifier refuses it past exp, for another audience and
	// for another issuer.
	if _, err := verifyJWX(s.JWKS(), tok, now.Add(2*time.Minute)); err == nil {
		t.Error("jwx accepted an expired assertion")
	}
	if _, err := verifyStdlib(s.JWKS(), tok, now.Add(time.Minute)); err == nil {
		t.Error("stdlib accepted an assertion at its exp")
	}
	other := newRingSigner(t, &MemoryStorage{}, clk)
	if _, err := verifyJWX(other.JWKS(), tok, now); err == nil {
		t.Error("jwx accepted an assertion against another ring's keys")
	}
	if _, err := verifyStdlib(other.JWKS(), tok, now); err == nil {
		t.Error("stdlib accepted an assertion against another ring's keys")
	}
}

// TestTokenOmitsEmpty: no email and no groups claims when there are none.
func TestTokenOmitsEmpty(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	tok := token(t, s, "", Claims{Subject: "u1", Audience: testAudience, NotAfter: epoch.Add(time.Hour)})
	got, err := verifyStdlib(s.JWKS(), tok, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"email", "groups"} {
		if _, ok := got[name]; ok {
			t.Errorf("claim %s present: %v", name, got)
		}
	}
}

// TestTokenNotAfter: exp is never past the session's end.
func TestTokenNotAfter(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	for _, tc := range []struct {
		notAfter time.Time
		exp      int64
	}{
		{epoch.Add(time.Hour), epoch.Add(time.Minute).Unix()},
		{epoch.Add(time.Minute), epoch.Add(time.Minute).Unix()},
		{epoch.Add(20 * time.Second), epoch.Add(20 * time.Second).Unix()},
		{epoch.Add(20*time.Second + 900*time.Millisecond), epoch.Add(20 * time.Second).Unix()},
		{epoch.Add(time.Second), epoch.Add(time.Second).Unix()},
	} {
		c := claims()
		c.NotAfter = tc.notAfter
		got, err := verifyStdlib(s.JWKS(), token(t, s, "", c), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if exp := int64(got["exp"].(float64)); exp != tc.exp || exp > c.NotAfter.Unix() {
			t.Errorf("NotAfter %v: exp %d, want %d", tc.notAfter, exp, tc.exp)
		}
	}
}

// TestCache: a session's assertion is signed once per half lifetime, and
// never handed to a request whose claims differ.
func TestCache(t *testing.T) {
	clk := newClock()
	clk.Add(300 * time.Millisecond) // not on a whole second
	s := newRingSigner(t, &MemoryStorage{}, clk)
	c := claims()
	first := token(t, s, "session-1", c)

	clk.Add(10 * time.Second)
	if got := token(t, s, "session-1", c); got != first {
		t.Error("a new assertion within the first half of the lifetime")
	}
	if st := s.Stats(); st.Reused != 1 || st.Signed != 1 {
		t.Errorf("stats = %+v", st)
	}
	// iat is epoch (floored), exp epoch+60s: half its lifetime is left
	// until epoch+30s.
	clk.Set(epoch.Add(30 * time.Second))
	if got := token(t, s, "session-1", c); got != first {
		t.Error("a new assertion with half the lifetime left")
	}
	clk.Set(epoch.Add(30*time.Second + time.Millisecond))
	second := token(t, s, "session-1", c)
	if second == first {
		t.Fatal("the same assertion with less than half its lifetime left")
	}
	got, err := verifyStdlib(s.JWKS(), second, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got["iat"].(float64) != float64(epoch.Unix()+30) {
		t.Errorf("iat = %v", got["iat"])
	}

	t.Run("different claims, same key", func(t *testing.T) {
		for _, mod := range []func(*Claims){
			func(c *Claims) { c.Subject = "someone-else" },
			func(c *Claims) { c.Email = "mallory@example.com" },
			func(c *Claims) { c.Audience = "other.example.com" },
			func(c *Claims) { c.Issuer = "https://other.example.com" },
			func(c *Claims) { c.Groups = append(c.Groups, "root") },
			func(c *Claims) { c.Groups = nil },
			func(c *Claims) { c.Groups[0] = "root" },
			func(c *Claims) { c.Extra["tenant"] = "other" },
			func(c *Claims) { c.Extra["level"] = 1 },
			func(c *Claims) { c.Extra = nil },
			func(c *Claims) { c.Extra["tenant"] = []string{"acme"} },
			func(c *Claims) { c.Extra["list"] = []any{"a", map[string]any{"b": 1}} },
		} {
			base := claims()
			a := token(t, s, "session-x", base)
			d := claims()
			mod(&d)
			b := token(t, s, "session-x", d)
			if a == b {
				t.Errorf("the cached assertion for other claims: %+v", d)
			}
			var gotB map[string]any
			if err := json.Unmarshal(payloadOf(t, b), &gotB); err != nil {
				t.Fatal(err)
			}
			if gotB["sub"] != d.Subject || gotB["aud"] != d.Audience || d.Issuer != "" && gotB["iss"] != d.Issuer {
				t.Errorf("claims of the new assertion: %v", gotB)
			}
			// And back: the first claims get an assertion of their own.
			if again := token(t, s, "session-x", base); again == b {
				t.Error("the other claims' assertion for the first claims")
			}
		}
	})

	t.Run("caller changes its claims after the call", func(t *testing.T) {
		d := claims()
		d.Extra["list"] = []any{"a"}
		a := token(t, s, "session-y", d)
		d.Groups[0] = "root"
		d.Extra["list"].([]any)[0] = "z"
		if b := token(t, s, "session-y", d); b == a {
			t.Error("claims changed in place got the old assertion")
		}
	})

	t.Run("NotAfter", func(t *testing.T) {
		d := claims()
		a := token(t, s, "session-z", d)
		d.NotAfter = d.NotAfter.Add(time.Hour) // extended: the old one still fits
		if b := token(t, s, "session-z", d); b != a {
			t.Error("a later NotAfter signed again")
		}
		d.NotAfter = clk.Now().Add(10 * time.Second) // shortened below the cached exp
		b := token(t, s, "session-z", d)
		if b == a {
			t.Fatal("an assertion past the new NotAfter")
		}
		got, err := verifyStdlib(s.JWKS(), b, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if int64(got["exp"].(float64)) > d.NotAfter.Unix() {
			t.Errorf("exp %v past NotAfter %v", got["exp"], d.NotAfter)
		}
		d.NotAfter = clk.Now().Add(-time.Second)
		if tok, err := s.Token("session-z", d); !errors.Is(err, ErrSessionEnded) || tok != "" {
			t.Errorf("ended session: %q, %v", tok, err)
		}
	})

	t.Run("no cache key", func(t *testing.T) {
		if a, b := token(t, s, "", c), token(t, s, "", c); a == b {
			t.Error("an empty cache key was cached")
		}
	})

	t.Run("cache disabled", func(t *testing.T) {
		u := newRingSigner(t, &MemoryStorage{}, clk, func(o *Options) { o.CacheSize = -1 })
		if a, b := token(t, u, "k", c), token(t, u, "k", c); a == b {
			t.Error("a disabled cache was used")
		}
	})

	t.Run("bounded", func(t *testing.T) {
		u := newRingSigner(t, &MemoryStorage{}, clk, func(o *Options) { o.CacheSize = 2 })
		a := token(t, u, "a", c)
		token(t, u, "b", c)
		token(t, u, "c", c)
		if token(t, u, "a", c) == a {
			t.Error("the least recently used entry was kept beyond CacheSize")
		}
	})
}

// TestTokenHitAllocates nothing.
func TestTokenHitAllocates(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	c := claims()
	c.Extra["roles"] = []string{"a", "b"}
	c.Extra["meta"] = map[string]any{"x": []any{1.0, "y"}}
	token(t, s, "session-1", c)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := s.Token("session-1", c); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a cache hit allocates %v times", n)
	}
	if st := s.Stats(); st.Signed != 1 {
		t.Errorf("signed %d times", st.Signed)
	}
}

// TestRequestPathNoStorage: Token and the JWKS never reach the storage,
// even when a key activates between two calls.
func TestRequestPathNoStorage(t *testing.T) {
	clk := newClock()
	st := &countingStorage{Storage: &MemoryStorage{}}
	s := newRingSigner(t, st, clk)
	clk.Add(DefaultRotationPeriod - DefaultPublishAhead)
	refresh(t, s)
	before := st.calls.Load()
	c := claims()
	c.NotAfter = epoch.Add(7 * 24 * time.Hour)
	used := map[string]bool{}
	for range 3 {
		used[headerOf(t, token(t, s, "session-1", c)).Kid] = true
		token(t, s, "", c)
		_ = s.JWKS()
		_ = s.Published()
		clk.Add(DefaultPublishAhead / 2)
	}
	if n := st.calls.Load() - before; n != 0 {
		t.Errorf("the request path made %d storage calls", n)
	}
	if len(used) != 2 {
		t.Errorf("signed with %d keys across the activation, want 2", len(used))
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.calls.Load() == before {
		t.Error("Refresh did not reach the storage")
	}
}

// TestReserved names the claims Extra cannot set.
func TestReserved(t *testing.T) {
	for _, name := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "email", "groups"} {
		if !Reserved(name) {
			t.Errorf("%s is not reserved", name)
		}
	}
	for _, name := range []string{"tenant", "preferred_username", "name", "Sub"} {
		if Reserved(name) {
			t.Errorf("%s is reserved", name)
		}
	}
}

// TestTokenIssuerPerClaims: a Signer without an issuer of its own signs
// with the Claims' issuer, and refuses claims without one.
func TestTokenIssuerPerClaims(t *testing.T) {
	clk := newClock()
	s, err := New(context.Background(), Options{Storage: &MemoryStorage{}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := claims()
	if tok, err := s.Token("k", c); !errors.Is(err, ErrIncompleteClaims) || tok != "" {
		t.Fatalf("no issuer anywhere: %q, %v", tok, err)
	}
	c.Issuer = "https://app.example.com"
	got, err := verifyStdlib(s.JWKS(), token(t, s, "k", c), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got["iss"] != c.Issuer {
		t.Fatalf("iss = %v", got["iss"])
	}
}
