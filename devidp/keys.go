package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// JWS "typ" header values.
const (
	typAccessToken = "at+jwt" // RFC 9068
	typIDToken     = "JWT"
)

// signingKey is one generated key pair, as JWKs with kid, alg and use set.
type signingKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv jwk.Key
	pub  jwk.Key
}

// newSigningKey generates a key for alg ("RS256" or "ES256") with
// crypto/rand. Its kid is the key's RFC 7638 thumbprint.
func newSigningKey(alg string) (*signingKey, error) {
	var raw crypto.Signer
	var err error
	switch alg {
	case "RS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("devidp: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: generating signing key: %w", err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("devidp: signing key: %w", err)
	}
	pub, err := jwk.FromRaw(raw.Public())
	if err != nil {
		return nil, fmt.Errorf("devidp: signing key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: signing key thumbprint: %w", err)
	}
	k := &signingKey{
		kid:  base64.RawURLEncoding.EncodeToString(tp),
		alg:  jwa.SignatureAlgorithm(alg),
		priv: priv,
		pub:  pub,
	}
	for _, key := range []jwk.Key{priv, pub} {
		for name, v := range map[string]any{
			jwk.KeyIDKey:     k.kid,
			jwk.AlgorithmKey: k.alg,
			jwk.KeyUsageKey:  jwk.ForSignature,
		} {
			if err := key.Set(name, v); err != nil {
				return nil, fmt.Errorf("devidp: signing key: %w", err)
			}
		}
	}
	return k, nil
}

// RotateKey generates a new signing key. New tokens are signed with it; the
// JWKS publishes it and the previous key, which is kept (and still accepted
// at userinfo and end_session) until the next rotation. Test helper: it lets
// a relying party's key-rotation handling be exercised.
func (p *Provider) RotateKey() error {
	key, err := newSigningKey(p.alg)
	if err != nil {
		return err
	}
	p.keyMu.Lock()
	p.previous, p.current = p.current, key
	p.keyMu.Unlock()
	return nil
}

// keys returns the published keys, current first.
func (p *Provider) keys() []*signingKey {
	p.keyMu.RLock()
	defer p.keyMu.RUnlock()
	if p.previous == nil {
		return []*signingKey{p.current}
	}
	return []*signingKey{p.current, p.previous}
}

// signingKeyNow returns the key new tokens are signed with.
func (p *Provider) signingKeyNow() *signingKey {
	p.keyMu.RLock()
	defer p.keyMu.RUnlock()
	return p.current
}

// sign serializes claims and signs them as a compact JWS with the current
// key and the given typ header.
func (p *Provider) sign(claims any, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: encoding claims: %w", err)
	}
	key := p.signingKeyNow()
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", fmt.Errorf("devidp: signing: %w", err)
	}
	if err := hdr.Set(jws.KeyIDKey, key.kid); err != nil {
		return "", fmt.Errorf("devidp: signing: %w", err)
	}
	out, err := jws.Sign(payload, jws.WithKey(key.alg, key.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("devidp: signing: %w", err)
	}
	return string(out), nil
}

var errBadToken = errors.New("devidp: invalid token")

// verify checks that token is a compact JWS signed by one of the published
// keys with the key's algorithm and the expected typ header, and returns its
// payload. Claims are not checked here.
func (p *Provider) verify(token, typ string) ([]byte, error) {
	if token == "" || len(token) > maxBearerLen || strings.Count(token, ".") != 2 {
		return nil, errBadToken
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, errBadToken
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if !strings.EqualFold(hdr.Type(), typ) {
		return nil, errBadToken
	}
	for _, k := range p.keys() {
		if k.kid != hdr.KeyID() {
			continue
		}
		if hdr.Algorithm() != k.alg {
			return nil, errBadToken
		}
		payload, err := jws.Verify([]byte(token), jws.WithKey(k.alg, k.pub))
		if err != nil {
			return nil, errBadToken
		}
		return payload, nil
	}
	return nil, errBadToken
}

// serveJWKS publishes the public keys.
func (p *Provider) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	set := jwk.NewSet()
	for _, k := range p.keys() {
		if err := set.AddKey(k.pub); err != nil {
			http.Error(w, "devidp: building JWKS failed", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, set)
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "devidp: encoding response failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
