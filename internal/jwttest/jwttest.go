// Package jwttest signs tokens for tests: keys generated per test, their
// JWKS, and JWTs with any header and claims — including the malformed and
// hostile ones a test provider would never issue. Test-only: helpers panic
// instead of returning errors.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Key is a signing key with its key id and algorithm.
type Key struct {
	KID     string
	Alg     string
	Private crypto.Signer
	// OmitAlg leaves "alg" out of the published JWK, as some providers do.
	OmitAlg bool
}

// NewKey generates a key for alg: RS*/PS* (RSA 2048), ES256/384/512, EdDSA.
func NewKey(kid, alg string) *Key {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		panic("jwttest: unsupported alg " + alg)
	}
	if err != nil {
		panic(err)
	}
	return &Key{KID: kid, Alg: alg, Private: priv}
}

// NewRSAKey wraps an existing RSA key (e.g. a weak one, for negative tests).
func NewRSAKey(kid string, priv *rsa.PrivateKey) *Key {
	return &Key{KID: kid, Alg: "RS256", Private: priv}
}

// JWK returns the public JWK of k.
func (k *Key) JWK() jwk.Key {
	pub, err := jwk.FromRaw(k.Private.Public())
	if err != nil {
		panic(err)
	}
	if k.KID != "" {
		_ = pub.Set(jwk.KeyIDKey, k.KID)
	}
	if !k.OmitAlg {
		_ = pub.Set(jwk.AlgorithmKey, jwa.SignatureAlgorithm(k.Alg))
	}
	_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	return pub
}

// JWKS returns the JSON Web Key Set publishing keys.
func JWKS(keys ...*Key) []byte {
	set := jwk.NewSet()
	for _, k := range keys {
		_ = set.AddKey(k.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// Sign returns a compact JWS of claims, signed by k, with kid and alg in the
// header and any extra header fields.
func (k *Key) Sign(claims map[string]any, extraHeader map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	hdr := jws.NewHeaders()
	if k.KID != "" {
		_ = hdr.Set(jws.KeyIDKey, k.KID)
	}
	_ = hdr.Set(jws.TypeKey, "JWT")
	for name, v := range extraHeader {
		_ = hdr.Set(name, v)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(k.Alg), k.Private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		panic(err)
	}
	return string(out)
}

// Raw builds a token from an arbitrary header and claims and a signature
// made by sign over the signing input (nil: an empty signature).
func Raw(header, claims map[string]any, sign func(input []byte) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc(h) + "." + enc(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + enc(sig)
}

// HMAC returns a sign function computing HMAC-SHA256 with secret, for the
// "HS256 signed with the public key" attack.
func HMAC(secret []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	}
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
