package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

const (
	dpopURL         = "https://api.example.com/orders"
	dpopAccessToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
)

var dpopRequest, _ = url.Parse(dpopURL + "?page=2")

// proofKey is a client's DPoP key: no kid, as clients send it.
func proofKey(alg string) *jwttest.Key {
	k := jwttest.NewKey("", alg)
	k.OmitAlg = true
	return k
}

// publicJWK is k's public JWK as a client puts it in the header: no alg,
// no use.
func publicJWK(k *jwttest.Key) jwk.Key {
	pub, err := jwk.FromRaw(k.Private.Public())
	if err != nil {
		panic(err)
	}
	return pub
}

func publicJWKMap(k *jwttest.Key) map[string]any {
	b, _ := json.Marshal(publicJWK(k))
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

var dpopJTI = 0

func proofClaims() map[string]any {
	dpopJTI++
	return map[string]any{
		"jti": fmt.Sprintf("e1j3V_bKic8-LAEB-%d", dpopJTI),
		"htm": "GET",
		"htu": dpopURL,
		"iat": epoch.Unix(),
		"ath": athOf(dpopAccessToken),
	}
}

func athOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proof signs claims with k, with typ dpop+jwt and k's public jwk in the
// header unless header changes them.
func proof(k *jwttest.Key, claims map[string]any, header map[string]any) string {
	h := map[string]any{"typ": "dpop+jwt", "jwk": publicJWK(k)}
	for name, v := range header {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	return k.Sign(claims, h)
}

func newDPoPVerifier(t testing.TB, clock *time.Time) *DPoPVerifier {
	t.Helper()
	now := func() time.Time { return epoch }
	if clock != nil {
		now = func() time.Time { return *clock }
	}
	v, err := NewDPoPVerifier(DPoPConfig{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewDPoPVerifierRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  DPoPConfig
	}{
		{"HS256", DPoPConfig{Algorithms: []string{"ES256", "HS256"}}},
		{"none", DPoPConfig{Algorithms: []string{"none"}}},
		{"lowercase alg", DPoPConfig{Algorithms: []string{"es256"}}},
		{"negative max age", DPoPConfig{MaxAge: -time.Second}},
		{"huge max age", DPoPConfig{MaxAge: time.Hour}},
		{"negative skew", DPoPConfig{ClockSkew: -time.Second}},
		{"huge skew", DPoPConfig{ClockSkew: time.Hour}},
		{"negative replay cache", DPoPConfig{ReplayCacheSize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewDPoPVerifier(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestDPoPRejects: each case breaks one rule of RFC 9449 §4.3 in an
// otherwise valid proof and must fail for that reason.
func TestDPoPRejects(t *testing.T) {
	k := proofKey("ES256")
	other := proofKey("ES256")
	rsaKey := proofKey("RS256")
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakKey := jwttest.NewRSAKey("", weak)
	privateJWK, err := jwk.FromRaw(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	dummySig := func([]byte) []byte { return []byte{1, 2, 3} }
	rawHeader := func(alg string) map[string]any {
		return map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": publicJWKMap(k)}
	}
	with := func(name string, value any) map[string]any {
		c := proofClaims()
		if value == nil {
			delete(c, name)
		} else {
			c[name] = value
		}
		return c
	}
	good := proof(k, proofClaims(), nil)
	parts := strings.Split(good, ".")

	for _, tc := range []struct {
		name   string
		proofs []string
		method string // default GET
		token  string // default dpopAccessToken; "-" for none
		want   error
	}{
		{name: "no DPoP header", proofs: nil, want: errDPoPMissing},
		{name: "two DPoP headers", proofs: []string{good, proof(k, proofClaims(), nil)}, want: errDPoPMultiple},
		{name: "oversize", proofs: []string{parts[0] + "." + strings.Repeat("A", DefaultMaxDPoPProofSize) + "." + parts[2]}, want: errDPoPTooLarge},
		{name: "not a JWS", proofs: []string{"not-a-jws"}, want: errDPoPMalformed},
		{name: "two values in one header", proofs: []string{good + ", " + good}, want: errDPoPMalformed},
		{name: "JSON serialization", proofs: []string{`{"payload":"` + parts[1] + `"}`}, want: errDPoPMalformed},
		{name: "header not JSON", proofs: []string{"bm90anNvbg." + parts[1] + "." + parts[2]}, want: errDPoPHeader},
		{name: "typ JWT", proofs: []string{proof(k, proofClaims(), map[string]any{"typ": "JWT"})}, want: errDPoPType},
		{name: "typ missing", proofs: []string{jwttest.Raw(map[string]any{"alg": "ES256", "jwk": publicJWKMap(k)}, proofClaims(), dummySig)}, want: errDPoPType},
		{name: "typ at+jwt", proofs: []string{proof(k, proofClaims(), map[string]any{"typ": "at+jwt"})}, want: errDPoPType},
		{name: "crit header", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWKMap(k), "crit": []string{"b64"}}, proofClaims(), dummySig)}, want: errDPoPCrit},
		{name: "alg none", proofs: []string{jwttest.Raw(rawHeader("none"), proofClaims(), dummySig)}, want: errDPoPAlgorithm},
		{name: "alg missing", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "jwk": publicJWKMap(k)}, proofClaims(), dummySig)}, want: errDPoPAlgorithm},
		{name: "HS256 keyed with the public JWK", proofs: []string{jwttest.Raw(rawHeader("HS256"), proofClaims(), jwttest.HMAC([]byte(`{"crv":"P-256"}`)))}, want: errDPoPAlgorithm},
		{name: "ES512 not in the default list", proofs: []string{proof(proofKey("ES512"), proofClaims(), nil)}, want: errDPoPAlgorithm},
		{name: "jwk missing", proofs: []string{proof(k, proofClaims(), map[string]any{"jwk": nil})}, want: errDPoPNoJWK},
		{name: "jwk null", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": nil}, proofClaims(), dummySig)}, want: errDPoPNoJWK},
		{name: "jwk with private d", proofs: []string{proof(k, proofClaims(), map[string]any{"jwk": privateJWK})}, want: errDPoPPrivate},
		{name: "jwk symmetric", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, proofClaims(), dummySig)}, want: errDPoPPrivate},
		{name: "jwk a string", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": "key"}, proofClaims(), dummySig)}, want: errDPoPJWK},
		{name: "jwk unknown kty", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "XYZ", "x": "AA"}}, proofClaims(), dummySig)}, want: errDPoPJWK},
		{name: "jwk for encryption", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": with2(publicJWKMap(k), "use", "enc")}, proofClaims(), dummySig)}, want: errDPoPJWK},
		{name: "jwk point off the curve", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": with2(publicJWKMap(k), "y", publicJWKMap(other)["y"])}, proofClaims(), dummySig)}, want: errDPoPJWK},
		{name: "RSA key of 1024 bits", proofs: []string{proof(weakKey, proofClaims(), nil)}, want: errDPoPJWK},
		{name: "RS256 header with an EC jwk", proofs: []string{jwttest.Raw(rawHeader("RS256"), proofClaims(), dummySig)}, want: errDPoPKeyAlg},
		{name: "ES384 header with a P-256 jwk", proofs: []string{jwttest.Raw(rawHeader("ES384"), proofClaims(), dummySig)}, want: errDPoPKeyAlg},
		{name: "jwk alg differs from header alg", proofs: []string{jwttest.Raw(map[string]any{"typ": "dpop+jwt", "alg": "PS256", "jwk": with2(publicJWKMap(rsaKey), "alg", "RS256")}, proofClaims(), dummySig)}, want: errDPoPKeyAlg},
		{name: "signed by another key", proofs: []string{proof(other, proofClaims(), map[string]any{"jwk": publicJWK(k)})}, want: errDPoPSignature},
		{name: "payload swapped under a valid signature", proofs: []string{parts[0] + "." + strings.Split(proof(k, with("htm", "POST"), nil), ".")[1] + "." + parts[2]}, method: "POST", want: errDPoPSignature},
		{name: "signature not base64url", proofs: []string{parts[0] + "." + parts[1] + ".A"}, want: errDPoPMalformed},
		{name: "claims not JSON", proofs: []string{signRaw(k, "bm90anNvbg")}, want: errDPoPClaims},
		{name: "jti missing", proofs: []string{proof(k, with("jti", nil), nil)}, want: errDPoPJTI},
		{name: "jti empty", proofs: []string{proof(k, with("jti", ""), nil)}, want: errDPoPJTI},
		{name: "jti too long", proofs: []string{proof(k, with("jti", strings.Repeat("j", MaxDPoPJTILength+1)), nil)}, want: errDPoPJTI},
		{name: "jti a number", proofs: []string{proof(k, with("jti", 7), nil)}, want: errDPoPClaims},
		{name: "htm POST for a GET", proofs: []string{proof(k, with("htm", "POST"), nil)}, want: errDPoPMethod},
		{name: "htm lowercase", proofs: []string{proof(k, with("htm", "get"), nil)}, want: errDPoPMethod},
		{name: "htm missing", proofs: []string{proof(k, with("htm", nil), nil)}, want: errDPoPMethod},
		{name: "htu missing", proofs: []string{proof(k, with("htu", nil), nil)}, want: errDPoPURI},
		{name: "htu another host", proofs: []string{proof(k, with("htu", "https://evil.example.com/orders"), nil)}, want: errDPoPURI},
		{name: "htu a subdomain", proofs: []string{proof(k, with("htu", "https://x.api.example.com/orders"), nil)}, want: errDPoPURI},
		{name: "htu another path", proofs: []string{proof(k, with("htu", "https://api.example.com/orders/7"), nil)}, want: errDPoPURI},
		{name: "htu path case", proofs: []string{proof(k, with("htu", "https://api.example.com/Orders"), nil)}, want: errDPoPURI},
		{name: "htu trailing slash", proofs: []string{proof(k, with("htu", "https://api.example.com/orders/"), nil)}, want: errDPoPURI},
		{name: "htu http", proofs: []string{proof(k, with("htu", "http://api.example.com/orders"), nil)}, want: errDPoPURI},
		{name: "htu another port", proofs: []string{proof(k, with("htu", "https://api.example.com:8443/orders"), nil)}, want: errDPoPURI},
		{name: "htu with user info", proofs: []string{proof(k, with("htu", "https://u@api.example.com/orders"), nil)}, want: errDPoPURI},
		{name: "htu relative", proofs: []string{proof(k, with("htu", "/orders"), nil)}, want: errDPoPURI},
		{name: "htu bad percent-encoding", proofs: []string{proof(k, with("htu", "https://api.example.com/orders%zz"), nil)}, want: errDPoPURI},
		{name: "htu encoded slash", proofs: []string{proof(k, with("htu", "https://api.example.com%2Forders"), nil)}, want: errDPoPURI},
		{name: "iat missing", proofs: []string{proof(k, with("iat", nil), nil)}, want: errDPoPIATMiss},
		{name: "iat a string", proofs: []string{proof(k, with("iat", fmt.Sprint(epoch.Unix())), nil)}, want: errDPoPIATMiss},
		{name: "iat negative", proofs: []string{proof(k, with("iat", -1), nil)}, want: errDPoPIATMiss},
		{name: "iat too old", proofs: []string{proof(k, with("iat", epoch.Add(-DefaultDPoPMaxAge-time.Second).Unix()), nil)}, want: errDPoPTooOld},
		{name: "iat in the future", proofs: []string{proof(k, with("iat", epoch.Add(DefaultDPoPClockSkew+time.Second).Unix()), nil)}, want: errDPoPFuture},
		{name: "ath of another token", proofs: []string{proof(k, with("ath", athOf("another-token")), nil)}, want: errDPoPATH},
		{name: "ath hex instead of base64url", proofs: []string{proof(k, with("ath", fmt.Sprintf("%x", sha256.Sum256([]byte(dpopAccessToken)))), nil)}, want: errDPoPATH},
		{name: "ath missing with a token", proofs: []string{proof(k, with("ath", nil), nil)}, want: errDPoPNoATH},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newDPoPVerifier(t, nil)
			method := cmpOr(tc.method, "GET")
			token := cmpOr(tc.token, dpopAccessToken)
			if token == "-" {
				token = ""
			}
			jkt, err := v.Verify(tc.proofs, method, dpopRequest, token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidDPoPProof) || errors.Is(err, ErrInvalidToken) {
				t.Fatalf("%v: want ErrInvalidDPoPProof only", err)
			}
			if jkt != "" {
				t.Fatal("a thumbprint returned with an error")
			}
			if s := v.Stats(); s.Invalid != 1 || s.Valid != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}

	// The valid proof passes, so each case above failed for its own reason.
	if _, err := newDPoPVerifier(t, nil).Verify([]string{good}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatalf("valid proof: %v", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func with2(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

// signRaw signs an arbitrary payload segment with k.
func signRaw(k *jwttest.Key, payload string) string {
	good := proof(k, map[string]any{}, nil)
	header := strings.Split(good, ".")[0]
	input := header + "." + payload
	s := jwsSignInput(k, input)
	return input + "." + s
}

// jwsSignInput signs a signing input with an ES256 key, as JWS does
// (r || s, 32 bytes each).
func jwsSignInput(k *jwttest.Key, input string) string {
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.Private.(*ecdsa.PrivateKey), sum[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return base64.RawURLEncoding.EncodeToString(sig)
}

func TestDPoPRequestURL(t *testing.T) {
	v := newDPoPVerifier(t, nil)
	k := proofKey("ES256")
	for _, raw := range []string{"/orders", "//api.example.com/orders", "ftp://api.example.com/orders", "mailto:a@example.com"} {
		u, _ := url.Parse(raw)
		if _, err := v.Verify([]string{proof(k, proofClaims(), nil)}, "GET", u, ""); !errors.Is(err, ErrDPoPRequestURL) {
			t.Errorf("%q: err = %v, want ErrDPoPRequestURL", raw, err)
		}
	}
	if _, err := v.Verify([]string{proof(k, proofClaims(), nil)}, "GET", nil, ""); !errors.Is(err, ErrDPoPRequestURL) {
		t.Errorf("nil URL: err = %v", err)
	}
}

// TestDPoPHTU: URIs that are the same after RFC 3986 §6.2.2-6.2.3
// normalization match; query and fragment are ignored on both sides.
func TestDPoPHTU(t *testing.T) {
	for _, tc := range []struct {
		htu, request string
		same         bool
	}{
		{"https://api.example.com/orders", "https://api.example.com/orders", true},
		{"https://api.example.com/orders?x=1", "https://api.example.com/orders?page=2", true},
		{"https://api.example.com/orders#frag", "https://api.example.com/orders", true},
		{"HTTPS://API.Example.COM/orders", "https://api.example.com/orders", true},
		{"https://api.example.com:443/orders", "https://api.example.com/orders", true},
		{"https://api.example.com/orders", "https://api.example.com:443/orders", true},
		{"http://api.example.com:80/orders", "http://api.example.com/orders", true},
		{"https://api.example.com", "https://api.example.com/", true},
		{"https://api.example.com/%7Eu/a%2fb", "https://api.example.com/~u/a%2Fb", true},
		{"https://api.example.com/%6Frders", "https://api.example.com/orders", true},
		{"https://api.example.com/a/./b/../orders", "https://api.example.com/a/orders", true},
		{"https://api.example.com/a/%2E%2E/orders", "https://api.example.com/orders", true},
		{"https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x", true},
		{"https://api.example.com:8443/x", "https://api.example.com:8443/x", true},
		{"https://api.example.com/a%2Fb", "https://api.example.com/a/b", false},
		{"https://api.example.com/orders", "http://api.example.com/orders", false},
		{"https://api.example.com:80/orders", "https://api.example.com/orders", false},
		{"https://api.example.com:0443/orders", "https://api.example.com/orders", false},
		{"https://api.example.com/Orders", "https://api.example.com/orders", false},
		{"https://api.example.com/orders/", "https://api.example.com/orders", false},
		{"https://api.example.com./orders", "https://api.example.com/orders", false},
	} {
		t.Run(tc.htu+" "+tc.request, func(t *testing.T) {
			req, err := url.Parse(tc.request)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := normalizeURI(req)
			if !ok {
				t.Fatal("request URL refused")
			}
			got, ok := normalizeHTU(tc.htu)
			if same := ok && got == want; same != tc.same {
				t.Fatalf("htu %q → %q (%v), request → %q; same = %v, want %v", tc.htu, got, ok, want, same, tc.same)
			}
			// And through Verify.
			k := proofKey("ES256")
			c := proofClaims()
			c["htu"] = tc.htu
			_, err = newDPoPVerifier(t, nil).Verify([]string{proof(k, c, nil)}, "GET", req, dpopAccessToken)
			if (err == nil) != tc.same {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestRemoveDotSegments(t *testing.T) {
	// RFC 3986 §5.2.4's examples and §5.4's, on absolute paths.
	for in, want := range map[string]string{
		"/a/b/c/./../../g":    "/a/g",
		"/./a":                "/a",
		"/a/.":                "/a/",
		"/a/..":               "/",
		"/..":                 "/",
		"/../../g":            "/g",
		"/a/b/../../..":       "/",
		"/a/g.":               "/a/g.",
		"/a/.g":               "/a/.g",
		"/a/..g":              "/a/..g",
		"/a/b/./../g;x=1/./y": "/a/g;x=1/y",
		"/":                   "/",
		"":                    "",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDPoPReplay: a jti is accepted once per key while the proof is
// acceptable.
func TestDPoPReplay(t *testing.T) {
	now := epoch
	v := newDPoPVerifier(t, &now)
	k := proofKey("ES256")
	p := proof(k, proofClaims(), nil)
	if _, err := v.Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if _, err := v.Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); !errors.Is(err, ErrDPoPReplay) {
		t.Fatalf("replayed proof: %v", err)
	}
	// Another proof with the same jti and key (re-signed) is a replay too.
	c := proofClaims()
	c["jti"] = mustClaims(t, p)["jti"]
	if _, err := v.Verify([]string{proof(k, c, nil)}, "GET", dpopRequest, dpopAccessToken); !errors.Is(err, ErrDPoPReplay) {
		t.Fatalf("re-signed proof with a used jti: %v", err)
	}
	// The same jti from another key is another proof.
	if _, err := v.Verify([]string{proof(proofKey("ES256"), c, nil)}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatalf("same jti, another key: %v", err)
	}
	// Once the proof is too old, it is refused for its age; a fresh
	// proof reusing the jti is accepted, as its entry has lapsed.
	now = epoch.Add(DefaultDPoPMaxAge + time.Second)
	if _, err := v.Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); !errors.Is(err, errDPoPTooOld) {
		t.Fatalf("old proof: %v", err)
	}
	c["iat"] = now.Unix()
	if _, err := v.Verify([]string{proof(k, c, nil)}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatalf("fresh proof reusing a lapsed jti: %v", err)
	}
	if s := v.Stats(); s.Valid != 3 || s.Replays != 2 || s.Invalid != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// TestDPoPHeaderCache: a remembered header spares its parsing, not the
// signature check or the claims'.
func TestDPoPHeaderCache(t *testing.T) {
	v := newDPoPVerifier(t, nil)
	k, other := proofKey("ES256"), proofKey("ES256")
	if _, err := v.Verify([]string{proof(k, proofClaims(), nil)}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatal(err)
	}
	if v.headers.Len() != 1 {
		t.Fatalf("%d headers remembered, want 1", v.headers.Len())
	}
	forged := proof(other, proofClaims(), map[string]any{"jwk": publicJWK(k)}) // k's header, other's signature
	if _, err := v.Verify([]string{forged}, "GET", dpopRequest, dpopAccessToken); !errors.Is(err, errDPoPSignature) {
		t.Fatalf("forged proof under a remembered header: %v", err)
	}
	if strings.Split(forged, ".")[0] != strings.Split(proof(k, proofClaims(), nil), ".")[0] {
		t.Fatal("the forged proof's header is not k's")
	}
	c := proofClaims()
	c["htm"] = "DELETE"
	if _, err := v.Verify([]string{proof(k, c, nil)}, "GET", dpopRequest, dpopAccessToken); !errors.Is(err, errDPoPMethod) {
		t.Fatalf("wrong htm under a remembered header: %v", err)
	}
	// Refused headers are not remembered.
	v.Verify([]string{proof(k, proofClaims(), map[string]any{"typ": "JWT"})}, "GET", dpopRequest, dpopAccessToken)
	if v.headers.Len() != 1 {
		t.Fatalf("%d headers remembered, want 1", v.headers.Len())
	}
}

// TestDPoPReplayCacheBounded: the cache holds ReplayCacheSize entries and
// counts the live ones it has to drop.
func TestDPoPReplayCacheBounded(t *testing.T) {
	v, err := NewDPoPVerifier(DPoPConfig{ReplayCacheSize: 2, Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	k := proofKey("ES256")
	first := proof(k, proofClaims(), nil)
	for _, p := range []string{first, proof(k, proofClaims(), nil), proof(k, proofClaims(), nil)} {
		if _, err := v.Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.seen.Len(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	if s := v.Stats(); s.LiveEvictions != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The evicted proof's replay goes unnoticed: the documented cost of a
	// bounded cache, which LiveEvictions reports.
	if _, err := v.Verify([]string{first}, "GET", dpopRequest, dpopAccessToken); err != nil {
		t.Fatalf("evicted jti: %v", err)
	}
}

func mustClaims(t *testing.T, proof string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDPoPValid: proofs of every default algorithm pass, and Verify returns
// the RFC 7638 thumbprint of the key.
func TestDPoPValid(t *testing.T) {
	for _, alg := range DPoPAlgorithms {
		t.Run(alg, func(t *testing.T) {
			k := proofKey(alg)
			v := newDPoPVerifier(t, nil)
			jkt, err := v.Verify([]string{proof(k, proofClaims(), nil)}, "GET", dpopRequest, dpopAccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if want := thumbprint(t, k); jkt != want {
				t.Fatalf("jkt %q, want %q", jkt, want)
			}
		})
	}
	t.Run("no access token, no ath", func(t *testing.T) {
		c := proofClaims()
		delete(c, "ath")
		if _, err := newDPoPVerifier(t, nil).Verify([]string{proof(proofKey("ES256"), c, nil)}, "GET", dpopRequest, ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("typ application/dpop+jwt, fractional iat, a nonce", func(t *testing.T) {
		c := proofClaims()
		c["iat"] = float64(epoch.Unix()) - 0.5
		c["nonce"] = "ignored"
		p := proof(proofKey("ES256"), c, map[string]any{"typ": "application/DPoP+jwt"})
		if _, err := newDPoPVerifier(t, nil).Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("iat at the window's edges", func(t *testing.T) {
		for _, iat := range []time.Time{epoch.Add(-DefaultDPoPMaxAge), epoch.Add(DefaultDPoPClockSkew)} {
			c := proofClaims()
			c["iat"] = iat.Unix()
			if _, err := newDPoPVerifier(t, nil).Verify([]string{proof(proofKey("ES256"), c, nil)}, "GET", dpopRequest, dpopAccessToken); err != nil {
				t.Fatalf("iat %s: %v", iat, err)
			}
		}
	})
	t.Run("jwk with alg and use sig", func(t *testing.T) {
		k := proofKey("PS256")
		p := proof(k, proofClaims(), map[string]any{"jwk": (&jwttest.Key{Alg: "PS256", Private: k.Private}).JWK()})
		if _, err := newDPoPVerifier(t, nil).Verify([]string{p}, "GET", dpopRequest, dpopAccessToken); err != nil {
			t.Fatal(err)
		}
	})
}

// thumbprint computes the RFC 7638 SHA-256 thumbprint of k by hand: the
// required members, in lexicographic order, without whitespace.
func thumbprint(t *testing.T, k *jwttest.Key) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	var members string
	switch pub := k.Private.Public().(type) {
	case *ecdsa.PublicKey:
		size := (pub.Curve.Params().BitSize + 7) / 8
		x, y := make([]byte, size), make([]byte, size)
		pub.X.FillBytes(x)
		pub.Y.FillBytes(y)
		members = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, pub.Curve.Params().Name, enc(x), enc(y))
	case *rsa.PublicKey:
		e := []byte{byte(pub.E >> 16), byte(pub.E >> 8), byte(pub.E)}
		members = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, enc(e), enc(pub.N.Bytes()))
	case ed25519.PublicKey:
		members = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, enc(pub))
	default:
		t.Fatalf("key type %T", pub)
	}
	sum := sha256.Sum256([]byte(members))
	return enc(sum[:])
}

// TestThumbprintRFC7638 checks the thumbprint against RFC 7638 §3.1's
// example key.
func TestThumbprintRFC7638(t *testing.T) {
	const example = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	_, jkt, err := dpopKey(json.RawMessage(example), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; jkt != want {
		t.Fatalf("thumbprint %q, want %q", jkt, want)
	}
}

// TestATH checks ath against RFC 9449 §4.2's example.
func TestATH(t *testing.T) {
	if !athMatches("fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo", dpopAccessToken) {
		t.Fatal("RFC 9449 example ath refused")
	}
	if athMatches("fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo=", dpopAccessToken) || athMatches("", dpopAccessToken) {
		t.Fatal("a malformed ath accepted")
	}
}

func TestConfirmation(t *testing.T) {
	k := proofKey("ES256")
	jkt, err := newDPoPVerifier(t, nil).Verify([]string{proof(k, proofClaims(), nil)}, "GET", dpopRequest, dpopAccessToken)
	if err != nil {
		t.Fatal(err)
	}
	// A verified access token's claims, as Claims.Map returns them.
	tok := jwttest.NewKey("as", "RS256")
	claims, err := ClaimsOfVerified(tok.Sign(map[string]any{"sub": "u", "cnf": map[string]any{"jkt": jkt}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ConfirmationThumbprint(claims.Map()); !ok || got != jkt {
		t.Fatalf("ConfirmationThumbprint = %q, %v", got, ok)
	}
	if err := CheckDPoPBinding(claims.Map(), jkt); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]map[string]any{
		"unbound":       {"sub": "u"},
		"cnf not a map": {"cnf": "x"},
		"jkt not text":  {"cnf": map[string]any{"jkt": 7}},
		"jkt empty":     {"cnf": map[string]any{"jkt": ""}},
		"another key":   {"cnf": map[string]any{"jkt": thumbprint(t, proofKey("ES256"))}},
		"x5t#S256 only": {"cnf": map[string]any{"x5t#S256": jkt}},
	} {
		if err := CheckDPoPBinding(c, jkt); !errors.Is(err, ErrDPoPBinding) || !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if err := CheckDPoPBinding(claims.Map(), ""); !errors.Is(err, ErrDPoPBinding) {
		t.Errorf("empty proof thumbprint: %v", err)
	}
}

// BenchmarkDPoPVerify: one proof per request, as clients send them.
func BenchmarkDPoPVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := proofKey(alg)
			proofs := make([][]string, 1000)
			for i := range proofs {
				proofs[i] = []string{proof(k, proofClaims(), nil)}
			}
			v := newDPoPVerifier(b, nil)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(proofs) {
					b.StopTimer()
					v.seen.Purge()
					i = 0
					b.StartTimer()
				}
				if _, err := v.Verify(proofs[i], "GET", dpopRequest, dpopAccessToken); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
