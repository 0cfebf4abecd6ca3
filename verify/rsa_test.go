package verify

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"sync"
	"testing"
)

// The tests here hold rsaKey to crypto/rsa: for every key, algorithm,
// input and signature, rsaKey.verify says yes exactly when
// rsa.VerifyPKCS1v15 does.

var (
	testRSAOnce sync.Once
	testRSA     *rsa.PrivateKey
)

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	testRSAOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testRSA = k
	})
	return testRSA
}

var rsaHashes = map[string]crypto.Hash{"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512}

func digestOf(alg string, input []byte) []byte {
	switch alg {
	case "RS256":
		s := sha256.Sum256(input)
		return s[:]
	case "RS384":
		s := sha512.Sum384(input)
		return s[:]
	default:
		s := sha512.Sum512(input)
		return s[:]
	}
}

// agree checks that rsaKey and crypto/rsa give the same verdict, and
// returns it.
func agree(t testing.TB, pub *rsa.PublicKey, alg string, input, sig []byte) bool {
	t.Helper()
	k := newRSAKey(pub)
	if k == nil {
		t.Fatal("newRSAKey refused a key crypto/rsa accepts")
	}
	ours := k.verify(alg, input, sig)
	theirs := rsa.VerifyPKCS1v15(pub, rsaHashes[alg], digestOf(alg, input), sig) == nil
	if ours != theirs {
		t.Fatalf("%s over %d bytes, signature %x: rsaKey says %v, crypto/rsa says %v", alg, len(input), sig, ours, theirs)
	}
	return ours
}

// rawSign returns em^d mod n: a "signature" of any encoded message em, so
// the tests can present encodings a signer would never produce.
func rawSign(priv *rsa.PrivateKey, em []byte) []byte {
	m := new(big.Int).SetBytes(em)
	s := new(big.Int).Exp(m, priv.D, priv.N)
	return s.FillBytes(make([]byte, priv.Size()))
}

// encode is the RSASSA-PKCS1-v1_5 encoding of digest with DigestInfo
// prefix, for a modulus of size bytes.
func encode(size int, prefix, digest []byte) []byte {
	em := make([]byte, size)
	em[1] = 1
	t := append(append([]byte{}, prefix...), digest...)
	for i := 2; i < size-len(t)-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-len(t):], t)
	return em
}

func TestRSAKeyAgreesWithCryptoRSA(t *testing.T) {
	priv := testRSAKey(t)
	pub := &priv.PublicKey
	input := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9")
	prefixes := map[string][]byte{"RS256": digestInfoSHA256, "RS384": digestInfoSHA384, "RS512": digestInfoSHA512}
	for alg, h := range rsaHashes {
		t.Run(alg, func(t *testing.T) {
			sig, err := rsa.SignPKCS1v15(nil, priv, h, digestOf(alg, input))
			if err != nil {
				t.Fatal(err)
			}
			if !agree(t, pub, alg, input, sig) {
				t.Fatal("a valid signature was refused")
			}
			// Every other algorithm's check of this signature fails.
			for other := range rsaHashes {
				if other != alg && agree(t, pub, other, input, sig) {
					t.Fatalf("an %s signature passed as %s", alg, other)
				}
			}
			// Another input.
			if agree(t, pub, alg, append(bytes.Clone(input), 'x'), sig) {
				t.Fatal("the signature passed for another input")
			}
			// Each byte of the signature changed in turn.
			for i := range sig {
				bad := bytes.Clone(sig)
				bad[i] ^= 0x01
				if agree(t, pub, alg, input, bad) {
					t.Fatalf("a signature with byte %d changed passed", i)
				}
			}
			// Too short, too long, empty, the modulus itself and above it.
			n := priv.N.FillBytes(make([]byte, priv.Size()))
			over := new(big.Int).Add(priv.N, big.NewInt(1)).FillBytes(make([]byte, priv.Size()))
			for name, bad := range map[string][]byte{
				"short": sig[1:], "long": append([]byte{0}, sig...), "empty": nil,
				"n": n, "n+1": over, "zero": make([]byte, len(sig)), "one": append(make([]byte, len(sig)-1), 1),
			} {
				if agree(t, pub, alg, input, bad) {
					t.Fatalf("signature %s passed", name)
				}
			}
			// Encodings a correct signer never makes, signed with the key.
			digest := digestOf(alg, input)
			good := encode(priv.Size(), prefixes[alg], digest)
			if !agree(t, pub, alg, input, rawSign(priv, good)) {
				t.Fatal("the test's own encoding is wrong")
			}
			mutants := map[string]func(em []byte){
				"first byte 1":        func(em []byte) { em[0] = 1 },
				"block type 2":        func(em []byte) { em[1] = 2 },
				"a padding byte 0xfe": func(em []byte) { em[5] = 0xfe },
				"last padding byte 0": func(em []byte) { em[len(em)-len(prefixes[alg])-len(digest)-2] = 0 },
				"separator 0xff":      func(em []byte) { em[len(em)-len(prefixes[alg])-len(digest)-1] = 0xff },
				"another hash's OID":  func(em []byte) { em[len(em)-len(digest)-5] ^= 0x03 },
				"DigestInfo length":   func(em []byte) { em[len(em)-len(prefixes[alg])-len(digest)+1]++ },
				"digest's last byte":  func(em []byte) { em[len(em)-1] ^= 0x80 },
				"digest's first byte": func(em []byte) { em[len(em)-len(digest)] ^= 0x80 },
			}
			for name, mutate := range mutants {
				em := bytes.Clone(good)
				mutate(em)
				if agree(t, pub, alg, input, rawSign(priv, em)) {
					t.Fatalf("an encoding with %s passed", name)
				}
			}
			// The DigestInfo without its NULL parameters (RFC 8017 §9.2
			// note 2 allows it; crypto/rsa, and so rsaKey, do not).
			p := prefixes[alg]
			noNull := append([]byte{0x30, p[1] - 2, 0x30, p[3] - 2}, p[4:len(p)-4]...)
			noNull = append(noNull, p[len(p)-2:]...)
			if agree(t, pub, alg, input, rawSign(priv, encode(priv.Size(), noNull, digest))) {
				t.Fatal("a DigestInfo without NULL parameters passed")
			}
		})
	}
}

