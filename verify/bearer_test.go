package verify

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

func TestBearerToken(t *testing.T) {
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
		err     error
	}{
		{"no header", nil, "", ErrNoToken},
		{"Basic", []string{"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, "", ErrNoToken},
		{"other scheme", []string{"Token " + tok}, "", ErrNoToken},
		{"Bearer", []string{"Bearer " + tok}, tok, nil},
		{"lowercase scheme", []string{"bearer " + tok}, tok, nil},
		{"uppercase scheme", []string{"BEARER " + tok}, tok, nil},
		{"two spaces", []string{"Bearer  " + tok}, tok, nil},
		{"token68 padding", []string{"Bearer abc=="}, "abc==", nil},
		{"Bearer alone", []string{"Bearer"}, "", ErrMalformedAuthorization},
		{"Bearer and a space", []string{"Bearer "}, "", ErrMalformedAuthorization},
		{"two tokens", []string{"Bearer " + tok + " " + tok}, "", ErrMalformedAuthorization},
		{"trailing space", []string{"Bearer " + tok + " "}, "", ErrMalformedAuthorization},
		{"comma list", []string{"Bearer " + tok + ", Basic x"}, "", ErrMalformedAuthorization},
		// Review SA2-02: forms a lenient upstream reads a token from are
		// malformed, not "no token" (the tab form used to be ErrNoToken).
		{"tab", []string{"Bearer\t" + tok}, "", ErrMalformedAuthorization},
		{"tab and space", []string{"Bearer\t " + tok}, "", ErrMalformedAuthorization},
		{"Basic, then Bearer in a list", []string{"Basic eA==, Bearer " + tok}, "", ErrMalformedAuthorization},
		{"XBearer", []string{"XBearer " + tok}, "", ErrMalformedAuthorization},
		{"second line with a tab", []string{"Basic eA==", "bearer\t" + tok}, "", ErrMalformedAuthorization},
		{"Bearer alone in a list", []string{"Basic eA==,Bearer"}, "", ErrMalformedAuthorization},
		{"Basic whose credentials hold the letters", []string{"Basic YmVhcmVyX2lzX2hlcmU="}, "", ErrNoToken},
		{"non-ASCII", []string{"Bearer " + tok + "é"}, "", ErrMalformedAuthorization},
		{"quotes", []string{`Bearer "` + tok + `"`}, "", ErrMalformedAuthorization},
		{"padding in the middle", []string{"Bearer ab=cd"}, "", ErrMalformedAuthorization},
		{"only padding", []string{"Bearer ==="}, "", ErrMalformedAuthorization},
		{"two Authorization headers", []string{"Bearer " + tok, "Bearer " + tok}, "", ErrMalformedAuthorization},
		{"Basic then Bearer", []string{"Basic x", "Bearer " + tok}, "", ErrMalformedAuthorization},
		{"oversize", []string{"Bearer " + strings.Repeat("a", maxAuthorization)}, "", ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.headers {
				h.Add("Authorization", v)
			}
			got, err := BearerToken(h)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer", "Basic x", "Bearer a b", "Bearer ==", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := BearerToken(http.Header{"Authorization": {v}})
		if err != nil {
			if tok != "" {
				t.Fatal("token with an error")
			}
			return
		}
		if !isToken68(tok) || !strings.HasSuffix(v, tok) || len(tok) > maxAuthorization {
			t.Fatalf("BearerToken(%q) = %q", v, tok)
		}
	})
}

// FuzzVerify: arbitrary input is refused without a panic, and the valid
// seed stays valid only unmodified.
func FuzzVerify(f *testing.F) {
	k := jwttest.NewKey("k", "ES256")
	v := newVerifier(f, staticKeys(f, k))
	good := k.Sign(validClaims(), nil)
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("a.b.c")
	f.Add("..")
	f.Add(strings.Repeat(".", 100))
	f.Add(jwttest.Raw(map[string]any{"alg": "none"}, validClaims(), nil))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err == nil {
			if token != good {
				t.Fatalf("a modified token verified: %q", token)
			}
			if c == nil {
				t.Fatal("nil claims")
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("error %v does not wrap ErrInvalidToken", err)
		}
	})
}

func TestScopes(t *testing.T) {
	k := jwttest.NewKey("k", "ES256")
	v := newVerifier(t, staticKeys(t, k))
	for _, tc := range []struct {
		name  string
		claim string
		value any
		want  []string
		err   bool
	}{
		{"scope string", "scope", "read write", []string{"read", "write"}, false},
		{"scp string", "scp", "read write", []string{"read", "write"}, false},
		{"scp array", "scp", []string{"read", "write"}, []string{"read", "write"}, false},
		{"scope of wrong type", "scope", []string{"read"}, nil, true},
		{"scp with a number", "scp", []any{"read", 1}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), k.Sign(with(validClaims(), tc.claim, tc.value), nil))
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || strings.Join(c.Scopes, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("scopes %v, err %v", c, err)
			}
			if m := c.MissingScopes([]string{"read", "admin"}); len(m) != 1 || m[0] != "admin" {
				t.Fatalf("missing %v", m)
			}
		})
	}
}

// TestCacheNeverServesPastExpiry: a cached token is refused from its exp
// on, with an injected clock (a token revoked by expiry stays revoked).
func TestCacheNeverServesPastExpiry(t *testing.T) {
	k := jwttest.NewKey("k", "ES256")
	now := epoch
	v, err := New(Config{
		Issuer: testIssuer, Audiences: []string{testAudience}, Keys: staticKeys(t, k),
		Now: func() time.Time { return now }, CacheSize: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := k.Sign(with(validClaims(), "exp", epoch.Add(time.Minute).Unix()), nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if s := v.Stats(); s.CacheHits != 2 || s.CacheMisses != 1 || s.Valid != 3 {
		t.Fatalf("stats %+v", s)
	}
	now = epoch.Add(time.Minute) // exactly exp: the cache must not answer
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		// Within the clock skew the signature check accepts it again, but
		// it was not served from the cache.
		t.Fatalf("within skew: %v", err)
	}
	if s := v.Stats(); s.CacheHits != 2 {
		t.Fatalf("served from the cache at exp: %+v (%v)", s, c.Expiry)
	}
	now = epoch.Add(time.Minute + DefaultClockSkew)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp and skew: %v", err)
	}
	// A different token (even one byte) is a miss, and an invalid one is
	// never cached.
	bad := tok[:len(tok)-3] + "AAA"
	for range 2 {
		if _, err := v.Verify(context.Background(), bad); err == nil {
			t.Fatal("tampered token accepted")
		}
	}
	if s := v.Stats(); s.CacheHits != 2 {
		t.Fatalf("invalid token served from cache: %+v", s)
	}
}

// TestCacheIsBounded: the cache holds at most CacheSize entries, however
// many distinct valid tokens arrive.
func TestCacheIsBounded(t *testing.T) {
	k := jwttest.NewKey("k", "ES256")
	v, _ := New(Config{
		Issuer: testIssuer, Audiences: []string{testAudience}, Keys: staticKeys(t, k),
		Now: func() time.Time { return epoch }, CacheSize: 16,
	})
	for i := range 100 {
		if _, err := v.Verify(context.Background(), k.Sign(with(validClaims(), "jti", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.Len(); n != 16 {
		t.Fatalf("cache holds %d entries, want 16", n)
	}
}
