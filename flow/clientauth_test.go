package flow

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
)

// A client_secret_jwt secret: 40 bytes, enough for HS256.
const jwtSecret = "0123456789abcdef0123456789abcdef-hs256!!"

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustDER(der []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return der
}

func ecKey(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func rsaKey(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// selfSigned is a certificate for key, signed by key.
func selfSigned(key crypto.Signer) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gatehouse-test"},
		NotBefore:    epoch.Add(-time.Hour),
		NotAfter:     epoch.Add(24 * time.Hour),
	}
	return pemBlock("CERTIFICATE", mustDER(x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)))
}

// ecThumbprint computes the RFC 7638 thumbprint of a P-256 key by hand.
func ecThumbprint(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + enc(b[1:33]) + `","y":"` + enc(b[33:]) + `"}`))
	return enc(sum[:])
}

// leaks reports whether msg shows the secret or a piece of the PEM's body.
func leaks(msg string, pemBytes []byte, secret string) bool {
	if secret != "" && strings.Contains(msg, secret) {
		return true
	}
	for line := range strings.Lines(string(pemBytes)) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-----") && len(line) >= 12 && strings.Contains(msg, line[:12]) {
			return true
		}
	}
	return false
}

// TestClientAuthRejects: credentials that do not fit the method, and keys
// gatehouse will not sign with, are refused at configuration time with an
// *OptionError naming the option, which shows neither the key nor the secret.
func TestClientAuthRejects(t *testing.T) {
	ec256, rsa2048 := ecKey(elliptic.P256()), rsaKey(2048)
	ec256PEM := pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ec256)))
	rsaPEM := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048))
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	junk := make([]byte, 600)
	rand.Read(junk)
	privateKeyJWT := func(key []byte) func(*ClientOptions) {
		return func(o *ClientOptions) { o.ClientAuth, o.ClientSecret, o.ClientKey = AuthPrivateKeyJWT, "", key }
	}
	for _, tc := range []struct {
		name  string
		mod   func(*ClientOptions)
		field string
	}{
		{"unknown method", func(o *ClientOptions) { o.ClientAuth = 9 }, "client_auth"},
		{"private_key_jwt without a key", privateKeyJWT(nil), "client_key"},
		{"private_key_jwt with a client secret", func(o *ClientOptions) {
			privateKeyJWT(ec256PEM)(o)
			o.ClientSecret = clientSecret
		}, "client_secret"},
		{"not PEM", privateKeyJWT([]byte("MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5XhBw2bGUwIBAoAoGCCqGSM49")), "client_key"},
		{"PEM of junk", privateKeyJWT(pemBlock("PRIVATE KEY", junk)), "client_key"},
		{"PKCS #1 of junk", privateKeyJWT(pemBlock("RSA PRIVATE KEY", junk)), "client_key"},
		{"SEC 1 of junk", privateKeyJWT(pemBlock("EC PRIVATE KEY", junk)), "client_key"},
		{"public key only", privateKeyJWT(pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(ec256.Public())))), "client_key"},
		{"certificate only", privateKeyJWT(selfSigned(ec256)), "client_key"},
		{"encrypted key", privateKeyJWT(pemBlock("ENCRYPTED PRIVATE KEY", junk)), "client_key"},
		{"OpenSSH key", privateKeyJWT(pemBlock("OPENSSH PRIVATE KEY", junk)), "client_key"},
		{"RSA 1024", privateKeyJWT(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(1024)))), "client_key"},
		{"EC P-384", privateKeyJWT(pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ecKey(elliptic.P384()))))), "client_key"},
		{"EC P-521 in PKCS #8", privateKeyJWT(pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(ecKey(elliptic.P521()))))), "client_key"},
		{"Ed25519", privateKeyJWT(pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(ed)))), "client_key"},
		{"two private keys", privateKeyJWT(append(bytes.Clone(ec256PEM), rsaPEM...)), "client_key"},
		{"certificate of another key", privateKeyJWT(append(bytes.Clone(ec256PEM), selfSigned(rsa2048)...)), "client_key"},
		{"RS256 with an EC key", func(o *ClientOptions) { privateKeyJWT(ec256PEM)(o); o.ClientKeyAlgorithm = "RS256" }, "client_key_algorithm"},
		{"ES256 with an RSA key", func(o *ClientOptions) { privateKeyJWT(rsaPEM)(o); o.ClientKeyAlgorithm = "ES256" }, "client_key_algorithm"},
		{"RS512", func(o *ClientOptions) { privateKeyJWT(rsaPEM)(o); o.ClientKeyAlgorithm = "RS512" }, "client_key_algorithm"},
		{"HS256 with a private key", func(o *ClientOptions) { privateKeyJWT(rsaPEM)(o); o.ClientKeyAlgorithm = "HS256" }, "client_key_algorithm"},
		{"audience neither a keyword nor a URL", func(o *ClientOptions) {
			privateKeyJWT(ec256PEM)(o)
			o.ClientAssertionAudience = "token-endpoint"
		}, "client_assertion_audience"},
		{"client_secret_jwt with a 31-byte secret", func(o *ClientOptions) {
			o.ClientAuth, o.ClientSecret = AuthSecretJWT, jwtSecret[:31]
		}, "client_secret"},
		{"client_secret_jwt without a secret", func(o *ClientOptions) { o.ClientAuth, o.ClientSecret = AuthSecretJWT, "" }, "client_secret"},
		{"client_secret_jwt with RS256", func(o *ClientOptions) {
			o.ClientAuth, o.ClientSecret, o.ClientKeyAlgorithm = AuthSecretJWT, jwtSecret, "RS256"
		}, "client_key_algorithm"},
		{"client_secret_jwt with a key", func(o *ClientOptions) {
			o.ClientAuth, o.ClientSecret, o.ClientKey = AuthSecretJWT, jwtSecret, ec256PEM
		}, "client_key"},
		{"a key with client_secret_basic", func(o *ClientOptions) { o.ClientKey = ec256PEM }, "client_key"},
		{"a kid with client_secret_post", func(o *ClientOptions) { o.ClientAuth, o.ClientKeyID = AuthPost, "k1" }, "client_key_id"},
		{"an algorithm with client_secret_basic", func(o *ClientOptions) { o.ClientKeyAlgorithm = "RS256" }, "client_key_algorithm"},
		{"an assertion audience with client_secret_post", func(o *ClientOptions) {
			o.ClientAuth, o.ClientAssertionAudience = AuthPost, AssertionAudienceIssuer
		}, "client_assertion_audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prov, err := NewProvider(context.Background(), ProviderOptions{Issuer: "https://idp.example"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(prov.Close)
			opts := ClientOptions{Provider: prov, ClientID: clientID, ClientSecret: clientSecret}
			tc.mod(&opts)
			c, err := NewClient(opts)
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("NewClient = %v, %v; want an *OptionError", c, err)
			}
			if oe.Field != tc.field {
				t.Errorf("error %q names %q, want %q", err, oe.Field, tc.field)
			}
			if leaks(err.Error(), opts.ClientKey, opts.ClientSecret) {
				t.Errorf("error %q shows the key or the secret", err)
			}
			t.Log(err)
		})
	}
}

