package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// upstreamVerifier is an app behind gatehouse that checks the assertion
// as its README section says: a stock JWT library (jwx) and the JWKS
// fetched over HTTP from the gateway.
type upstreamVerifier struct {
	jwksURL, issuer, audience string
	now                       func() time.Time

	mu   sync.Mutex
	seen []string // the assertion header of each request ("" when none)
}

func (u *upstreamVerifier) record(r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = append(u.seen, r.Header.Get(defaultAssertionHeader))
}

func (u *upstreamVerifier) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[len(u.seen)-1]
}

// verify checks tok against the gateway's JWKS, fetched now.
func (u *upstreamVerifier) verify(tok string) (jwt.Token, error) {
	resp, err := http.Get(u.jwksURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		return nil, fmt.Errorf("JWKS: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if u.now != nil {
		now = u.now
	}
	return jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(u.issuer), jwt.WithAudience(u.audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey), jwt.WithClock(jwt.ClockFunc(now)))
}

func ecKeyPEM(t testing.TB) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestAssertionThroughHandler: a signed-in request reaches the upstream
// with an assertion a stock library verifies against the published JWKS
// (at both its paths); a client's own assertion header never reaches the
// upstream, signed in or not; a second request reuses the assertion.
func TestAssertionThroughHandler(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.Assertion = &AssertionConfig{SigningKey: ecKeyPEM(t), Claims: []string{"preferred_username"}}
		g.PublicPaths = []string{"/public"}
	})
	a := newApp(t, g)
	u, _ := url.Parse(a.URL)
	v := &upstreamVerifier{jwksURL: a.URL + "/.well-known/gatehouse/jwks.json", issuer: a.URL, audience: u.Host}

	// Anonymous, on a public path, with a forged assertion: stripped.
	r, _ := http.NewRequest("GET", a.URL+"/public", nil)
	r.Header.Set(defaultAssertionHeader, "forged")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	if resp.StatusCode != http.StatusOK || a.seen[len(a.seen)-1].Get(defaultAssertionHeader) != "" {
		t.Fatalf("anonymous: %d, upstream saw %q", resp.StatusCode, a.seen[len(a.seen)-1].Get(defaultAssertionHeader))
	}

	b := a.login(t, "alice")
	if resp, _ := b.get(a.URL+"/page", defaultAssertionHeader, "forged"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	first := a.seen[len(a.seen)-1].Get(defaultAssertionHeader)
	if first == "" || first == "forged" || len(a.seen[len(a.seen)-1][defaultAssertionHeader]) != 1 {
		t.Fatalf("upstream saw %q", a.seen[len(a.seen)-1][defaultAssertionHeader])
	}
	tok, err := v.verify(first)
	if err != nil {
		t.Fatalf("the upstream cannot verify the assertion: %v", err)
	}
	email, _ := tok.Get("email")
	groups, _ := tok.Get("groups")
	pu, _ := tok.Get("preferred_username")
	if tok.Subject() != "alice" || email != "alice@example.com" || fmt.Sprint(groups) != "[admins staff]" || pu != "alice" {
		t.Errorf("claims: sub %q email %v groups %v preferred_username %v", tok.Subject(), email, groups, pu)
	}
	if life := tok.Expiration().Sub(tok.IssuedAt()); life != time.Minute {
		t.Errorf("lifetime %s", life)
	}
	// The path_prefix copy of the JWKS is the same document.
	v.jwksURL = a.URL + "/oauth2/jwks.json"
	if _, err := v.verify(first); err != nil {
		t.Fatalf("path_prefix/jwks.json: %v", err)
	}

	b.get(a.URL + "/page")
	if again := a.seen[len(a.seen)-1].Get(defaultAssertionHeader); again != first {
		t.Error("a second request within the lifetime got a new assertion")
	}
	if st := g.signer.Stats(); st.Signed != 1 {
		t.Errorf("signed %d assertions for two requests", st.Signed)
	}
}

// TestAssertionSharedStorage: two instances (gatehouse blocks of two
// configs) with the same Caddy file storage verify each other's
// assertions, before and after one of them rotates the key ring; a token
// signed before the rotation still verifies against the JWKS after it.
// The clock moves a day, so the assertions are asked for directly rather
// than through a session (whose tokens would have expired).
func TestAssertionSharedStorage(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	instance := func() (*Gatehouse, *app) {
		g := newHandler(t, idp.Issuer(), func(g *Gatehouse) {
			g.Assertion = &AssertionConfig{}
			g.assertionStorage = storage
			g.now = clock.now
		})
		return g, newApp(t, g)
	}
	g1, a1 := instance()
	g2, a2 := instance()
	assertionAt := func(a *app) string {
		t.Helper()
		p := principal{id: &identity.Identity{Subject: "alice", Email: "alice@example.com"}, session: true, notAfter: clock.now().Add(time.Hour)}
		tok, err := a.g.assertionFor(httptest.NewRequest("GET", a.URL+"/page", nil), &p)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	crossCheck := func(when string, tok string, signedAt *app) {
		t.Helper()
		for _, other := range []*app{a1, a2} {
			u, _ := url.Parse(signedAt.URL)
			v := &upstreamVerifier{jwksURL: other.URL + jwksWellKnown, issuer: signedAt.URL, audience: u.Host, now: clock.now}
			if _, err := v.verify(tok); err != nil {
				t.Errorf("%s: an assertion of %s does not verify with %s's JWKS: %v", when, signedAt.URL, other.URL, err)
			}
		}
	}
	before1, before2 := assertionAt(a1), assertionAt(a2)
	crossCheck("before rotation", before1, a1)
	crossCheck("before rotation", before2, a2)

	// A day later instance 1 publishes the next key, which instance 2
	// picks up at its refresh; an hour after that the next key signs.
	clock.advance(24 * time.Hour)
	ctx := context.Background()
	if err := g1.signer.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g2.signer.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour + time.Second)
	after1 := assertionAt(a1)
	after2 := assertionAt(a2)
	if kidOf(t, after1) == kidOf(t, before1) || kidOf(t, after1) != kidOf(t, after2) {
		t.Fatalf("kids: before %s, after %s and %s: want one new key on both", kidOf(t, before1), kidOf(t, after1), kidOf(t, after2))
	}
	crossCheck("after rotation", after1, a1)
	crossCheck("after rotation", after2, a2)
	// The old key stays published while its assertions may live.
	for _, a := range []*app{a1, a2} {
		resp, err := http.Get(a.URL + jwksWellKnown)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(resp)
		if !strings.Contains(body, kidOf(t, before1)) || !strings.Contains(body, kidOf(t, after1)) {
			t.Errorf("%s publishes %s: want the old and the new key", a.URL, body)
		}
	}
}

