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
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Client authentication (OpenID Connect Core §9) happens in one place,
// Client.authenticate, for every endpoint that wants it: the token
// endpoint (code exchange and refresh, sent by x/oauth2 through
// tokenTransport), revocation and introspection (authenticatedPost).

// Values of ClientOptions.ClientAssertionAudience besides an explicit URL.
const (
	// AssertionAudienceIssuer: the assertions' aud is the provider's
	// issuer identifier (the default). It names the provider itself, not
	// one of its endpoints, so an assertion cannot be replayed at another
	// server that shares an endpoint URL (the audience-injection attacks
	// of 2025, CVE-2025-27370/27371; draft-ietf-oauth-rfc7523bis, FAPI 2.0).
	AssertionAudienceIssuer = "issuer"
	// AssertionAudienceTokenEndpoint: the aud is the token endpoint URL,
	// at every endpoint — what OpenID Connect Core §9 describes, and what
	// some providers (Microsoft Entra ID) require.
	AssertionAudienceTokenEndpoint = "token_endpoint"
)

// Client assertions (RFC 7523 §2.2, §3).
const (
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is exp - iat: a fresh assertion is signed for
	// every request, so it only has to outlive the request.
	assertionLifetime = time.Minute
	// minSecretJWTKey is the shortest client secret HS256 may use as its
	// key (RFC 7518 §3.2: at least the hash's 256 bits).
	minSecretJWTKey = 32
)

// String returns the method's name in OpenID Connect Core §9, as in the
// token_endpoint_auth_method client metadata.
func (a ClientAuth) String() string {
	switch a {
	case AuthBasic:
		return "client_secret_basic"
	case AuthPost:
		return "client_secret_post"
	case AuthPrivateKeyJWT:
		return "private_key_jwt"
	case AuthSecretJWT:
		return "client_secret_jwt"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(a))
}

// assertionSigner signs the client assertions of private_key_jwt and
// client_secret_jwt.
type assertionSigner struct {
	alg jwa.SignatureAlgorithm
	key any // *ecdsa.PrivateKey, *rsa.PrivateKey, or []byte (HS256)
	// header fields besides alg and typ: kid; x5t, x5t#S256 when the PEM
	// held the key's certificate.
	kid, x5t, x5tS256 string
	audience          string // AssertionAudience… or a URL
	// publicJWK is the public key to register at the provider (JSON);
	// nil for HS256.
	publicJWK []byte
}