// assertionRequest is one request the fake provider received.
type assertionRequest struct {
	endpoint string // exchange, refresh, revocation, introspection
	url      *url.URL
	form     url.Values
	header   http.Header
}

// assertionProvider is a scripted provider whose token, revocation and
// introspection endpoints record every request.
type assertionProvider struct {
	*scripted
	mu   sync.Mutex
	reqs []assertionRequest
}

func newAssertionProvider(t *testing.T) *assertionProvider {
	p := &assertionProvider{scripted: newScripted(t)}
	record := func(endpoint string, r *http.Request) {
		r.ParseForm()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.reqs = append(p.reqs, assertionRequest{endpoint, r.URL, r.PostForm, r.Header.Clone()})
	}
	mux := p.Config.Handler.(*http.ServeMux)
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) { record("revocation", r) })
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		record("introspection", r)
		writeJSON(w, activeAnswer(p.URL))
	})
	p.set(func(s *scripted) {
		s.doc["revocation_endpoint"] = s.URL + "/revoke"
		s.doc["introspection_endpoint"] = s.URL + "/introspect"
		s.token = func(w http.ResponseWriter, r *http.Request) {
			resp := map[string]any{"access_token": "access-token-1", "token_type": "Bearer", "expires_in": 300, "refresh_token": "refresh-token-2"}
			switch r.PostForm.Get("grant_type") {
			case "authorization_code":
				record("exchange", r)
				s.mu.Lock()
				resp["id_token"] = s.idToken
				s.mu.Unlock()
			case "refresh_token":
				record("refresh", r)
			}
			writeJSON(w, resp)
		}
	})
	return p
}