// kidOf is the kid of a JWS's protected header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	set, err := jwtHeader(tok)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestAssertionThroughRealCaddy: a real Caddy with `assertion` (keys in
// its configured file storage) signs for a signed-in browser; the
// upstream verifies with the JWKS Caddy serves; a client's header never
// gets through.
func TestAssertionThroughRealCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	idp := newIDP(t)
	site := freeSite(t)
	v := &upstreamVerifier{jwksURL: site + jwksWellKnown, issuer: site, audience: "app.internal"}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { v.record(r) }))
	defer upstream.Close()
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s
}
%[2]s {
	bind 127.0.0.1
	gatehouse {
		issuer %[3]s
		client_id %[4]s
		client_secret %[5]s
		cookie_secret %[6]s
		cookie_insecure
		assertion {
			audience app.internal
			lifetime 30s
		}
	}
	reverse_proxy %[7]s
}
`, filepath.Join(t.TempDir(), "storage"), site, idp.Issuer(), testClientID, testClientSecret, testCookieSecret, strings.TrimPrefix(upstream.URL, "http://"))
	runCaddy(t, cf)

	b := newBrowser(t)
	resp, _ := b.get(site + "/reports")
	resp, _ = b.get(b.loginAt(resp.Header.Get("Location"), "bob"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	if resp, _ = b.get(site+"/reports", defaultAssertionHeader, "forged"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	tok, err := v.verify(v.last())
	if err != nil {
		t.Fatalf("the upstream cannot verify %q: %v", v.last(), err)
	}
	if tok.Subject() != "bob" || tok.Expiration().Sub(tok.IssuedAt()) != 30*time.Second {
		t.Errorf("sub %q, lifetime %s", tok.Subject(), tok.Expiration().Sub(tok.IssuedAt()))
	}
}

// jwtHeader returns the kid of a compact JWS's protected header.
func jwtHeader(tok string) (string, error) {
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", err
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	err = json.Unmarshal(raw, &hdr)
	return hdr.Kid, err
}

// TestAssertionBearer: a request with a bearer token gets an assertion
// that ends with the token: a token with 20 seconds left gives an
// assertion with 20 seconds, not the 1-minute lifetime.
func TestAssertionBearer(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, func(g *Gatehouse) { g.Assertion = &AssertionConfig{SigningKey: ecKeyPEM(t)} })
	tok := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, 20*time.Second)
	resp, up, err := serve(t, g, apiRequest("Bearer "+tok))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	signed := up.req.Header.Get(defaultAssertionHeader)
	if up.repl.ReplaceAll("{http.auth.user.assertion}", "") != signed {
		t.Error("the placeholder is not the header")
	}
	claims, err := verifyWithHandler(g, signed)
	if err != nil {
		t.Fatalf("%q: %v", signed, err)
	}
	access, _ := jwt.ParseString(tok, jwt.WithVerify(false), jwt.WithValidate(false))
	if !claims.Expiration().Equal(access.Expiration()) || claims.Subject() != "alice" {
		t.Errorf("assertion exp %s, token exp %s, sub %q", claims.Expiration(), access.Expiration(), claims.Subject())
	}
}

// verifyWithHandler verifies an assertion of g's against g's own JWKS
// (iss http://example.com and aud example.com: httptest's request).
func verifyWithHandler(g *Gatehouse, tok string) (jwt.Token, error) {
	set, err := jwk.Parse(g.signer.JWKS())
	if err != nil {
		return nil, err
	}
	return jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithIssuer("http://example.com"), jwt.WithAudience("example.com"))
}

// BenchmarkHandlerSessionAssertion is BenchmarkHandlerSession1Chunk with
// `assertion`: after the first request, each reuses the signed assertion.
func BenchmarkHandlerSessionAssertion(b *testing.B) {
	key := ecKeyPEM(b)
	benchSession(b, func(g *Gatehouse) { g.Assertion = &AssertionConfig{SigningKey: key} }, nil)
}
