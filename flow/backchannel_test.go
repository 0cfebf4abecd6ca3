package flow

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

// logoutClaims are a good logout token's claims (OpenID Connect
// Back-Channel Logout 1.0 §2.4), issued at epoch, the test clock's now.
func logoutClaims(p *scripted) map[string]any {
	return map[string]any{
		"iss": p.URL, "aud": clientID,
		"iat": epoch.Unix(), "exp": epoch.Add(2 * time.Minute).Unix(),
		"jti": "jti-1", "sid": "sid-1", "sub": "user-1",
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
}

// TestVerifyLogoutTokenRejects: each case breaks one rule of §2.6 in an
// otherwise good logout token.
func TestVerifyLogoutTokenRejects(t *testing.T) {
	other := jwttest.NewKey("k1", "RS256") // same kid, another key
	for _, tc := range []struct {
		name, why string // why: the refusal's reason
		token     func(p *scripted, c map[string]any) string
	}{
		{"HS256 signed with the client secret", "algorithm not allowed", func(p *scripted, c map[string]any) string {
			return jwttest.Raw(map[string]any{"alg": "HS256", "kid": "k1", "typ": "logout+jwt"}, c, jwttest.HMAC([]byte(clientSecret)))
		}},
		{"alg none", "algorithm not allowed", func(p *scripted, c map[string]any) string {
			return jwttest.Raw(map[string]any{"alg": "none", "typ": "logout+jwt"}, c, func([]byte) []byte { return []byte("x") })
		}},
		{"wrong key", "bad signature", func(p *scripted, c map[string]any) string { return other.Sign(c, nil) }},
		{"wrong iss", "wrong issuer", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iss", "https://evil.example"), nil)
		}},
		{"wrong aud", "wrong audience", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "aud", "other-client"), nil) }},
		{"iat in the future", "issued in the future", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iat", epoch.Add(2*time.Minute).Unix()), nil)
		}},
		{"iat too old", "iat is too old", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iat", epoch.Add(-logoutTokenMaxAge-DefaultClockSkew-time.Second).Unix()), nil)
		}},
		{"no iat", "no iat", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "iat", nil), nil) }},
		{"exp past", "expired", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(set(c, "iat", epoch.Add(-3*time.Minute).Unix()), "exp", epoch.Add(-2*time.Minute).Unix()), nil)
		}},
		{"events missing", "events", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "events", nil), nil) }},
		{"events without the back-channel member", "events", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}), nil)
		}},
		{"events member not an object", "events", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "events", map[string]any{backchannelLogoutEvent: "yes"}), nil)
		}},
		{"neither sid nor sub", "neither sid nor sub", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(set(c, "sid", nil), "sub", nil), nil)
		}},
		{"sid of wrong type", "malformed", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "sid", 42), nil) }},
		{"empty sid", "empty", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "sid", ""), nil) }},
		{"nonce present", "nonce", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "nonce", "n-1"), nil) }},
		{"jti missing", "no jti", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "jti", nil), nil) }},
		{"typ at+jwt", "typ", func(p *scripted, c map[string]any) string {
			return p.key.Sign(c, map[string]any{"typ": "at+jwt"})
		}},
		{"too large", "too large", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "pad", strings.Repeat("a", 17<<10)), nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p)
			raw := tc.token(p, logoutClaims(p))
			lt, err := c.VerifyLogoutToken(context.Background(), raw)
			if !errors.Is(err, ErrInvalidLogoutToken) || lt != nil {
				t.Fatalf("got %+v, %v; want ErrInvalidLogoutToken", lt, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("refused for another reason: %v; want %q", err, tc.why)
			}
			if errors.Is(err, ErrProviderUnavailable) {
				t.Fatalf("a bad token taken for an unavailable provider: %v", err)
			}
			if payload := strings.Split(raw, ".")[1]; strings.Contains(err.Error(), payload) {
				t.Fatal("the error echoes the token")
			}
		})
	}
}

