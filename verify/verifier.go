package verify

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Errors callers branch on. Every reason a token is refused wraps
// ErrInvalidToken, except ErrKeysUnavailable: then the token could not be
// checked at all because no signing keys could be obtained.
var (
	ErrInvalidToken    = errors.New("verify: invalid token")
	ErrMalformed       = fmt.Errorf("%w: malformed", ErrInvalidToken)
	ErrTooLarge        = fmt.Errorf("%w: too large", ErrInvalidToken)
	ErrAlgorithm       = fmt.Errorf("%w: signing algorithm not allowed", ErrInvalidToken)
	ErrUnknownKey      = fmt.Errorf("%w: no signing key matches", ErrInvalidToken)
	ErrSignature       = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	ErrIssuer          = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	ErrAudience        = fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	ErrMissingExpiry   = fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	ErrExpired         = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrNotYetValid     = fmt.Errorf("%w: not valid yet (nbf)", ErrInvalidToken)
	ErrIssuedInFuture  = fmt.Errorf("%w: issued in the future (iat)", ErrInvalidToken)
	ErrKeysUnavailable = errors.New("verify: signing keys unavailable")
)

// Defaults of Config.
const (
	DefaultClockSkew    = 30 * time.Second
	DefaultMaxTokenSize = 16 << 10
)

// AsymmetricAlgorithms are the JWS algorithms a Verifier may accept. HMAC
// and "none" are never accepted: a public key is not a shared secret.
var AsymmetricAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact `iss` a token must carry. Required.
	Issuer string
	// Audiences: a token's `aud` must contain at least one of them. Required.
	Audiences []string
	// Algorithms allowed in the token header; a subset of
	// AsymmetricAlgorithms. Default: all of AsymmetricAlgorithms.
	Algorithms []string
	// Keys are the provider's public keys. Required.
	Keys KeySet
	// ClockSkew is tolerated on exp, nbf and iat. Default 30s.
	ClockSkew time.Duration
	// MaxTokenSize is the longest token (bytes) looked at. Default 16 KiB.
	MaxTokenSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// CacheSize, when positive, keeps up to that many verified tokens
	// (keyed by their SHA-256) so a repeated token costs a lookup, not a
	// signature check. An entry is never served at or after the token's
	// exp. Default 0: no cache.
	CacheSize int
	// OptionalExpiry accepts a token without `exp` (still refusing an
	// expired one), as back-channel logout tokens may be. Such a token is
	// never cached. Default false: exp is required.
	OptionalExpiry bool
}

// Verifier checks signed JWTs (ID tokens and access tokens) against a
// provider's keys and the registered claims.
type Verifier struct {
	cfg   Config
	algs  map[string]bool
	cache *lru.Cache[[sha256.Size]byte, cached]
	stats counters
	// lastHeader is the JOSE header parsed last, by its encoded form: a
	// provider signs all its tokens under one header (the same alg, kid
	// and typ), so a new token's header is rarely new.
	lastHeader atomic.Pointer[parsedHeader]
}

// maxMemoHeader bounds the encoded headers lastHeader keeps.
const maxMemoHeader = 512

// parsedHeader is a header and the encoded form it was parsed from.
type parsedHeader struct {
	enc string
	h   header
}

// cached is a verified token's claims, servable until its exp while the
// key set is at the generation it was verified under.
type cached struct {
	claims *Claims
	until  time.Time
	gen    uint64
}

// Stats counts verifications by outcome and cache use.
type Stats struct {
	Valid, Invalid, Unavailable uint64
	CacheHits, CacheMisses      uint64
}

type counters struct {
	valid, invalid, unavailable, hits, misses atomic.Uint64
}

// New checks cfg (failing closed on anything incomplete or unsafe) and
// returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("verify: issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("verify: at least one non-empty audience is required")
	}
	if cfg.Keys == nil {
		return nil, errors.New("verify: a key set is required")
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.ClockSkew < 0 || cfg.ClockSkew > 10*time.Minute {
		return nil, fmt.Errorf("verify: clock skew %s out of range [0, 10m]", cfg.ClockSkew)
	}
	if cfg.MaxTokenSize <= 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = AsymmetricAlgorithms
	}
	v := &Verifier{cfg: cfg, algs: make(map[string]bool, len(cfg.Algorithms))}
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(AsymmetricAlgorithms, alg) {
			return nil, fmt.Errorf("verify: algorithm %q is not an allowed asymmetric algorithm", alg)
		}
		v.algs[alg] = true
	}
	v.cfg.Audiences = slices.Clone(cfg.Audiences)
	if cfg.CacheSize > 0 {
		c, err := lru.New[[sha256.Size]byte, cached](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("verify: cache: %w", err)
		}
		v.cache = c
	}
	return v, nil
}

