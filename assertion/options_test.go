package assertion

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNewRefuses: every incomplete or unsafe configuration is an error
// naming the problem, and no key material appears in it.
func TestNewRefuses(t *testing.T) {
	ec := pemPKCS8(t, mustEC(t, elliptic.P256()))
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(mustEC(t, elliptic.P256()).Public())
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1, 2, 3}})
	badRing := &MemoryStorage{}
	if err := badRing.Store(context.Background(), DefaultStorageKey, []byte(`{"version":1,"keys":[{"kid":"x"`)); err != nil {
		t.Fatal(err)
	}
	newerRing := &MemoryStorage{}
	if err := newerRing.Store(context.Background(), DefaultStorageKey, []byte(`{"version":2,"keys":[]}`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		is   error
		want string
	}{
		{name: "relative issuer", opts: Options{Issuer: "/app", PrivateKeyPEM: ec}, want: "issuer"},
		{name: "other scheme", opts: Options{Issuer: "ftp://app.example.com", PrivateKeyPEM: ec}, want: "issuer"},
		{name: "no key", opts: Options{Issuer: testIssuer}, want: "private key or a key ring storage is required"},
		{name: "key and storage", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Storage: &MemoryStorage{}}, want: "exclude each other"},
		{name: "static key with rotation", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, RotationPeriod: time.Hour}, want: "does not rotate"},
		{name: "lifetime too short", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Lifetime: time.Millisecond}, want: "lifetime"},
		{name: "lifetime too long", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Lifetime: 2 * time.Hour}, want: "lifetime"},
		{name: "negative lifetime", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Lifetime: -time.Minute}, want: "lifetime"},
		{name: "unknown algorithm", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Algorithm: "HS256"}, want: `algorithm "HS256"`},
		{name: "none", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, Algorithm: "none"}, want: `algorithm "none"`},
		{name: "EC key with RS256", opts: Options{Issuer: testIssuer, PrivateKeyPEM: ec, Algorithm: "RS256"}, is: ErrUnsupportedKey, want: "signs ES256, not RS256"},
		{name: "RSA 1024", opts: Options{Issuer: testIssuer, PrivateKeyPEM: pemPKCS8(t, mustRSA(t, 1024))}, is: ErrUnsupportedKey, want: "1024 bits"},
		{name: "P-384", opts: Options{Issuer: testIssuer, PrivateKeyPEM: pemPKCS8(t, mustEC(t, elliptic.P384()))}, is: ErrUnsupportedKey, want: "P-384"},
		{name: "X25519", opts: Options{Issuer: testIssuer, PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER})}, is: ErrUnsupportedKey},
		{name: "public key only", opts: Options{Issuer: testIssuer, PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})}, want: "no private key in the PEM data (found PUBLIC KEY)"},
		{name: "not PEM", opts: Options{Issuer: testIssuer, PrivateKeyPEM: []byte("MHcCAQEEIB...")}, want: "no PEM data"},
		{name: "damaged PEM", opts: Options{Issuer: testIssuer, PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})}, want: "PRIVATE KEY block"},
		{name: "encrypted PEM", opts: Options{Issuer: testIssuer, PrivateKeyPEM: encrypted}, want: "encrypted"},
		{name: "two keys", opts: Options{Issuer: testIssuer, PrivateKeyPEM: append(slices.Clone(ec), pemPKCS8(t, mustEC(t, elliptic.P256()))...)}, want: "more than one private key"},
		{name: "publish-ahead too short", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, PublishAhead: 10 * time.Minute}, want: "publish-ahead"},
		{name: "refresh too slow", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, RefreshInterval: time.Hour}, want: "publish-ahead"},
		{name: "negative refresh", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, RefreshInterval: -time.Minute}, want: "negative"},
		{name: "rotation shorter than publish-ahead", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, RotationPeriod: time.Hour}, want: "rotation period"},
		{name: "storage key with slash", opts: Options{Issuer: testIssuer, Storage: &MemoryStorage{}, StorageKey: "/gatehouse/keys.json"}, want: "slash"},
		{name: "corrupt ring", opts: Options{Issuer: testIssuer, Storage: badRing}, is: ErrCorruptRing, want: DefaultStorageKey},
		{name: "ring of a newer version", opts: Options{Issuer: testIssuer, Storage: newerRing}, is: ErrCorruptRing, want: "version 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(context.Background(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "MHcC") || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("err quotes the key: %q", err)
			}
		})
	}
}

// TestStaticKeys: each supported key form signs with its algorithm, its
// kid is the RFC 7638 thumbprint, and both a stock library and the
// standard library verify the assertion.
func TestStaticKeys(t *testing.T) {
	ec := mustEC(t, elliptic.P256())
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	sec1 := append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...)
	rk := mustRSA(t, 2048)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate next to the key is skipped.
	withCert := append([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), pemPKCS8(t, ec)...)
	tests := []struct {
		name, alg, wantAlg string
		pem                []byte
		pub                crypto.PublicKey
	}{
		{name: "EC PKCS#8", pem: pemPKCS8(t, ec), wantAlg: "ES256", pub: ec.Public()},
		{name: "EC SEC 1 after EC PARAMETERS", pem: sec1, alg: "ES256", wantAlg: "ES256", pub: ec.Public()},
		{name: "EC after a certificate", pem: withCert, wantAlg: "ES256", pub: ec.Public()},
		{name: "RSA PKCS#1", pem: pkcs1, wantAlg: "RS256", pub: rk.Public()},
		{name: "RSA PS256", pem: pemPKCS8(t, rk), alg: "PS256", wantAlg: "PS256", pub: rk.Public()},
		{name: "Ed25519", pem: pemPKCS8(t, ed), wantAlg: "EdDSA", pub: ed.Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			s := newStaticSigner(t, tc.pem, clk, func(o *Options) { o.Algorithm = tc.alg })
			tok := token(t, s, "", claims())
			h := headerOf(t, tok)
			want, err := thumbprint(tc.pub)
			if err != nil {
				t.Fatal(err)
			}
			if h.Alg != tc.wantAlg || h.Typ != "JWT" || h.Kid != want {
				t.Errorf("header = %+v, want alg %s, typ JWT, kid %s", h, tc.wantAlg, want)
			}
			if _, err := verifyJWX(s.JWKS(), tok, clk.Now()); err != nil {
				t.Errorf("jwx: %v", err)
			}
			if _, err := verifyStdlib(s.JWKS(), tok, clk.Now()); err != nil {
				t.Errorf("stdlib: %v", err)
			}
			if err := s.Refresh(context.Background()); err != nil {
				t.Errorf("Refresh of a static key: %v", err)
			}
			s.Close()
			s.Close()
		})
	}
}

// TestThumbprintRFC7638: the kid is the RFC 7638 §3.1 example's
// thumbprint for the example's key.
func TestThumbprintRFC7638(t *testing.T) {
	b := func(s string) []byte {
		v, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	pub := &rsa.PublicKey{E: 65537}
	pub.N = new(big.Int).SetBytes(b(n))
	got, err := thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint = %s, want %s", got, want)
	}
}