// checkClientAuth checks the client credentials opts gives for its
// ClientAuth, and returns the assertion signer the JWT methods need (nil
// for the others). Errors are *OptionError and never show a secret or a key.
func checkClientAuth(opts *ClientOptions) (*assertionSigner, error) {
	a := opts.ClientAuth
	switch {
	case a < AuthBasic || a > AuthSecretJWT:
		return nil, &OptionError{"client_auth", "unknown client authentication method " + a.String()}
	case a == AuthPrivateKeyJWT && opts.ClientSecret != "":
		return nil, &OptionError{"client_secret", "is not used with private_key_jwt: remove it"}
	case a != AuthPrivateKeyJWT && opts.ClientSecret == "":
		return nil, &OptionError{"client_secret", "is required with " + a.String()}
	case a != AuthPrivateKeyJWT && len(opts.ClientKey) > 0:
		return nil, &OptionError{"client_key", "is only used with private_key_jwt, not " + a.String()}
	case a != AuthPrivateKeyJWT && opts.ClientKeyID != "":
		return nil, &OptionError{"client_key_id", "is only used with private_key_jwt, not " + a.String()}
	}
	if a == AuthBasic || a == AuthPost {
		switch {
		case opts.ClientKeyAlgorithm != "":
			return nil, &OptionError{"client_key_algorithm", "is only used with private_key_jwt and client_secret_jwt, not " + a.String()}
		case opts.ClientAssertionAudience != "":
			return nil, &OptionError{"client_assertion_audience", "is only used with private_key_jwt and client_secret_jwt, not " + a.String()}
		}
		return nil, nil
	}
	s := &assertionSigner{audience: opts.ClientAssertionAudience}
	switch s.audience {
	case "":
		s.audience = AssertionAudienceIssuer
	case AssertionAudienceIssuer, AssertionAudienceTokenEndpoint:
	default:
		if err := CheckEndpointURL(s.audience); err != nil {
			return nil, &OptionError{"client_assertion_audience", fmt.Sprintf("must be %q, %q or the provider's URL: %v", AssertionAudienceIssuer, AssertionAudienceTokenEndpoint, err)}
		}
	}
	if a == AuthSecretJWT {
		if opts.ClientKeyAlgorithm != "" && opts.ClientKeyAlgorithm != "HS256" {
			return nil, &OptionError{"client_key_algorithm", fmt.Sprintf("client_secret_jwt signs with HS256, not %q", opts.ClientKeyAlgorithm)}
		}
		if len(opts.ClientSecret) < minSecretJWTKey {
			return nil, &OptionError{"client_secret", fmt.Sprintf("is %d bytes: client_secret_jwt (HS256) needs at least %d (RFC 7518 §3.2)", len(opts.ClientSecret), minSecretJWTKey)}
		}
		s.alg, s.key = jwa.HS256, []byte(opts.ClientSecret)
		return s, nil
	}
	if len(opts.ClientKey) == 0 {
		return nil, &OptionError{"client_key", "is required with private_key_jwt (a PEM private key: EC P-256 or RSA of at least 2048 bits)"}
	}
	key, cert, err := parseClientKey(opts.ClientKey)
	if err != nil {
		return nil, err
	}
	if s.alg, err = keyAlgorithm(key, opts.ClientKeyAlgorithm); err != nil {
		return nil, err
	}
	s.key, s.kid = key, opts.ClientKeyID
	if s.kid == "" {
		if s.kid, err = thumbprint(key.Public()); err != nil {
			return nil, &OptionError{"client_key", "cannot compute the key's thumbprint (kid)"}
		}
	}
	if s.publicJWK, err = publicJWK(key.Public(), s.kid, s.alg); err != nil {
		return nil, &OptionError{"client_key", "cannot express the public key as a JWK"}
	}
	if cert != nil {
		sum1, sum256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
		s.x5t = base64.RawURLEncoding.EncodeToString(sum1[:])
		s.x5tS256 = base64.RawURLEncoding.EncodeToString(sum256[:])
	}
	return s, nil
}

// parseClientKey reads the one private key of a PEM document (PKCS #8,
// PKCS #1 or SEC 1, unencrypted), and the certificate of that key when
// the document holds one. Errors name block types, never their contents.
func parseClientKey(data []byte) (crypto.Signer, *x509.Certificate, error) {
	bad := func(reason string) (crypto.Signer, *x509.Certificate, error) {
		return nil, nil, &OptionError{"client_key", reason}
	}
	var (
		key   crypto.Signer
		certs []*x509.Certificate
		seen  []string
	)
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		seen = append(seen, block.Type)
		var parsed any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return bad("a CERTIFICATE block cannot be parsed")
			}
			certs = append(certs, cert)
			continue
		case "ENCRYPTED PRIVATE KEY":
			return bad("encrypted private keys are not supported: decrypt it (openssl pkey -in key.pem -out plain.pem) and protect the file instead")
		case "OPENSSH PRIVATE KEY":
			return bad("OpenSSH private keys are not supported: convert it to PKCS #8 (ssh-keygen -p -m PKCS8 -f key)")
		default:
			continue // EC PARAMETERS, PUBLIC KEY…
		}
		if err != nil {
			return bad("the " + block.Type + " block cannot be parsed")
		}
		if key != nil {
			return bad("holds more than one private key")
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok {
			return bad(fmt.Sprintf("unsupported key type %T: use EC P-256 or RSA (2048 bits or more)", parsed))
		}
		key = signer
	}
	switch {
	case key == nil && len(seen) == 0:
		return bad("is not PEM: expected a -----BEGIN PRIVATE KEY----- block")
	case key == nil:
		return bad("holds no private key (found " + strings.Join(seen, ", ") + ")")
	}
	if len(certs) == 0 {
		return key, nil, nil
	}
	for _, cert := range certs {
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			return key, cert, nil
		}
	}
	return bad("no CERTIFICATE block is for the private key")
}