// Stats returns the verification counters.
func (v *Verifier) Stats() Stats {
	return Stats{
		Valid:       v.stats.valid.Load(),
		Invalid:     v.stats.invalid.Load(),
		Unavailable: v.stats.unavailable.Load(),
		CacheHits:   v.stats.hits.Load(),
		CacheMisses: v.stats.misses.Load(),
	}
}

// Verify checks token's size and form, its header algorithm against the
// allow-list, its signature against the key set (refetching the keys once,
// rate-limited, for an unknown key id), then `iss`, `aud`, `exp` (required
// unless Config.OptionalExpiry), `nbf` and `iat` with the clock skew. It
// returns the claims, or an error wrapping ErrInvalidToken (or
// ErrKeysUnavailable). With a cache, a token verified before is answered
// from it until its exp. The returned claims may be shared: callers must
// not modify them.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > v.cfg.MaxTokenSize {
		v.stats.invalid.Add(1)
		return nil, ErrTooLarge
	}
	if v.cache == nil {
		return v.count(v.verify(ctx, token))
	}
	// Hash the string's bytes in place: a copy would be the only allocation
	// on the cache-hit path. Sum256 does not keep the slice.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	now := v.cfg.Now()
	gen := v.cfg.Keys.generation()
	if e, ok := v.cache.Get(key); ok {
		// A key the provider withdrew stops verifying at once (SA2-11).
		if now.Before(e.until) && e.gen == gen {
			v.stats.hits.Add(1)
			v.stats.valid.Add(1)
			return e.claims, nil
		}
		v.cache.Remove(key)
	}
	v.stats.misses.Add(1)
	c, err := v.count(v.verify(ctx, token))
	if err == nil && now.Before(c.Expiry) {
		v.cache.Add(key, cached{claims: c, until: c.Expiry, gen: gen})
	}
	return c, err
}

func (v *Verifier) count(c *Claims, err error) (*Claims, error) {
	switch {
	case err == nil:
		v.stats.valid.Add(1)
	case errors.Is(err, ErrKeysUnavailable):
		v.stats.unavailable.Add(1)
	default:
		v.stats.invalid.Add(1)
	}
	return c, err
}

func (v *Verifier) verify(ctx context.Context, token string) (*Claims, error) {
	parts, err := splitCompact(token)
	if err != nil {
		return nil, err
	}
	h, err := v.header(parts.header)
	if err != nil {
		return nil, err
	}
	if !v.algs[h.Alg] {
		return nil, ErrAlgorithm
	}
	if err := checkSignature(ctx, v.cfg.Keys, h, parts); err != nil {
		return nil, err
	}
	c, err := parseClaims(parts.payload)
	if err != nil {
		return nil, err
	}
	c.Algorithm, c.Type = h.Alg, h.Typ
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	return c, nil
}

// header parses a token's encoded JOSE header, or takes it from
// lastHeader when it is the same text.
func (v *Verifier) header(enc string) (header, error) {
	if last := v.lastHeader.Load(); last != nil && last.enc == enc {
		return last.h, nil
	}
	h, err := parseHeader(enc)
	if err != nil {
		return h, err
	}
	// A copy: enc is part of the token, which the memo must not keep. A
	// provider's header is well under the bound; a longer one is not worth
	// keeping.
	if len(enc) <= maxMemoHeader {
		v.lastHeader.Store(&parsedHeader{enc: strings.Clone(enc), h: h})
	}
	return h, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	if c.Issuer != v.cfg.Issuer {
		return ErrIssuer
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return ErrAudience
	}
	now, skew := v.cfg.Now(), v.cfg.ClockSkew
	if c.Expiry.IsZero() {
		if !v.cfg.OptionalExpiry {
			return ErrMissingExpiry
		}
	} else if !now.Before(c.Expiry.Add(skew)) {
		return ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(skew).Before(c.NotBefore) {
		return ErrNotYetValid
	}
	if !c.IssuedAt.IsZero() && now.Add(skew).Before(c.IssuedAt) {
		return ErrIssuedInFuture
	}
	return nil
}
