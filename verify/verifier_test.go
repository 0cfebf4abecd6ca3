package verify

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

const (
	testIssuer   = "https://idp.example.com/realms/main"
	testAudience = "gatehouse-client"
)

var epoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func validClaims() map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "248289761001",
		"aud":   testAudience,
		"exp":   epoch.Add(5 * time.Minute).Unix(),
		"iat":   epoch.Unix(),
		"nonce": "n-0S6_WzA2Mj",
	}
}

func with(claims map[string]any, key string, value any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		out[k] = v
	}
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

func newVerifier(t testing.TB, ks KeySet, algs ...string) *Verifier {
	t.Helper()
	v, err := New(Config{
		Issuer:     testIssuer,
		Audiences:  []string{testAudience},
		Algorithms: algs,
		Keys:       ks,
		Now:        func() time.Time { return epoch },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func staticKeys(t testing.TB, keys ...*jwttest.Key) *StaticKeySet {
	t.Helper()
	ks, err := NewStaticKeySet(jwttest.JWKS(keys...))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestNewRejects(t *testing.T) {
	ks := staticKeys(t, jwttest.NewKey("k1", "ES256"))
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no issuer", Config{Audiences: []string{"a"}, Keys: ks}},
		{"no audience", Config{Issuer: "i", Keys: ks}},
		{"empty audience", Config{Issuer: "i", Audiences: []string{""}, Keys: ks}},
		{"no keys", Config{Issuer: "i", Audiences: []string{"a"}}},
		{"HS256 allowed", Config{Issuer: "i", Audiences: []string{"a"}, Keys: ks, Algorithms: []string{"RS256", "HS256"}}},
		{"none allowed", Config{Issuer: "i", Audiences: []string{"a"}, Keys: ks, Algorithms: []string{"none"}}},
		{"lowercase alg", Config{Issuer: "i", Audiences: []string{"a"}, Keys: ks, Algorithms: []string{"rs256"}}},
		{"negative skew", Config{Issuer: "i", Audiences: []string{"a"}, Keys: ks, ClockSkew: -time.Second}},
		{"huge skew", Config{Issuer: "i", Audiences: []string{"a"}, Keys: ks, ClockSkew: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestVerifyRejects: each case breaks exactly one thing of an otherwise
// valid token, and must fail with the matching error.
func TestVerifyRejects(t *testing.T) {
	rsaKey := jwttest.NewKey("rsa-1", "RS256")
	ecKey := jwttest.NewKey("ec-1", "ES256")
	other := jwttest.NewKey("rsa-1", "RS256") // same kid, different key
	unknown := jwttest.NewKey("rsa-unknown", "RS256")
	ks := staticKeys(t, rsaKey, ecKey)
	v := newVerifier(t, ks)

	pubDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Private.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	good := rsaKey.Sign(validClaims(), nil)
	parts := strings.Split(good, ".")

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"bad signature", parts[0] + "." + parts[1] + "." + strings.Split(other.Sign(validClaims(), nil), ".")[2], ErrSignature},
		{"payload swapped under a valid signature", parts[0] + "." + strings.Split(rsaKey.Sign(with(validClaims(), "sub", "admin"), nil), ".")[1] + "." + parts[2], ErrSignature},
		{"alg none", jwttest.Raw(map[string]any{"alg": "none", "kid": "rsa-1"}, validClaims(), func([]byte) []byte { return []byte{0} }), ErrAlgorithm},
		{"alg none, empty signature", jwttest.Raw(map[string]any{"alg": "none"}, validClaims(), nil), ErrMalformed},
		{"alg missing", jwttest.Raw(map[string]any{"kid": "rsa-1"}, validClaims(), func([]byte) []byte { return []byte{0} }), ErrAlgorithm},
		{"alg NONE", jwttest.Raw(map[string]any{"alg": "NONE"}, validClaims(), func([]byte) []byte { return []byte{0} }), ErrAlgorithm},
		{"HS256 signed with the RSA public key (PEM)", jwttest.Raw(map[string]any{"alg": "HS256", "kid": "rsa-1"}, validClaims(), jwttest.HMAC(pubPEM)), ErrAlgorithm},
		{"HS256 signed with the RSA public key (DER)", jwttest.Raw(map[string]any{"alg": "HS256", "kid": "rsa-1"}, validClaims(), jwttest.HMAC(pubDER)), ErrAlgorithm},
		{"RS256 header on an EC key id", jwttest.Raw(map[string]any{"alg": "RS256", "kid": "ec-1"}, validClaims(), func([]byte) []byte { return []byte{1, 2} }), ErrUnknownKey},
		{"unknown kid", unknown.Sign(validClaims(), nil), ErrUnknownKey},
		{"crit header", jwttest.Raw(map[string]any{"alg": "RS256", "kid": "rsa-1", "crit": []string{"b64"}, "b64": false}, validClaims(), func([]byte) []byte { return []byte{1} }), ErrMalformed},
		{"wrong iss", rsaKey.Sign(with(validClaims(), "iss", "https://evil.example.com"), nil), ErrIssuer},
		{"iss with trailing slash", rsaKey.Sign(with(validClaims(), "iss", testIssuer+"/"), nil), ErrIssuer},
		{"missing iss", rsaKey.Sign(with(validClaims(), "iss", nil), nil), ErrIssuer},
		{"wrong aud", rsaKey.Sign(with(validClaims(), "aud", "another-client"), nil), ErrAudience},
		{"aud list without us", rsaKey.Sign(with(validClaims(), "aud", []string{"a", "b"}), nil), ErrAudience},
		{"missing aud", rsaKey.Sign(with(validClaims(), "aud", nil), nil), ErrAudience},
		{"aud of wrong type", rsaKey.Sign(with(validClaims(), "aud", 42), nil), ErrMalformed},
		{"aud list with a number", rsaKey.Sign(with(validClaims(), "aud", []any{testAudience, 1}), nil), ErrMalformed},
		{"missing exp", rsaKey.Sign(with(validClaims(), "exp", nil), nil), ErrMissingExpiry},
		{"exp as string", rsaKey.Sign(with(validClaims(), "exp", "9999999999"), nil), ErrMalformed},
		{"exp negative", rsaKey.Sign(with(validClaims(), "exp", -1), nil), ErrMalformed},
		{"exp huge", rsaKey.Sign(with(validClaims(), "exp", 1e300), nil), ErrMalformed},
		{"expired", rsaKey.Sign(with(validClaims(), "exp", epoch.Add(-31*time.Second).Unix()), nil), ErrExpired},
		{"expired exactly at skew", rsaKey.Sign(with(validClaims(), "exp", epoch.Add(-30*time.Second).Unix()), nil), ErrExpired},
		{"nbf in the future", rsaKey.Sign(with(validClaims(), "nbf", epoch.Add(time.Minute).Unix()), nil), ErrNotYetValid},
		{"iat in the future", rsaKey.Sign(with(validClaims(), "iat", epoch.Add(time.Minute).Unix()), nil), ErrIssuedInFuture},
		{"sub of wrong type", rsaKey.Sign(with(validClaims(), "sub", 7), nil), ErrMalformed},
		{"nonce of wrong type", rsaKey.Sign(with(validClaims(), "nonce", []string{"x"}), nil), ErrMalformed},
		{"empty", "", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"empty payload", parts[0] + ".." + parts[2], ErrMalformed},
		{"padding", good + "=", ErrMalformed},
		{"whitespace", " " + good, ErrMalformed},
		{"non-ASCII", good[:10] + "é" + good[11:], ErrMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","signatures":[]}`, ErrMalformed},
		{"header not JSON", "bm90anNvbg." + parts[1] + "." + parts[2], ErrMalformed},
		{"payload not JSON", parts[0] + ".bm90anNvbg." + parts[2], ErrSignature},
		{"oversize", parts[0] + "." + strings.Repeat("A", DefaultMaxTokenSize) + "." + parts[2], ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("%v does not wrap ErrInvalidToken", err)
			}
		})
	}

	// The valid token passes, so each case above failed for its own reason.
	c, err := v.Verify(context.Background(), good)
	if err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if c.Subject != "248289761001" || c.Nonce != "n-0S6_WzA2Mj" || c.Algorithm != "RS256" || c.Audience[0] != testAudience {
		t.Fatalf("claims: %+v", c)
	}
}

func TestVerifyAlgorithms(t *testing.T) {
	for _, alg := range AsymmetricAlgorithms {
		t.Run(alg, func(t *testing.T) {
			k := jwttest.NewKey("k-"+alg, alg)
			v := newVerifier(t, staticKeys(t, k))
			if _, err := v.Verify(context.Background(), k.Sign(validClaims(), nil)); err != nil {
				t.Fatalf("valid %s token: %v", alg, err)
			}
		})
	}

	// RS256 token against an ES256-only allow-list.
	rsaKey := jwttest.NewKey("rsa", "RS256")
	ecKey := jwttest.NewKey("ec", "ES256")
	v := newVerifier(t, staticKeys(t, rsaKey, ecKey), "ES256")
	if _, err := v.Verify(context.Background(), rsaKey.Sign(validClaims(), nil)); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("RS256 under an ES256-only list: %v", err)
	}
	if _, err := v.Verify(context.Background(), ecKey.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("ES256: %v", err)
	}
}

func TestKeysWithoutAlg(t *testing.T) {
	rsaKey := jwttest.NewKey("rsa", "RS256")
	rsaKey.OmitAlg = true
	ecKey := jwttest.NewKey("", "ES256") // no kid either
	ecKey.OmitAlg = true
	v := newVerifier(t, staticKeys(t, rsaKey, ecKey))
	if _, err := v.Verify(context.Background(), rsaKey.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("RSA key without alg: %v", err)
	}
	if _, err := v.Verify(context.Background(), ecKey.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("EC key without alg or kid: %v", err)
	}
	// The header alg is still checked: a PS256 token is fine for an RSA
	// key without alg, an ES384 token cannot match a P-256 key.
	ps := &jwttest.Key{KID: "rsa", Alg: "PS256", Private: rsaKey.Private}
	if _, err := v.Verify(context.Background(), ps.Sign(validClaims(), nil)); err != nil {
		t.Fatalf("PS256 with an alg-less RSA key: %v", err)
	}
	es384 := jwttest.Raw(map[string]any{"alg": "ES384"}, validClaims(), func([]byte) []byte { return make([]byte, 96) })
	if _, err := v.Verify(context.Background(), es384); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("ES384 token against a P-256 key: %v", err)
	}
}

func TestKeyAlgMismatch(t *testing.T) {
	// A JWK that says RS256 is not used for a PS256 token.
	k := jwttest.NewKey("rsa", "RS256")
	ps := &jwttest.Key{KID: "rsa", Alg: "PS256", Private: k.Private}
	v := newVerifier(t, staticKeys(t, k))
	if _, err := v.Verify(context.Background(), ps.Sign(validClaims(), nil)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("PS256 token verified with an RS256 JWK: %v", err)
	}
}

func TestWeakAndUnusableKeysIgnored(t *testing.T) {
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	wk := jwttest.NewRSAKey("weak", weak)
	if _, err := NewStaticKeySet(jwttest.JWKS(wk)); err == nil {
		t.Fatal("a JWKS holding only a 1024-bit RSA key was accepted")
	}
	strong := jwttest.NewKey("strong", "RS256")
	v := newVerifier(t, staticKeys(t, wk, strong))
	if _, err := v.Verify(context.Background(), wk.Sign(validClaims(), nil)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token signed by a 1024-bit key: %v", err)
	}
	if _, err := NewStaticKeySet([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`)); err == nil {
		t.Fatal("a symmetric JWK was accepted")
	}
	if _, err := NewStaticKeySet([]byte(`not json`)); err == nil {
		t.Fatal("garbage JWKS accepted")
	}
}

func TestClaimsTimes(t *testing.T) {
	k := jwttest.NewKey("k", "ES256")
	v := newVerifier(t, staticKeys(t, k))
	claims := with(validClaims(), "nbf", float64(epoch.Unix())+0.5)
	claims["exp"] = float64(epoch.Add(time.Minute).Unix()) + 0.25
	c, err := v.Verify(context.Background(), k.Sign(claims, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Expiry.Equal(epoch.Add(time.Minute + 250*time.Millisecond)) {
		t.Fatalf("fractional exp: %v", c.Expiry)
	}
	// within the skew: exp 20s ago, nbf and iat 20s ahead
	claims = with(validClaims(), "exp", epoch.Add(-20*time.Second).Unix())
	claims["nbf"] = epoch.Add(20 * time.Second).Unix()
	claims["iat"] = epoch.Add(20 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), k.Sign(claims, nil)); err != nil {
		t.Fatalf("within clock skew: %v", err)
	}
}

func TestClaimsMap(t *testing.T) {
	k := jwttest.NewKey("k", "ES256")
	v := newVerifier(t, staticKeys(t, k))
	c, err := v.Verify(context.Background(), k.Sign(with(validClaims(), "groups", []string{"a", "b"}), nil))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := c.Map()["groups"].([]any); !ok || len(g) != 2 {
		t.Fatalf("groups claim: %#v", c.Map()["groups"])
	}
}

// TestHeaderMemo: one verifier sees tokens under several headers in turn
// (two keys, two algorithms, a critical extension, another typ); the
// header it remembers never stands in for another.
func TestHeaderMemo(t *testing.T) {
	rs, es := jwttest.NewKey("rs", "RS256"), jwttest.NewKey("es", "ES256")
	v := newVerifier(t, staticKeys(t, rs, es), "RS256", "ES256")
	// es's token with rs's kid: the header names a key that does not fit.
	wrongKid := es.Sign(validClaims(), map[string]any{"kid": "rs"})
	crit := rs.Sign(with(validClaims(), "jti", "c"), map[string]any{"crit": []string{"x-ext"}, "x-ext": 1})
	atJWT := rs.Sign(with(validClaims(), "jti", "t"), map[string]any{"typ": "at+jwt"})
	for i := range 3 {
		for _, tc := range []struct {
			name  string
			token string
			ok    bool
			typ   string
		}{
			{"rs", rs.Sign(with(validClaims(), "jti", i), nil), true, "JWT"},
			{"es", es.Sign(with(validClaims(), "jti", i), nil), true, "JWT"},
			{"es signed, rs kid", wrongKid, false, ""},
			{"crit", crit, false, ""},
			{"at+jwt", atJWT, true, "at+jwt"},
		} {
			c, err := v.Verify(context.Background(), tc.token)
			if (err == nil) != tc.ok {
				t.Fatalf("round %d, %s: err = %v, want ok = %v", i, tc.name, err, tc.ok)
			}
			if err == nil && c.Type != tc.typ {
				t.Fatalf("round %d, %s: typ %q, want %q", i, tc.name, c.Type, tc.typ)
			}
		}
	}
}
