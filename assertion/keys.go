package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// The algorithms a Signer signs with.
const (
	es256 = "ES256"
	rs256 = "RS256"
	ps256 = "PS256"
	edDSA = "EdDSA"
)

var algorithms = []string{es256, rs256, ps256, edDSA}

// minRSABits is the shortest RSA key accepted (RFC 7518 §3.3).
const minRSABits = 2048

// ErrUnsupportedKey: a private key of a type, curve or size the package
// does not sign with, or one that does not fit the configured algorithm.
var ErrUnsupportedKey = errors.New("assertion: unsupported signing key")

// signingKey is one private key of the ring with what signing needs
// precomputed. It never changes once built, so a cache entry can remember
// the key that signed it by pointer.
type signingKey struct {
	kid       string // RFC 7638 thumbprint (SHA-256, base64url)
	alg       string
	priv      crypto.Signer
	activates time.Time // zero for a static key
	header    string    // the base64url protected header and the dot after it
}

// newSigningKey computes the kid and the protected header of priv.
func newSigningKey(priv crypto.Signer, alg string, activates time.Time) (*signingKey, error) {
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	hdr := `{"alg":"` + alg + `","kid":"` + kid + `","typ":"JWT"}`
	return &signingKey{
		kid:       kid,
		alg:       alg,
		priv:      priv,
		activates: activates,
		header:    base64.RawURLEncoding.EncodeToString([]byte(hdr)) + ".",
	}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of pub, base64url encoded.
func thumbprint(pub crypto.PublicKey) (string, error) {
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return "", fmt.Errorf("assertion: public key: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("assertion: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// sign returns the JWS signature of input (RFC 7518 §3).
func (k *signingKey) sign(input []byte) ([]byte, error) {
	if k.alg == edDSA {
		return ed25519.Sign(k.priv.(ed25519.PrivateKey), input), nil
	}
	h := sha256.Sum256(input)
	switch k.alg {
	case es256:
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	case rs256:
		return rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case ps256:
		return rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, h[:],
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return nil, fmt.Errorf("assertion: algorithm %q", k.alg)
}

// keyAlgorithm returns the algorithm priv signs with: want when given and
// fitting, else the key's default (RS256 for RSA).
func keyAlgorithm(priv crypto.PrivateKey, want string) (string, error) {
	var fits []string
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: EC curve %s (only P-256, for ES256)", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		fits = []string{es256}
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return "", fmt.Errorf("%w: RSA key of %d bits (at least %d)", ErrUnsupportedKey, bits, minRSABits)
		}
		fits = []string{rs256, ps256}
	case ed25519.PrivateKey:
		fits = []string{edDSA}
	default:
		return "", fmt.Errorf("%w: %T (EC P-256, RSA or Ed25519 only)", ErrUnsupportedKey, priv)
	}
	if want == "" {
		return fits[0], nil
	}
	if !slices.Contains(fits, want) {
		return "", fmt.Errorf("%w: the key signs %s, not %s", ErrUnsupportedKey, strings.Join(fits, " or "), want)
	}
	return want, nil
}

// parsePrivateKeyPEM reads the one private key in data: PKCS#8 ("PRIVATE
// KEY"), SEC 1 ("EC PRIVATE KEY", possibly after "EC PARAMETERS") or
// PKCS#1 ("RSA PRIVATE KEY"). Other blocks (certificates) are skipped;
// encrypted keys are refused. Errors never quote the data.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	var found crypto.Signer
	var others []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		var err error
		switch b.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("assertion: encrypted private keys are not supported")
		default:
			others = append(others, b.Type)
			continue
		}
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("assertion: encrypted private keys are not supported")
		}
		if err != nil {
			return nil, fmt.Errorf("assertion: %s block: %w", b.Type, err)
		}
		if found != nil {
			return nil, errors.New("assertion: more than one private key in the PEM data")
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
		}
		found = signer
	}
	switch {
	case found != nil:
		return found, nil
	case len(others) > 0:
		return nil, fmt.Errorf("assertion: no private key in the PEM data (found %s)", strings.Join(others, ", "))
	default:
		return nil, errors.New("assertion: no PEM data")
	}
}

// generateKey makes a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case es256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case rs256, ps256:
		return rsa.GenerateKey(rand.Reader, minRSABits)
	case edDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("assertion: algorithm %q", alg)
}

// encodePKCS8 is priv as a PKCS#8 PEM block.
func encodePKCS8(priv crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("assertion: encoding private key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}