// keyAlgorithm is the algorithm key signs with: want, or the key's
// default (ES256 for EC P-256, RS256 for RSA). Only ES256, RS256 and PS256
// are offered: what providers commonly accept for private_key_jwt.
func keyAlgorithm(key crypto.Signer, want string) (jwa.SignatureAlgorithm, error) {
	bad := func(reason string) (jwa.SignatureAlgorithm, error) {
		return "", &OptionError{"client_key", reason}
	}
	var allowed []string
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return bad(fmt.Sprintf("EC curve %s is not supported: use P-256 (ES256)", k.Curve.Params().Name))
		}
		allowed = []string{"ES256"}
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return bad(fmt.Sprintf("an RSA key of %d bits is too short: use at least 2048", bits))
		}
		if k.Validate() != nil {
			return bad("the RSA key is inconsistent")
		}
		allowed = []string{"RS256", "PS256"}
	case ed25519.PrivateKey:
		return bad("Ed25519 (EdDSA) keys are not supported: few providers accept them for private_key_jwt; use EC P-256 or RSA")
	default:
		return bad(fmt.Sprintf("unsupported key type %T: use EC P-256 or RSA (2048 bits or more)", key))
	}
	switch {
	case want == "":
		want = allowed[0]
	case !slices.Contains(allowed, want):
		return "", &OptionError{"client_key_algorithm", fmt.Sprintf("%q does not fit the key: use %s", want, strings.Join(allowed, " or "))}
	}
	return jwa.SignatureAlgorithm(want), nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub.
func thumbprint(pub crypto.PublicKey) (string, error) {
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return "", err
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// publicJWK is the JSON of pub as a JWK with kid, alg and use "sig".
func publicJWK(pub crypto.PublicKey, kid string, alg jwa.SignatureAlgorithm) ([]byte, error) {
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := k.Set(name, v); err != nil {
			return nil, err
		}
	}
	return json.Marshal(k)
}

// PublicKeyJWK returns the public half of ClientKey as a JWK (JSON), with
// the kid and alg the client's assertions carry: what to register at the
// provider (in the client's jwks) for private_key_jwt. Providers such as
// oidc-provider match the assertion's kid against the registered key's,
// so register this kid, or set ClientKeyID to the registered one. Nil
// with the other methods.
func (c *Client) PublicKeyJWK() []byte {
	if c.assertion == nil {
		return nil
	}
	return bytes.Clone(c.assertion.publicJWK)
}

