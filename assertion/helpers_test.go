package assertion

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

const (
	testIssuer   = "https://app.example.com"
	testAudience = "app.example.com"
)

// epoch is where test clocks start: a whole second.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// countingStorage counts the calls that reach a Storage.
type countingStorage struct {
	Storage
	calls atomic.Int64
}

func (s *countingStorage) Lock(ctx context.Context, name string) error {
	s.calls.Add(1)
	return s.Storage.Lock(ctx, name)
}

func (s *countingStorage) Unlock(ctx context.Context, name string) error {
	s.calls.Add(1)
	return s.Storage.Unlock(ctx, name)
}

func (s *countingStorage) Store(ctx context.Context, key string, v []byte) error {
	s.calls.Add(1)
	return s.Storage.Store(ctx, key, v)
}

func (s *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.calls.Add(1)
	return s.Storage.Load(ctx, key)
}

// newRingSigner starts a Signer on st with the test clock, closed when the
// test ends.
func newRingSigner(t testing.TB, st Storage, clk *clock, mod ...func(*Options)) *Signer {
	t.Helper()
	opts := Options{Issuer: testIssuer, Storage: st, Now: clk.Now}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newStaticSigner makes a Signer with a static key.
func newStaticSigner(t testing.TB, pemData []byte, clk *clock, mod ...func(*Options)) *Signer {
	t.Helper()
	opts := Options{Issuer: testIssuer, PrivateKeyPEM: pemData, Now: clk.Now}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func refresh(t testing.TB, s *Signer) {
	t.Helper()
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// claims is a realistic claim set valid for an hour after epoch.
func claims() Claims {
	return Claims{
		Subject:  "248289761001",
		Email:    "alice@example.com",
		Groups:   []string{"admins", "staff", "engineering", "on-call"},
		Audience: testAudience,
		Extra:    map[string]any{"preferred_username": "alice", "tenant": "acme"},
		NotAfter: epoch.Add(time.Hour),
	}
}

func token(t testing.TB, s *Signer, key string, c Claims) string {
	t.Helper()
	tok, err := s.Token(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pemPKCS8 encodes a private key as PKCS#8 PEM.
func pemPKCS8(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// verifyJWX is an upstream with a stock JWT library: jwx parses the JWKS
// and checks the signature, iss, aud and exp at now.
func verifyJWX(jwks []byte, tok string, now time.Time) (jwt.Token, error) {
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, fmt.Errorf("parsing JWKS: %w", err)
	}
	return jwt.Parse([]byte(tok),
		jwt.WithKeySet(set),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
	)
}

// header is a token's decoded protected header.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// verifyStdlib is an upstream with the standard library only: it finds
// the key by kid in the JWKS, checks the signature for the key's alg and
// then iss, aud, exp and iat at now. It returns the claims.
func verifyStdlib(jwks []byte, tok string, now time.Time) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	var hdr header
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kty, Kid, Alg, Use, Crv, X, Y, N, E string
		}
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	input := []byte(parts[0] + "." + parts[1])
	h := sha256.Sum256(input)
	found := false
	for _, k := range set.Keys {
		if k.Kid != hdr.Kid {
			continue
		}
		found = true
		if k.Alg != hdr.Alg || k.Use != "sig" {
			return nil, fmt.Errorf("key %s is for %s/%s, token says %s", k.Kid, k.Alg, k.Use, hdr.Alg)
		}
		b := func(s string) []byte { v, _ := base64.RawURLEncoding.DecodeString(s); return v }
		var ok bool
		switch k.Alg {
		case "ES256":
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, b(k.X)...), b(k.Y)...))
			if err != nil {
				return nil, err
			}
			ok = len(sig) == 64 && ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		case "RS256", "PS256":
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b(k.N)), E: int(new(big.Int).SetBytes(b(k.E)).Int64())}
			if k.Alg == "RS256" {
				ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
			} else {
				ok = rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
			}
		case "EdDSA":
			ok = k.Crv == "Ed25519" && ed25519.Verify(ed25519.PublicKey(b(k.X)), input, sig)
		default:
			return nil, fmt.Errorf("alg %s", k.Alg)
		}
		if !ok {
			return nil, errors.New("bad signature")
		}
	}
	if !found {
		return nil, fmt.Errorf("unknown kid %q", hdr.Kid)
	}
	var c map[string]any
	if err := decodeSegment(parts[1], &c); err != nil {
		return nil, err
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	switch {
	case c["iss"] != testIssuer:
		return nil, fmt.Errorf("iss %v", c["iss"])
	case c["aud"] != testAudience:
		return nil, fmt.Errorf("aud %v", c["aud"])
	case int64(exp) <= now.Unix():
		return nil, fmt.Errorf("expired: exp %v, now %d", c["exp"], now.Unix())
	case int64(iat) > now.Unix():
		return nil, fmt.Errorf("issued in the future: iat %v, now %d", c["iat"], now.Unix())
	}
	return c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// headerOf decodes a token's header.
func headerOf(t testing.TB, tok string) header {
	t.Helper()
	var h header
	if err := decodeSegment(strings.SplitN(tok, ".", 2)[0], &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// payloadOf returns a token's raw claims JSON.
func payloadOf(t testing.TB, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kids lists the key ids of a JWKS, in order.
func kids(t testing.TB, jwks []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// storedKids lists the key ids of the ring document in st.
func storedKids(t testing.TB, st Storage) []string {
	t.Helper()
	data, err := st.Load(context.Background(), DefaultStorageKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseRing(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range r.keys {
		out = append(out, k.doc.KID)
	}
	return out
}
