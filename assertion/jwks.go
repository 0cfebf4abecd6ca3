package assertion

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// JWKSMaxAge is how long a verifier may cache the JWKS (Cache-Control
// max-age). A new key is published PublishAhead before it signs, which
// must exceed RefreshInterval plus JWKSMaxAge: every instance has loaded
// it and every cached JWKS has expired before the first assertion it signs.
const JWKSMaxAge = 5 * time.Minute

// Published is the JWKS document with its HTTP validators, computed once
// whenever the published keys change. Its byte slice is shared: callers
// must not modify it.
type Published struct {
	// JWKS is the JSON Web Key Set: {"keys":[...]} with the public keys,
	// each with kid, alg and use "sig".
	JWKS []byte
	// ETag is a strong entity tag (quoted) of JWKS. Instances with the
	// same ring publish the same bytes, so the same tag.
	ETag string
	// CacheControl is the suggested Cache-Control header value.
	CacheControl string
}

// buildPublished computes the JWKS of keys, in the order given.
func buildPublished(keys []*signingKey) (*Published, error) {
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := jwk.FromRaw(k.priv.Public())
		if err != nil {
			return nil, fmt.Errorf("assertion: public key %s: %w", k.kid, err)
		}
		for name, v := range map[string]any{
			jwk.KeyIDKey:     k.kid,
			jwk.AlgorithmKey: jwa.SignatureAlgorithm(k.alg),
			jwk.KeyUsageKey:  jwk.ForSignature,
		} {
			if err := pub.Set(name, v); err != nil {
				return nil, fmt.Errorf("assertion: public key %s: %w", k.kid, err)
			}
		}
		if err := set.AddKey(pub); err != nil {
			return nil, fmt.Errorf("assertion: public key %s: %w", k.kid, err)
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding JWKS: %w", err)
	}
	sum := sha256.Sum256(body)
	return &Published{
		JWKS:         body,
		ETag:         `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		CacheControl: "public, max-age=" + strconv.Itoa(int(JWKSMaxAge/time.Second)),
	}, nil
}

// ServeJWKS answers a GET or HEAD for the JWKS: the document with its
// ETag and Cache-Control, or 304 Not Modified when If-None-Match names the
// current ETag. Other methods get 405.
func (s *Signer) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := s.Published()
	h := w.Header()
	h.Set("ETag", p.ETag)
	h.Set("Cache-Control", p.CacheControl)
	if etagMatch(r.Header.Get("If-None-Match"), p.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(p.JWKS)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(p.JWKS)
	}
}

// etagMatch applies If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