// wantAssertion is what the fake expects of every client assertion.
type wantAssertion struct {
	secret      string // the client secret, which must appear nowhere (client_secret_jwt)
	alg         jwa.SignatureAlgorithm
	key         any // the public key, or the HS256 secret
	kid         string
	aud         string
	x5t, x5t256 string
}

// check verifies one request's assertion field by field and returns its jti.
func (w wantAssertion) check(t *testing.T, r assertionRequest, now time.Time) string {
	t.Helper()
	// No other credentials: no Authorization header, no client_secret,
	// and the secret nowhere in the request.
	if h := r.header.Get("Authorization"); h != "" {
		t.Errorf("%s: Authorization %q sent with a client assertion", r.endpoint, h)
	}
	if r.form.Has("client_secret") {
		t.Errorf("%s: client_secret sent with a client assertion", r.endpoint)
	}
	for _, secret := range []string{clientSecret, w.secret} {
		if secret == "" {
			continue
		}
		for _, s := range []string{r.form.Encode(), r.url.String(), strings.Join(headerValues(r.header), "\n")} {
			if strings.Contains(s, secret) || strings.Contains(s, url.QueryEscape(secret)) {
				t.Errorf("%s: the client secret is in the request", r.endpoint)
			}
		}
	}
	if got := r.form["client_assertion_type"]; len(got) != 1 || got[0] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Errorf("%s: client_assertion_type %q", r.endpoint, got)
	}
	if got := r.form["client_id"]; len(got) != 1 || got[0] != clientID {
		t.Errorf("%s: client_id %q", r.endpoint, got)
	}
	assertions := r.form["client_assertion"]
	if len(assertions) != 1 {
		t.Fatalf("%s: %d client assertions", r.endpoint, len(assertions))
	}
	raw := []byte(assertions[0])

	// The header: alg, kid, typ, certificate thumbprints.
	msg, err := jws.Parse(raw)
	if err != nil || len(msg.Signatures()) != 1 {
		t.Fatalf("%s: not a compact JWS: %v", r.endpoint, err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Algorithm() != w.alg || h.KeyID() != w.kid || h.Type() != "JWT" ||
		h.X509CertThumbprint() != w.x5t || h.X509CertThumbprintS256() != w.x5t256 {
		t.Errorf("%s: header alg %q kid %q typ %q x5t %q x5t#S256 %q; want %q %q JWT %q %q", r.endpoint,
			h.Algorithm(), h.KeyID(), h.Type(), h.X509CertThumbprint(), h.X509CertThumbprintS256(), w.alg, w.kid, w.x5t, w.x5t256)
	}

	// The signature, and the claims as a provider validates them.
	payload, err := jws.Verify(raw, jws.WithKey(w.alg, w.key))
	if err != nil {
		t.Fatalf("%s: signature: %v", r.endpoint, err)
	}
	if _, err := jwt.Parse(raw, jwt.WithKey(w.alg, w.key), jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithIssuer(clientID), jwt.WithSubject(clientID), jwt.WithAudience(w.aud),
		jwt.WithRequiredClaim(jwt.ExpirationKey), jwt.WithRequiredClaim(jwt.IssuedAtKey), jwt.WithRequiredClaim(jwt.JwtIDKey)); err != nil {
		t.Errorf("%s: claims: %v", r.endpoint, err)
	}
	var c struct {
		Iss, Sub, Jti string
		Aud           any
		Iat, Exp      int64
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("%s: payload: %v", r.endpoint, err)
	}
	if c.Iss != clientID || c.Sub != clientID {
		t.Errorf("%s: iss %q sub %q, want the client id", r.endpoint, c.Iss, c.Sub)
	}
	if aud, ok := c.Aud.(string); !ok || aud != w.aud {
		t.Errorf("%s: aud %#v, want the string %q", r.endpoint, c.Aud, w.aud)
	}
	if life := c.Exp - c.Iat; life <= 0 || life > 60 || c.Exp <= now.Unix() || c.Iat > now.Unix() {
		t.Errorf("%s: iat %d exp %d at %d: want exp in the future, at most 60s after iat", r.endpoint, c.Iat, c.Exp, now.Unix())
	}
	if b, err := base64.RawURLEncoding.DecodeString(c.Jti); err != nil || len(c.Jti) < 22 || len(b) < 16 {
		t.Errorf("%s: jti %q is not 16 random bytes or more", r.endpoint, c.Jti)
	}
	return c.Jti
}

func headerValues(h http.Header) []string {
	var vs []string
	for k, v := range h {
		vs = append(vs, k)
		vs = append(vs, v...)
	}
	return vs
}

// TestClientAssertionAtEveryEndpoint: with private_key_jwt and
// client_secret_jwt, the code exchange, the refresh grant, revocation and
// introspection each carry a fresh client assertion, and nothing else.
func TestClientAssertionAtEveryEndpoint(t *testing.T) {
	ec := ecKey(elliptic.P256())
	rs := rsaKey(2048)
	rsPKCS8 := pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(rs)))
	cert := selfSigned(rs)
	certDER, _ := pem.Decode(cert)
	sum1, sum256 := sha1.Sum(certDER.Bytes), sha256.Sum256(certDER.Bytes)
	rsThumbprint, err := thumbprint(rs.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts func(p *scripted, o *ClientOptions)
		want func(p *scripted) wantAssertion
	}{
		{"private_key_jwt ES256 (SEC 1), issuer audience by default",
			func(_ *scripted, o *ClientOptions) {
				o.ClientAuth, o.ClientSecret = AuthPrivateKeyJWT, ""
				// openssl ecparam -genkey writes the parameters first.
				o.ClientKey = append(pemBlock("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}),
					pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ec)))...)
			},
			func(p *scripted) wantAssertion {
				return wantAssertion{alg: jwa.ES256, key: ec.Public(), kid: ecThumbprint(t, &ec.PublicKey), aud: p.URL}
			}},
		{"private_key_jwt RS256 (PKCS #1), token endpoint audience, configured kid",
			func(_ *scripted, o *ClientOptions) {
				o.ClientAuth, o.ClientSecret = AuthPrivateKeyJWT, ""
				o.ClientKey = pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rs))
				o.ClientKeyID, o.ClientAssertionAudience = "gatehouse-2026", AssertionAudienceTokenEndpoint
			},
			func(p *scripted) wantAssertion {
				return wantAssertion{alg: jwa.RS256, key: rs.Public(), kid: "gatehouse-2026", aud: p.URL + "/token"}
			}},
		{"private_key_jwt PS256 (PKCS #8), explicit audience",
			func(_ *scripted, o *ClientOptions) {
				o.ClientAuth, o.ClientSecret, o.ClientKey = AuthPrivateKeyJWT, "", rsPKCS8
				o.ClientKeyAlgorithm, o.ClientAssertionAudience = "PS256", "https://login.example/tenant/oauth2/v2.0/token"
			},
			func(p *scripted) wantAssertion {
				return wantAssertion{alg: jwa.PS256, key: rs.Public(), kid: rsThumbprint, aud: "https://login.example/tenant/oauth2/v2.0/token"}
			}},
		{"private_key_jwt with the key's certificate: x5t and x5t#S256",
			func(_ *scripted, o *ClientOptions) {
				o.ClientAuth, o.ClientSecret = AuthPrivateKeyJWT, ""
				o.ClientKey = append(bytes.Clone(cert), rsPKCS8...)
			},
			func(p *scripted) wantAssertion {
				return wantAssertion{alg: jwa.RS256, key: rs.Public(), kid: rsThumbprint, aud: p.URL,
					x5t: base64.RawURLEncoding.EncodeToString(sum1[:]), x5t256: base64.RawURLEncoding.EncodeToString(sum256[:])}
			}},
		{"client_secret_jwt HS256",
			func(_ *scripted, o *ClientOptions) { o.ClientAuth, o.ClientSecret = AuthSecretJWT, jwtSecret },
			func(p *scripted) wantAssertion {
				return wantAssertion{secret: jwtSecret, alg: jwa.HS256, key: []byte(jwtSecret), aud: p.URL}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newAssertionProvider(t)
			c := newClient(t, p.scripted, func(_ *ProviderOptions, o *ClientOptions) { tc.opts(p.scripted, o) })
			ctx := context.Background()
			want := tc.want(p.scripted)

			l, q := login(t, c, p.scripted)
			p.set(func(s *scripted) { s.idToken = s.key.Sign(s.claims(q.Get("nonce")), nil) })
			if _, err := c.FinishLogin(ctx, redirectURL, callback(l, p.URL), l); err != nil {
				t.Fatalf("exchange: %v", err)
			}
			s := &session.Session{ID: "sess-1", Identity: identity.Identity{Subject: "user-1"}, RefreshToken: "refresh-token-1"}
			for range 2 { // the same request twice: two assertions
				if _, err := c.Refresh(ctx, s); err != nil {
					t.Fatalf("refresh: %v", err)
				}
			}
			if err := c.Revoke(ctx, "refresh-token-2", "refresh_token"); err != nil {
				t.Fatalf("revocation: %v", err)
			}
			in, err := NewIntrospector(IntrospectorOptions{Client: c, Now: c.opts.Now})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := in.Introspect(ctx, opaqueToken); err != nil {
				t.Fatalf("introspection: %v", err)
			}

			// The public key to register: the verifying key, with the kid
			// and alg the assertions carry.
			if pub := c.PublicKeyJWK(); want.alg == jwa.HS256 {
				if pub != nil {
					t.Errorf("PublicKeyJWK with client_secret_jwt: %s", pub)
				}
			} else if k, err := jwk.ParseKey(pub); err != nil || k.KeyID() != want.kid || k.Algorithm() != want.alg || k.KeyUsage() != "sig" {
				t.Errorf("PublicKeyJWK %s: %v", pub, err)
			} else if raw, err := jwk.PublicRawKeyOf(k); err != nil || !raw.(interface{ Equal(crypto.PublicKey) bool }).Equal(want.key) {
				t.Errorf("PublicKeyJWK %s is not the client's public key (%v)", pub, err)
			}

			p.mu.Lock()
			reqs := p.reqs
			p.mu.Unlock()
			var endpoints []string
			jtis := map[string]bool{}
			for _, r := range reqs {
				endpoints = append(endpoints, r.endpoint)
				jti := want.check(t, r, epoch)
				if jtis[jti] {
					t.Errorf("%s: jti %q reused", r.endpoint, jti)
				}
				jtis[jti] = true
			}
			if got := strings.Join(endpoints, " "); got != "exchange refresh refresh revocation introspection" {
				t.Fatalf("requests: %s", got)
			}
			// The grants themselves are intact.
			if f := reqs[0].form; f.Get("code") != "code-1" || f.Get("code_verifier") != l.Verifier || f.Get("redirect_uri") != redirectURL {
				t.Errorf("exchange form %v", f)
			}
			if f := reqs[1].form; f.Get("refresh_token") != "refresh-token-1" {
				t.Errorf("refresh form %v", f)
			}
			if f := reqs[3].form; f.Get("token") != "refresh-token-2" || f.Get("token_type_hint") != "refresh_token" {
				t.Errorf("revocation form %v", f)
			}
			if f := reqs[4].form; f.Get("token") != opaqueToken {
				t.Errorf("introspection form %v", f)
			}
		})
	}
}

func TestClientAuthString(t *testing.T) {
	for a, want := range map[ClientAuth]string{
		AuthBasic: "client_secret_basic", AuthPost: "client_secret_post",
		AuthPrivateKeyJWT: "private_key_jwt", AuthSecretJWT: "client_secret_jwt", 9: "ClientAuth(9)",
	} {
		if got := a.String(); got != want {
			t.Errorf("%d: %q, want %q", int(a), got, want)
		}
	}
}

func TestPublicKeyJWKWithoutKey(t *testing.T) {
	for _, auth := range []ClientAuth{AuthBasic, AuthPost} {
		c := newClient(t, newScripted(t), func(_ *ProviderOptions, o *ClientOptions) { o.ClientAuth = auth })
		if pub := c.PublicKeyJWK(); pub != nil {
			t.Errorf("%v: PublicKeyJWK %s", auth, pub)
		}
	}
}