// TestRSAKeyAgreesAtOtherSizes: providers also publish 3072- and 4096-bit
// keys, which bigmod multiplies without its 2048-bit special case.
func TestRSAKeyAgreesAtOtherSizes(t *testing.T) {
	input := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9")
	for _, bits := range []int{3072, 4096} {
		priv, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		for alg, h := range rsaHashes {
			sig, err := rsa.SignPKCS1v15(nil, priv, h, digestOf(alg, input))
			if err != nil {
				t.Fatal(err)
			}
			if !agree(t, &priv.PublicKey, alg, input, sig) {
				t.Fatalf("%d bits, %s: a valid signature was refused", bits, alg)
			}
			for _, i := range []int{0, len(sig) / 2, len(sig) - 1} {
				bad := bytes.Clone(sig)
				bad[i] ^= 0x40
				if agree(t, &priv.PublicKey, alg, input, bad) {
					t.Fatalf("%d bits, %s: a signature with byte %d changed passed", bits, alg, i)
				}
			}
		}
	}
}

// TestNewRSAKeyRefusesWhatCryptoRSARefuses: keys crypto/rsa refuses are
// not prepared, so their tokens go through crypto/rsa and fail there.
func TestNewRSAKeyRefusesWhatCryptoRSARefuses(t *testing.T) {
	priv := testRSAKey(t)
	for name, pub := range map[string]*rsa.PublicKey{
		"even exponent":      {N: priv.N, E: 65536},
		"exponent 1":         {N: priv.N, E: 1},
		"negative exponent":  {N: priv.N, E: -3},
		"exponent over 2^31": {N: priv.N, E: 1 << 33},
		"even modulus":       {N: new(big.Int).Lsh(priv.N, 1), E: 65537},
		"512-bit modulus":    {N: new(big.Int).Rsh(priv.N, 1536), E: 65537},
		"no modulus":         {E: 65537},
		"zero modulus":       {N: new(big.Int), E: 65537},
	} {
		if newRSAKey(pub) != nil {
			t.Errorf("%s: prepared", name)
		}
	}
	if newRSAKey(&priv.PublicKey) == nil {
		t.Error("a 2048-bit key with e=65537 was not prepared")
	}
	if newRSAKey(&rsa.PublicKey{N: priv.N, E: 3}) == nil {
		t.Error("e=3 (which crypto/rsa accepts) was not prepared")
	}
}

// FuzzRSAKeyAgreesWithCryptoRSA signs whatever encoded message the
// fuzzer makes with the test key, and checks both verifiers' verdicts on
// it, for each algorithm; and checks the fuzzer's bytes as a signature.
func FuzzRSAKeyAgreesWithCryptoRSA(f *testing.F) {
	priv := testRSAKey(f)
	input := []byte("header.payload")
	f.Add(encode(priv.Size(), digestInfoSHA256, digestOf("RS256", input)), byte(0))
	f.Add(encode(priv.Size(), digestInfoSHA384, digestOf("RS384", input)), byte(1))
	f.Add(encode(priv.Size(), digestInfoSHA512, digestOf("RS512", input)), byte(2))
	f.Add([]byte{0, 1, 0xff, 0}, byte(0))
	algs := []string{"RS256", "RS384", "RS512"}
	f.Fuzz(func(t *testing.T, em []byte, which byte) {
		alg := algs[int(which)%len(algs)]
		agree(t, &priv.PublicKey, alg, input, em)
		if len(em) == priv.Size() && new(big.Int).SetBytes(em).Cmp(priv.N) < 0 {
			agree(t, &priv.PublicKey, alg, input, rawSign(priv, em))
		}
	})
}

// BenchmarkRSAVerify: an RS256 check with the prepared key and with
// crypto/rsa, which prepares the modulus on every call.
func BenchmarkRSAVerify(b *testing.B) {
	priv := testRSAKey(b)
	input := bytes.Repeat([]byte("a"), 1200)
	digest := digestOf("RS256", input)
	sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("prepared", func(b *testing.B) {
		k := newRSAKey(&priv.PublicKey)
		b.ReportAllocs()
		for b.Loop() {
			if !k.verify("RS256", input, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("crypto-rsa", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := sha256.Sum256(input)
			if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, d[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
