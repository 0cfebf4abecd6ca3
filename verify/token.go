package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// b64 decodes unpadded base64url and refuses non-canonical encodings, so one
// token has exactly one textual form (which the verified-token cache relies on).
var b64 = base64.RawURLEncoding.Strict()

// compact is a JWS in compact serialization, split at its dots.
type compact struct {
	header, payload, signature string
	signingInput               string // header "." payload
}

// splitCompact splits a JWS compact serialization into its three non-empty
// base64url parts. The JSON serialization and anything with other bytes is
// ErrMalformed.
func splitCompact(token string) (compact, error) {
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return compact{}, ErrMalformed
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.Contains(s, ".") {
		return compact{}, ErrMalformed
	}
	return compact{header: h, payload: p, signature: s, signingInput: token[:len(h)+1+len(p)]}, nil
}

// header is the part of the JOSE header we act on.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

func parseHeader(enc string) (header, error) {
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return header{}, ErrMalformed
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, ErrMalformed
	}
	// We implement no JWS extensions (RFC 7515 §4.1.11), so a token that
	// marks one critical (e.g. unencoded payloads, RFC 7797) is refused.
	if h.Crit != nil {
		return header{}, ErrMalformed
	}
	return h, nil
}

// Claims are a verified token's claims.
type Claims struct {
	// Registered claims (RFC 7519 §4.1); times are zero when absent.
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// OpenID Connect claims of ID tokens (Core §2, §3.1.3.6).
	Nonce           string
	AuthorizedParty string
	AccessTokenHash string
	SessionID       string
	// Scopes of an access token, from `scope` (space-separated, RFC 9068)
	// or `scp` (a string or an array, as some providers send it).
	Scopes []string
	// Algorithm is the JWS algorithm the token was signed with.
	Algorithm string
	// Type is the JOSE header's typ ("JWT", "at+jwt", …), as sent.
	Type string

	all map[string]any
}

// Map returns every claim of the token as decoded JSON (numbers are
// json.Number). The map is shared: callers must not modify it.
func (c *Claims) Map() map[string]any { return c.all }

// ClaimsOfVerified decodes the claims of a token that was verified before
// and kept where no one could change it since (a sealed session), without
// checking its signature again. Never use it for a token from a request.
func ClaimsOfVerified(token string) (*Claims, error) {
	parts, err := splitCompact(token)
	if err != nil {
		return nil, err
	}
	return parseClaims(parts.payload)
}

// parseClaims decodes a verified payload. Registered claims of the wrong
// JSON type are ErrMalformed; exp is required by the Verifier, not here.
func parseClaims(enc string) (*Claims, error) {
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return nil, ErrMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var all map[string]any
	if err := dec.Decode(&all); err != nil || all == nil || dec.More() {
		return nil, ErrMalformed
	}
	c := &Claims{all: all}
	ok := optString(all, "iss", &c.Issuer) &&
		optString(all, "sub", &c.Subject) &&
		optAudience(all, &c.Audience) &&
		optTime(all, "exp", &c.Expiry) &&
		optTime(all, "nbf", &c.NotBefore) &&
		optTime(all, "iat", &c.IssuedAt) &&
		optString(all, "nonce", &c.Nonce) &&
		optString(all, "azp", &c.AuthorizedParty) &&
		optString(all, "at_hash", &c.AccessTokenHash) &&
		optString(all, "sid", &c.SessionID) &&
		optScopes(all, &c.Scopes)
	if !ok {
		return nil, ErrMalformed
	}
	return c, nil
}

// MissingScopes returns those of required the token lacks (nil: none).
func (c *Claims) MissingScopes(required []string) []string {
	var missing []string
	for _, r := range required {
		if !slices.Contains(c.Scopes, r) {
			missing = append(missing, r)
		}
	}
	return missing
}

// optScopes reads `scope` (a space-separated string) or, failing that,
// `scp` (a string or an array of strings).
func optScopes(all map[string]any, dst *[]string) bool {
	if v, ok := all["scope"]; ok {
		s, ok := v.(string)
		*dst = strings.Fields(s)
		return ok
	}
	return optStrings(all, "scp", strings.Fields, dst)
}

func optString(all map[string]any, name string, dst *string) bool {
	v, present := all[name]
	if !present {
		return true
	}
	s, ok := v.(string)
	*dst = s
	return ok
}

// optAudience accepts `aud` as a string or an array of strings (RFC 7519 §4.1.3).
func optAudience(all map[string]any, dst *[]string) bool {
	return optStrings(all, "aud", func(s string) []string { return []string{s} }, dst)
}

// optStrings reads a claim that is an array of strings, or a string that
// one turns into the list; absent is fine, anything else is malformed.
func optStrings(all map[string]any, name string, one func(string) []string, dst *[]string) bool {
	switch v := all[name].(type) {
	case nil:
		_, present := all[name]
		return !present
	case string:
		*dst = one(v)
		return true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return false
			}
			out = append(out, s)
		}
		*dst = out
		return true
	default:
		return false
	}
}

// optTime parses a NumericDate: a finite, non-negative JSON number of
// seconds, possibly fractional, before the year 10000.
func optTime(all map[string]any, name string, dst *time.Time) bool {
	v, present := all[name]
	if !present {
		return true
	}
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f >= 253402300800 {
		return false
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return true
}