// assertionClaims are a client assertion's claims (RFC 7523 §3): aud is a
// single string, never an array (the audience-injection fixes require it).
type assertionClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	JWTID    string `json:"jti"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// sign returns a new assertion: a fresh 256-bit jti, issued now, valid
// for assertionLifetime. typ is "JWT", the value every provider accepts
// (the newer client-authentication+jwt is refused by some, Entra ID among
// them); nbf is left out, as iat says the same and a provider clock
// running behind would refuse it.
func (s *assertionSigner) sign(clientID, audience string, now time.Time) (string, error) {
	var jti [32]byte
	rand.Read(jti[:])
	payload, err := json.Marshal(assertionClaims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: audience,
		JWTID:    base64.RawURLEncoding.EncodeToString(jti[:]),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	for _, f := range [][2]string{
		{jws.TypeKey, "JWT"},
		{jws.KeyIDKey, s.kid},
		{jws.X509CertThumbprintKey, s.x5t},
		{jws.X509CertThumbprintS256Key, s.x5tS256},
	} {
		if f[1] == "" {
			continue
		}
		if err := h.Set(f[0], f[1]); err != nil {
			return "", err
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(s.alg, s.key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("flow: signing the client assertion: %w", err)
	}
	return string(out), nil
}

// assertionAudience is the aud of the client's assertions.
func (c *Client) assertionAudience(ctx context.Context) (string, error) {
	switch c.assertion.audience {
	case AssertionAudienceIssuer:
		return c.p.Issuer(), nil // discovery checked it equals the document's
	case AssertionAudienceTokenEndpoint:
		meta, err := c.p.Metadata(ctx)
		if err != nil {
			return "", err
		}
		return meta.Endpoints.Token, nil
	}
	return c.assertion.audience, nil
}

// authenticate adds the client's credentials to req, a POST of form to
// one of the provider's endpoints, the way ClientAuth says:
// client_secret_basic in the Authorization header; client_secret_post in
// the form; private_key_jwt and client_secret_jwt as a client assertion,
// signed afresh for every request, in the form (RFC 7523 §2.2), with the
// client_id, which some providers want besides the assertion's sub.
func (c *Client) authenticate(req *http.Request, form url.Values) error {
	switch c.opts.ClientAuth {
	case AuthBasic:
		// RFC 6749 §2.3.1: form-urlencode the id and secret first.
		req.SetBasicAuth(url.QueryEscape(c.opts.ClientID), url.QueryEscape(c.opts.ClientSecret))
		return nil
	case AuthPost:
		form.Set("client_id", c.opts.ClientID)
		form.Set("client_secret", c.opts.ClientSecret)
		return nil
	}
	aud, err := c.assertionAudience(req.Context())
	if err != nil {
		return err
	}
	assertion, err := c.assertion.sign(c.opts.ClientID, aud, c.opts.Now())
	if err != nil {
		return err
	}
	form.Set("client_id", c.opts.ClientID)
	form.Set("client_assertion_type", clientAssertionType)
	form.Set("client_assertion", assertion)
	return nil
}

// authenticatedPost is a form POST to one of the provider's endpoints
// (revocation, introspection), authenticated as the client.
func (c *Client) authenticatedPost(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, http.NoBody)
	if err != nil {
		return nil, err
	}
	if err := c.authenticate(req, form); err != nil {
		return nil, err
	}
	setForm(req, form)
	return req, nil
}

// setForm makes form the body of req.
func setForm(req *http.Request, form url.Values) {
	body := form.Encode()
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	req.Body, _ = req.GetBody()
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
}

// tokenTransport authenticates the token requests x/oauth2 sends (code
// exchange and refresh): x/oauth2 is given no client credentials
// (AuthStyleInParams and an empty client id add nothing), so its request
// carries the grant alone, and this adds the credentials as
// authenticatedPost does. x/oauth2's refresh takes no extra parameters,
// hence a transport rather than oauth2.SetAuthURLParam.
type tokenTransport struct {
	c    *Client
	base http.RoundTripper
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil {
		return t.base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("flow: token request: %w", err)
	}
	out := req.Clone(req.Context())
	if err := t.c.authenticate(out, form); err != nil {
		return nil, err
	}
	setForm(out, form)
	// RFC 6749 §5.1 answers are JSON; GitHub answers form-encoded unless
	// asked, and x/oauth2 then reads expires_in on the wall clock.
	out.Header.Set("Accept", "application/json")
	return t.base.RoundTrip(out)
}

// tokenClient is the provider's HTTP client with tokenTransport.
func (c *Client) tokenClient() *http.Client {
	hc := *c.p.opts.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &tokenTransport{c: c, base: base}
	return &hc
}
