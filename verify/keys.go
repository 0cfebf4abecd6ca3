package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// KeySet is where a Verifier finds a provider's public signing keys:
// NewStaticKeySet for keys known up front, NewRemoteKeySet for a provider's
// JWKS URL.
type KeySet interface {
	// current returns the keys known now, fetching them first if there
	// are none yet. It fails with ErrKeysUnavailable when no keys exist.
	current(ctx context.Context) (keyList, error)
	// refresh is called when no key matches a token: it fetches the keys
	// again if its rate limit allows, and returns the latest keys.
	refresh(ctx context.Context) (keyList, error)
	// generation changes when the keys do (a key withdrawn or added).
	generation() uint64
}

// publicKey is one usable verification key.
type publicKey struct {
	kid string
	alg string  // "" when the JWK does not name one
	key any     // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	rsa *rsaKey // an RSA key prepared for RS256/384/512; nil: crypto/rsa checks
}

// keyList is an immutable snapshot of a key set.
type keyList []publicKey

// maxKeys bounds how many keys of a JWKS are kept.
const maxKeys = 100

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// keysFromSet converts a JWKS into usable public keys. Keys that cannot
// verify signatures — encryption keys, symmetric keys, weak RSA keys,
// unsupported types — are left out.
func keysFromSet(set jwk.Set) keyList {
	var out keyList
	for i := 0; i < set.Len() && len(out) < maxKeys; i++ {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		if use := k.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
			continue
		}
		if k.KeyType() == "oct" {
			continue
		}
		pub, err := k.PublicKey()
		if err != nil {
			continue
		}
		var raw any
		if err := pub.Raw(&raw); err != nil {
			continue
		}
		var prepared *rsaKey
		switch rk := raw.(type) {
		case *rsa.PublicKey:
			if rk.N.BitLen() < minRSABits {
				continue
			}
			prepared = newRSAKey(rk)
		case *ecdsa.PublicKey:
		case ed25519.PublicKey:
		default:
			continue
		}
		alg := ""
		if a := k.Algorithm(); a != nil {
			alg = a.String()
		}
		out = append(out, publicKey{kid: k.KeyID(), alg: alg, key: raw, rsa: prepared})
	}
	return out
}

// fits reports whether key k can have produced a signature with alg.
func (k publicKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// match returns the keys that may have signed a token with kid and alg. A
// token without kid may be signed by any fitting key; a JWK without kid may
// have signed any token.
func (l keyList) match(kid, alg string) keyList {
	var out keyList
	for _, k := range l {
		if (kid == "" || k.kid == "" || k.kid == kid) && k.fits(alg) {
			out = append(out, k)
		}
	}
	return out
}

// checkSignature finds the keys that fit the token's header and checks the
// signature with them, refreshing the key set once when none fits.
func checkSignature(ctx context.Context, ks KeySet, h header, t compact) error {
	sig, err := b64.DecodeString(t.signature)
	if err != nil {
		return ErrMalformed
	}
	keys, err := ks.current(ctx)
	if err != nil {
		return err
	}
	candidates := keys.match(h.Kid, h.Alg)
	if len(candidates) == 0 {
		if keys, err = ks.refresh(ctx); err != nil {
			return err
		}
		if candidates = keys.match(h.Kid, h.Alg); len(candidates) == 0 {
			return ErrUnknownKey
		}
	}
	if h.Kid == "" && len(candidates) > 1 {
		// Without a kid a token would cost a signature check per fitting
		// key, and which key signed it is ambiguous: OpenID RP conformance
		// lets a client refuse it (review SA2-27).
		return fmt.Errorf("%w: the token names no kid and several keys fit", ErrUnknownKey)
	}
	verifier, err := jws.NewVerifier(jwa.SignatureAlgorithm(h.Alg))
	if err != nil {
		return ErrAlgorithm
	}
	// The signing input is the token's own bytes, read in place: a copy
	// would be a kilobyte per verification. The verifiers only hash it.
	input := unsafe.Slice(unsafe.StringData(t.signingInput), len(t.signingInput))
	for _, k := range candidates {
		if k.rsa != nil && k.rsa.handles(h.Alg) {
			if k.rsa.verify(h.Alg, input, sig) {
				return nil
			}
		} else if verifier.Verify(input, sig, k.key) == nil {
			return nil
		}
	}
	return ErrSignature
}

// StaticKeySet is a fixed set of keys (tests, or keys configured out of band).
type StaticKeySet struct{ keys keyList }

// NewStaticKeySet parses a JWKS document.
func NewStaticKeySet(jwksJSON []byte) (*StaticKeySet, error) {
	set, err := jwk.Parse(jwksJSON)
	if err != nil {
		return nil, fmt.Errorf("verify: parsing JWKS: %w", err)
	}
	keys := keysFromSet(set)
	if len(keys) == 0 {
		return nil, errors.New("verify: JWKS holds no usable signing key")
	}
	return &StaticKeySet{keys: keys}, nil
}

func (s *StaticKeySet) current(context.Context) (keyList, error) { return s.keys, nil }
func (s *StaticKeySet) refresh(context.Context) (keyList, error) { return s.keys, nil }
func (s *StaticKeySet) generation() uint64                       { return 0 }

// sameKeys reports whether a and b hold the same keys in the same order.
func sameKeys(a, b keyList) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ka, ok := a[i].key.(interface{ Equal(crypto.PublicKey) bool })
		if a[i].kid != b[i].kid || a[i].alg != b[i].alg || !ok || !ka.Equal(b[i].key) {
			return false
		}
	}
	return true
}
