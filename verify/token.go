package verify

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync/atomic"
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

// compactChars marks the bytes of a compact serialization: base64url and
// the dots.
var compactChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = true
	}
	return t
}()

// splitCompact splits a JWS compact serialization into its three non-empty
// base64url parts. The JSON serialization and anything with other bytes is
// ErrMalformed.
func splitCompact(token string) (compact, error) {
	for i := 0; i < len(token); i++ {
		if !compactChars[token[i]] {
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

	payload []byte                         // the claims' JSON, as signed
	members []member                       // where each claim is in payload
	all     atomic.Pointer[map[string]any] // Map, once decoded
	derived atomic.Pointer[[]derivation]   // see Derived
}

// Map returns every claim of the token as decoded JSON (numbers are
// json.Number). It is decoded on first use and then kept with the claims
// — in the verified-token cache too, for as long as the token stays
// there: to read a few claims, Claim is cheaper. The map is shared:
// callers must not modify it.
func (c *Claims) Map() map[string]any {
	if m := c.all.Load(); m != nil {
		return *m
	}
	all := decodeObject(c.payload, c.members)
	c.all.CompareAndSwap(nil, &all)
	return *c.all.Load()
}

// Claim returns one claim of the token as Map holds it (a name given
// twice is its last value), and whether the token has it. Only that claim
// is decoded, and nothing is kept.
func (c *Claims) Claim(name string) (any, bool) {
	if m := c.all.Load(); m != nil {
		v, ok := (*m)[name]
		return v, ok
	}
	v, ok := lookup(c.payload, c.members, name)
	if !ok {
		return nil, false
	}
	return decodeValue(v), true
}

// derivation is a value Derived built, and its key.
type derivation struct{ key, val any }

// maxDerived bounds the values a Claims keeps for Derived.
const maxDerived = 4

// Derived returns build(c), built once for each key and then kept with
// the claims — in the verified-token cache too — so that what a caller
// derives from a token's claims alone (the identity a mapper makes of
// them, a policy's verdict) is not derived again for a token seen
// before. key stands for everything besides the claims that the value
// depends on; the claims keep the values of the latest few keys.
// Concurrent first calls may each build.
func Derived[K comparable, T any](c *Claims, key K, build func(*Claims) T) T {
	if p := c.derived.Load(); p != nil {
		for _, d := range *p {
			if k, ok := d.key.(K); ok && k == key {
				v, _ := d.val.(T)
				return v
			}
		}
	}
	v := build(c)
	for {
		old := c.derived.Load()
		next := make([]derivation, 0, maxDerived)
		if old != nil {
			for _, d := range *old {
				if k, ok := d.key.(K); !ok || k != key {
					next = append(next, d)
				}
			}
			next = next[max(0, len(next)-(maxDerived-1)):]
		}
		next = append(next, derivation{key: key, val: v})
		if c.derived.CompareAndSwap(old, &next) {
			return v
		}
	}
}

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

// The registered claims parseClaims reads, by their index in its table.
const (
	claimIss = iota
	claimSub
	claimAud
	claimExp
	claimNbf
	claimIat
	claimNonce
	claimAzp
	claimAtHash
	claimSid
	claimScope
	claimScp
	numRegistered
)

var registeredClaims = map[string]int{
	"iss": claimIss, "sub": claimSub, "aud": claimAud, "exp": claimExp, "nbf": claimNbf, "iat": claimIat,
	"nonce": claimNonce, "azp": claimAzp, "at_hash": claimAtHash, "sid": claimSid, "scope": claimScope, "scp": claimScp,
}

// parseClaims decodes a verified payload: a JSON object and nothing after
// it. Registered claims of the wrong JSON type are ErrMalformed; a claim
// given twice counts with its last value; exp is required by the
// Verifier, not here. The other claims stay undecoded until Map or Claim
// asks for them.
func parseClaims(enc string) (*Claims, error) {
	payload, err := b64.DecodeString(enc)
	if err != nil || !json.Valid(payload) {
		return nil, ErrMalformed
	}
	members, ok := objectMembers(payload, 32)
	if !ok {
		return nil, ErrMalformed
	}
	// Where each registered claim is: its last member, as in a map.
	var at [numRegistered][]byte
	for _, m := range members {
		var n int
		if m.plainKey {
			n, ok = registeredClaims[string(m.key.of(payload))]
		} else {
			n, ok = registeredClaims[decodeKey(payload, m)]
		}
		if ok {
			at[n] = m.val.of(payload)
		}
	}
	c := &Claims{payload: payload, members: members}
	ok = optString(at[claimIss], &c.Issuer) &&
		optString(at[claimSub], &c.Subject) &&
		optStrings(at[claimAud], func(s string) []string { return []string{s} }, &c.Audience) &&
		optTime(at[claimExp], &c.Expiry) &&
		optTime(at[claimNbf], &c.NotBefore) &&
		optTime(at[claimIat], &c.IssuedAt) &&
		optString(at[claimNonce], &c.Nonce) &&
		optString(at[claimAzp], &c.AuthorizedParty) &&
		optString(at[claimAtHash], &c.AccessTokenHash) &&
		optString(at[claimSid], &c.SessionID) &&
		optScopes(at[claimScope], at[claimScp], &c.Scopes)
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

// The opt* functions read an optional claim from its JSON text v (nil:
// absent, which is fine); a value of another type is malformed.

// optScopes reads `scope` (a space-separated string) or, failing that,
// `scp` (a string or an array of strings).
func optScopes(scope, scp []byte, dst *[]string) bool {
	if scope != nil {
		s, ok := stringValue(scope)
		*dst = strings.Fields(s)
		return ok
	}
	return optStrings(scp, strings.Fields, dst)
}

func optString(v []byte, dst *string) bool {
	if v == nil {
		return true
	}
	s, ok := stringValue(v)
	*dst = s
	return ok
}

// optStrings reads a claim that is an array of strings, or a string that
// one turns into the list (`aud`, RFC 7519 §4.1.3; `scp`).
func optStrings(v []byte, one func(string) []string, dst *[]string) bool {
	if v == nil {
		return true
	}
	list, ok := stringsValue(v, one)
	*dst = list
	return ok
}

// optTime parses a NumericDate: a finite, non-negative JSON number of
// seconds, possibly fractional, before the year 10000.
func optTime(v []byte, dst *time.Time) bool {
	if v == nil {
		return true
	}
	f, ok := numericDate(v)
	if !ok {
		return false
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return true
}