func TestVerifyLogoutToken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		token     func(p *scripted, c map[string]any) string
		sub, sid  string
		noExpiry  bool
		issuedAgo time.Duration
	}{
		{"sid only", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "sub", nil), nil) }, "", "sid-1", false, 0},
		{"sub only", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "sid", nil), nil) }, "user-1", "", false, 0},
		{"sid and sub", func(p *scripted, c map[string]any) string { return p.key.Sign(c, nil) }, "user-1", "sid-1", false, 0},
		{"typ logout+jwt", func(p *scripted, c map[string]any) string {
			return p.key.Sign(c, map[string]any{"typ": "logout+jwt"})
		}, "user-1", "sid-1", false, 0},
		{"typ application/Logout+JWT", func(p *scripted, c map[string]any) string {
			return p.key.Sign(c, map[string]any{"typ": "application/Logout+JWT"})
		}, "user-1", "sid-1", false, 0},
		{"no typ", func(p *scripted, c map[string]any) string {
			return jwttest.Raw(map[string]any{"alg": "RS256", "kid": "k1"}, c, func(in []byte) []byte {
				sum := sha256.Sum256(in)
				sig, err := rsa.SignPKCS1v15(rand.Reader, p.key.Private.(*rsa.PrivateKey), crypto.SHA256, sum[:])
				if err != nil {
					t.Fatal(err)
				}
				return sig
			})
		}, "user-1", "sid-1", false, 0},
		{"without exp", func(p *scripted, c map[string]any) string { return p.key.Sign(set(c, "exp", nil), nil) }, "user-1", "sid-1", true, 0},
		{"issued 5m ago", func(p *scripted, c map[string]any) string {
			return p.key.Sign(set(c, "iat", epoch.Add(-logoutTokenMaxAge).Unix()), nil)
		}, "user-1", "sid-1", false, logoutTokenMaxAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			c := newClient(t, p)
			lt, err := c.VerifyLogoutToken(context.Background(), tc.token(p, logoutClaims(p)))
			if err != nil {
				t.Fatal(err)
			}
			want := LogoutToken{Subject: tc.sub, SessionID: tc.sid, ID: "jti-1",
				IssuedAt: epoch.Add(-tc.issuedAgo), Expiry: epoch.Add(2 * time.Minute)}
			if tc.noExpiry {
				want.Expiry = time.Time{}
			}
			if *lt != want {
				t.Fatalf("got %+v, want %+v", *lt, want)
			}
		})
	}
}

// TestVerifyLogoutTokenProviderDown: keys or metadata that cannot be had
// are the provider's trouble (503), not a bad token (400).
func TestVerifyLogoutTokenProviderDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *scripted)
	}{
		{"JWKS unavailable", func(p *scripted) { p.jwksDown = true }},
		{"discovery fails", func(p *scripted) { p.doc["issuer"] = "https://evil.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newScripted(t)
			p.set(tc.mod)
			c := newClient(t, p)
			lt, err := c.VerifyLogoutToken(context.Background(), p.key.Sign(logoutClaims(p), nil))
			if lt != nil || !errors.Is(err, ErrProviderUnavailable) || errors.Is(err, ErrInvalidLogoutToken) {
				t.Fatalf("got %+v, %v; want ErrProviderUnavailable only", lt, err)
			}
		})
	}
}

// TestLogoutTokenVerifierBuiltOnce: the verifier and its keys are reused,
// and the ID-token verifier still requires exp.
func TestLogoutTokenVerifierBuiltOnce(t *testing.T) {
	p := newScripted(t)
	c := newClient(t, p)
	for range 3 {
		if _, err := c.VerifyLogoutToken(context.Background(), p.key.Sign(set(logoutClaims(p), "exp", nil), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.jwksHits.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}
	meta, v, err := c.ready(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lv, _ := c.logoutTokenVerifier(meta); lv == v {
		t.Fatal("logout tokens share the ID-token verifier")
	}
	if _, err := v.Verify(context.Background(), p.key.Sign(set(logoutClaims(p), "exp", nil), nil)); err == nil {
		t.Fatal("the ID-token verifier accepted a token without exp")
	}
}
