package verify

import (
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"

	"filippo.io/bigmod"
)

// rsaKey checks RS256, RS384 and RS512 signatures (RSASSA-PKCS1-v1_5,
// RFC 7518 §3.3) with a provider's RSA key whose modulus was prepared
// once, when the key set was read.
//
// crypto/rsa has no way to keep that preparation for a public key: every
// VerifyPKCS1v15 derives the Montgomery constants of the modulus again,
// about a third of an RS256 check (30 → 20 µs; BenchmarkRSAVerify). The
// arithmetic here is crypto/rsa's own: filippo.io/bigmod is the standard
// library's crypto/internal/fips140/bigmod, published by its author, and
// verify is the same two steps as crypto/internal/fips140/rsa's
// verifyPKCS1v15 — s^e mod n, compared whole with the encoding of the
// expected digest (RFC 8017 §8.2.2). A differential fuzz test holds it to
// rsa.VerifyPKCS1v15.
type rsaKey struct {
	n    *bigmod.Modulus
	e    uint
	size int // the modulus's length in bytes: a signature's length
}

// newRSAKey prepares pub, or returns nil for a key that crypto/rsa would
// refuse or that needs its checks: in FIPS 140-3 mode, and for
// moduli and exponents outside what crypto/rsa accepts, signatures go
// through crypto/rsa as before.
func newRSAKey(pub *rsa.PublicKey) *rsaKey {
	if fips140.Enabled() || pub.N == nil || pub.N.Sign() <= 0 || pub.N.Bit(0) == 0 || pub.N.BitLen() < 1024 ||
		pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1 {
		return nil
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	return &rsaKey{n: n, e: uint(pub.E), size: (pub.N.BitLen() + 7) / 8}
}

// The DER of a DigestInfo up to the digest (RFC 8017 §9.2, note 1).
var (
	digestInfoSHA256 = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	digestInfoSHA384 = []byte{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}
	digestInfoSHA512 = []byte{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}
)

// handles reports whether verify checks alg (the other RSA algorithms,
// PS256 and friends, go through crypto/rsa).
func (*rsaKey) handles(alg string) bool {
	return alg == "RS256" || alg == "RS384" || alg == "RS512"
}

// verify reports whether sig is k's RSASSA-PKCS1-v1_5 signature of input
// with alg's hash. Everything it reads is public (the key, the token), so
// it need not run in constant time.
func (k *rsaKey) verify(alg string, input, sig []byte) bool {
	var sum [sha512.Size]byte
	var digest, prefix []byte
	switch alg {
	case "RS256":
		s := sha256.Sum256(input)
		digest, prefix = sum[:copy(sum[:], s[:])], digestInfoSHA256
	case "RS384":
		s := sha512.Sum384(input)
		digest, prefix = sum[:copy(sum[:], s[:])], digestInfoSHA384
	case "RS512":
		s := sha512.Sum512(input)
		digest, prefix = sum[:copy(sum[:], s[:])], digestInfoSHA512
	default:
		return false
	}
	// A signature is exactly k.size bytes, and less than the modulus.
	tLen := len(prefix) + len(digest)
	if len(sig) != k.size || k.size < tLen+11 {
		return false
	}
	s, err := bigmod.NewNat().SetBytes(sig, k.n)
	if err != nil {
		return false
	}
	em := bigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Bytes(k.n)
	// em must be 0x00 0x01 0xff… 0x00 DigestInfo digest (RFC 8017 §9.2).
	ps := em[2 : k.size-tLen-1]
	if em[0] != 0 || em[1] != 1 || em[k.size-tLen-1] != 0 {
		return false
	}
	for _, b := range ps {
		if b != 0xff {
			return false
		}
	}
	return string(em[k.size-tLen:k.size-len(digest)]) == string(prefix) &&
		string(em[k.size-len(digest):]) == string(digest)
}
