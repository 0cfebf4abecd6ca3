package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// ErrInvalidDPoPProof wraps every reason a DPoP proof (RFC 9449) is
// refused: the caller answers 401 with `WWW-Authenticate: DPoP
// error="invalid_dpop_proof"` (§7.1). It is not an ErrInvalidToken: the
// access token may be fine, the proof of its possession is not.
var ErrInvalidDPoPProof = errors.New("verify: invalid DPoP proof")

// ErrDPoPReplay: the proof's jti was seen before with the same key, within
// the time the proof is acceptable (RFC 9449 §11.1).
var ErrDPoPReplay = fmt.Errorf("%w: replayed (its jti was seen before)", ErrInvalidDPoPProof)

// ErrDPoPBinding: the access token is not bound to the DPoP proof's key —
// its cnf.jkt is missing or names another key (RFC 9449 §6.1, §7.1). It is
// a token error (invalid_token), not a proof error.
var ErrDPoPBinding = fmt.Errorf("%w: not bound to the DPoP proof's key (cnf.jkt)", ErrInvalidToken)

// The reasons a proof is refused. Each wraps ErrInvalidDPoPProof and names
// the rule, never the proof's content.
var (
	errDPoPMissing   = dpopError("no DPoP header")
	errDPoPMultiple  = dpopError("more than one DPoP header")
	errDPoPTooLarge  = dpopError("too large")
	errDPoPMalformed = dpopError("not a well-formed compact JWS")
	errDPoPHeader    = dpopError("malformed JOSE header")
	errDPoPCrit      = dpopError("header marks an extension critical")
	errDPoPType      = dpopError(`typ is not "dpop+jwt"`)
	errDPoPAlgorithm = dpopError("alg is not an allowed asymmetric algorithm")
	errDPoPNoJWK     = dpopError("no jwk header")
	errDPoPPrivate   = dpopError("the jwk header holds private or symmetric key material")
	errDPoPJWK       = dpopError("the jwk header is not a usable public key")
	errDPoPKeyAlg    = dpopError("the jwk does not fit alg")
	errDPoPSignature = dpopError("bad signature")
	errDPoPClaims    = dpopError("malformed claims")
	errDPoPJTI       = dpopError("jti missing or too long")
	errDPoPMethod    = dpopError("htm is not the request method")
	errDPoPURI       = dpopError("htu is not the request URI")
	errDPoPIATMiss   = dpopError("iat missing or not a NumericDate")
	errDPoPTooOld    = dpopError("iat is too old")
	errDPoPFuture    = dpopError("iat is in the future")
	errDPoPNoATH     = dpopError("ath missing, but the proof accompanies an access token")
	errDPoPATH       = dpopError("ath is not the access token's hash")
)

func dpopError(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidDPoPProof, reason) }

// ErrDPoPRequestURL: Verify was given a request URL that is not absolute
// (scheme and host). It is the caller's mistake, not the client's.
var ErrDPoPRequestURL = errors.New("verify: DPoP: the request URL must be absolute (scheme and host)")

// Defaults of DPoPConfig.
const (
	// DefaultDPoPMaxAge is how long after its iat a proof is accepted: a
	// proof is made for one request and sent at once (RFC 9449 §11.1).
	DefaultDPoPMaxAge = 60 * time.Second
	// DefaultDPoPClockSkew is how far ahead of ours a client's clock may
	// be: a proof's iat may be this much in the future.
	DefaultDPoPClockSkew = 10 * time.Second
	// DefaultDPoPReplayCacheSize bounds the jti replay cache: about 10 MB,
	// and 1000 proofs a second for a minute before a live entry is evicted.
	DefaultDPoPReplayCacheSize = 1 << 16
	// DefaultMaxDPoPProofSize bounds a proof: room for an RSA-4096 key and
	// signature, three times over.
	DefaultMaxDPoPProofSize = 8 << 10
	// MaxDPoPJTILength bounds a proof's jti (bytes).
	MaxDPoPJTILength = 256
)

// DPoPAlgorithms are the JWS algorithms a DPoPVerifier accepts by default.
var DPoPAlgorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// dpopHeaderCacheSize bounds the cache of checked proof headers: one per
// client key in use.
const dpopHeaderCacheSize = 4096

// maxDPoPRSABits bounds an RSA proof key: a huge modulus would make the
// signature check the client's lever on our CPU.
const maxDPoPRSABits = 8192

// DPoPConfig configures a DPoPVerifier.
type DPoPConfig struct {
	// Algorithms allowed in a proof's header; a subset of
	// AsymmetricAlgorithms. Default: DPoPAlgorithms.
	Algorithms []string
	// MaxAge is how long after its iat a proof is accepted. Default 60s;
	// at most 10m.
	MaxAge time.Duration
	// ClockSkew is how far in the future a proof's iat may be. Default
	// 10s; at most 5m.
	ClockSkew time.Duration
	// ReplayCacheSize bounds the cache of seen jti values (per key). Default
	// DefaultDPoPReplayCacheSize.
	ReplayCacheSize int
	// MaxProofSize is the longest proof (bytes) looked at. Default 8 KiB.
	MaxProofSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DPoPVerifier checks DPoP proofs (RFC 9449 §4.3) that accompany requests
// to a protected resource, and remembers their jti to refuse replays. It
// is safe for concurrent use.
type DPoPVerifier struct {
	cfg  DPoPConfig
	algs map[string]bool

	// headers are recently checked proof headers, by SHA-256.
	headers *lru.Cache[[sha256.Size]byte, checkedHeader]

	mu        sync.Mutex // guards seen and evictNow
	seen      *simplelru.LRU[[sha256.Size]byte, time.Time]
	evictNow  time.Time // the time of the Add that may evict
	valid     atomic.Uint64
	invalid   atomic.Uint64
	replays   atomic.Uint64
	liveEvict atomic.Uint64
}

// DPoPStats counts proof verifications by outcome.
type DPoPStats struct {
	Valid, Invalid uint64
	// Replays counts proofs refused because their jti was seen before
	// (included in Invalid).
	Replays uint64
	// LiveEvictions counts jti entries the replay cache dropped while
	// their proof was still acceptable: a replay of such a proof would go
	// unnoticed. A steady rise means ReplayCacheSize is too small for the
	// traffic (or someone is flooding it).
	LiveEvictions uint64
}

// NewDPoPVerifier checks cfg (failing closed on anything unsafe) and
// returns a DPoPVerifier.
func NewDPoPVerifier(cfg DPoPConfig) (*DPoPVerifier, error) {
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultDPoPMaxAge
	}
	if cfg.MaxAge < 0 || cfg.MaxAge > 10*time.Minute {
		return nil, fmt.Errorf("verify: DPoP max age %s out of range (0, 10m]", cfg.MaxAge)
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultDPoPClockSkew
	}
	if cfg.ClockSkew < 0 || cfg.ClockSkew > 5*time.Minute {
		return nil, fmt.Errorf("verify: DPoP clock skew %s out of range [0, 5m]", cfg.ClockSkew)
	}
	if cfg.ReplayCacheSize == 0 {
		cfg.ReplayCacheSize = DefaultDPoPReplayCacheSize
	}
	if cfg.ReplayCacheSize < 0 {
		return nil, errors.New("verify: DPoP replay cache size must be positive")
	}
	if cfg.MaxProofSize <= 0 {
		cfg.MaxProofSize = DefaultMaxDPoPProofSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DPoPAlgorithms
	}
	v := &DPoPVerifier{algs: make(map[string]bool, len(cfg.Algorithms))}
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(AsymmetricAlgorithms, alg) {
			return nil, fmt.Errorf("verify: DPoP algorithm %q is not an allowed asymmetric algorithm", alg)
		}
		v.algs[alg] = true
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	v.cfg = cfg
	seen, err := simplelru.NewLRU(cfg.ReplayCacheSize, v.evicted)
	if err != nil {
		return nil, fmt.Errorf("verify: DPoP replay cache: %w", err)
	}
	v.seen = seen
	v.headers, err = lru.New[[sha256.Size]byte, checkedHeader](dpopHeaderCacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify: DPoP header cache: %w", err)
	}
	return v, nil
}

// Stats returns the verification counters.
func (v *DPoPVerifier) Stats() DPoPStats {
	return DPoPStats{
		Valid:         v.valid.Load(),
		Invalid:       v.invalid.Load(),
		Replays:       v.replays.Load(),
		LiveEvictions: v.liveEvict.Load(),
	}
}

// Verify checks the DPoP proof of a request (RFC 9449 §4.3) and returns the
// RFC 7638 SHA-256 thumbprint of its key (base64url), which the caller
// compares with the access token's cnf.jkt (CheckDPoPBinding).
//
// proofs are the values of the request's DPoP header: exactly one is
// required. method is the request method; u the request's absolute URL
// (scheme, host and path of the original request, before any rewrite; its
// query and fragment are ignored). accessToken is the token the proof
// accompanies; "" for a request without one (then ath is not checked).
//
// In order: one header; its size; a well-formed compact JWS; the header's
// typ (dpop+jwt), crit (refused), alg (the allow-list) and jwk (a public
// key of a type that fits alg — private or symmetric material refused,
// RSA 2048 to 8192 bits); the signature, with that key; then the claims:
// jti (required, at most 256 bytes), htm (the method, exactly), htu (the
// URI, compared after RFC 3986 §6.2.2–6.2.3 normalization, without query
// and fragment), iat (at most MaxAge old, at most ClockSkew ahead), ath
// (when accessToken is given). Last, a proof whose jti was seen with the
// same key within its acceptable time is ErrDPoPReplay; otherwise the jti
// is remembered.
//
// Server-provided nonces (§8, §9) are not supported: a nonce claim is
// ignored, and freshness rests on iat and the replay cache.
//
// Refusals wrap ErrInvalidDPoPProof; a non-absolute u is ErrDPoPRequestURL.
func (v *DPoPVerifier) Verify(proofs []string, method string, u *url.URL, accessToken string) (jkt string, err error) {
	jkt, err = v.verify(proofs, method, u, accessToken)
	switch {
	case err == nil:
		v.valid.Add(1)
	case errors.Is(err, ErrDPoPReplay):
		v.replays.Add(1)
		v.invalid.Add(1)
	case errors.Is(err, ErrInvalidDPoPProof):
		v.invalid.Add(1)
	}
	return jkt, err
}

func (v *DPoPVerifier) verify(proofs []string, method string, u *url.URL, accessToken string) (string, error) {
	if !absoluteHTTP(u) {
		return "", ErrDPoPRequestURL
	}
	switch {
	case len(proofs) == 0:
		return "", errDPoPMissing
	case len(proofs) > 1:
		return "", errDPoPMultiple
	case len(proofs[0]) > v.cfg.MaxProofSize:
		return "", errDPoPTooLarge
	}
	parts, err := splitCompact(proofs[0])
	if err != nil {
		return "", errDPoPMalformed
	}
	h, err := v.header(parts.header)
	if err != nil {
		return "", err
	}
	sig, err := b64.DecodeString(parts.signature)
	if err != nil {
		return "", errDPoPMalformed
	}
	verifier, err := jws.NewVerifier(jwa.SignatureAlgorithm(h.alg))
	if err != nil {
		return "", errDPoPAlgorithm
	}
	if verifier.Verify([]byte(parts.signingInput), sig, h.key) != nil {
		return "", errDPoPSignature
	}
	jkt := h.jkt
	c, err := parseDPoPClaims(parts.payload)
	if err != nil {
		return "", err
	}
	now := v.cfg.Now()
	switch {
	case c.JTI == "" || len(c.JTI) > MaxDPoPJTILength:
		return "", errDPoPJTI
	case c.HTM != method:
		return "", errDPoPMethod
	}
	// A request URL that does not normalize (a Host header with odd
	// bytes) matches no htu.
	htu, ok := normalizeURI(u)
	if claimed, ok2 := normalizeHTU(c.HTU); !ok || !ok2 || claimed != htu {
		return "", errDPoPURI
	}
	iat, ok := proofNumericDate(c.IAT)
	switch {
	case !ok:
		return "", errDPoPIATMiss
	case now.After(iat.Add(v.cfg.MaxAge)):
		return "", errDPoPTooOld
	case iat.After(now.Add(v.cfg.ClockSkew)):
		return "", errDPoPFuture
	}
	if accessToken != "" {
		if c.ATH == "" {
			return "", errDPoPNoATH
		}
		if !athMatches(c.ATH, accessToken) {
			return "", errDPoPATH
		}
	}
	if !v.firstUse(jkt, c.JTI, now, iat.Add(v.cfg.MaxAge)) {
		return "", ErrDPoPReplay
	}
	return jkt, nil
}

// firstUse records the jti of a key until the proof stops being
// acceptable and reports whether it was new. Keys are hashes: the cache's
// memory is bounded by its entry count, whatever the jti.
func (v *DPoPVerifier) firstUse(jkt, jti string, now, until time.Time) bool {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var key [sha256.Size]byte
	h.Sum(key[:0])
	v.mu.Lock()
	defer v.mu.Unlock()
	if prev, ok := v.seen.Peek(key); ok && !now.After(prev) {
		return false
	}
	v.evictNow = now
	v.seen.Add(key, until)
	return true
}

// evicted counts entries the replay cache drops while still live. It runs
// under v.mu, inside firstUse's Add.
func (v *DPoPVerifier) evicted(_ [sha256.Size]byte, until time.Time) {
	if !v.evictNow.After(until) {
		v.liveEvict.Add(1)
	}
}

// checkedHeader is a proof header that passed every check: its algorithm,
// its key and the key's thumbprint.
type checkedHeader struct {
	alg, jkt string
	key      any
}

// header checks a proof's encoded JOSE header: typ, crit, alg, jwk. A
// client sends the same header with every proof, so headers that passed
// are remembered (by their SHA-256) and not parsed again.
func (v *DPoPVerifier) header(enc string) (checkedHeader, error) {
	// Hash the string's bytes in place; Sum256 does not keep the slice.
	hk := sha256.Sum256(unsafe.Slice(unsafe.StringData(enc), len(enc)))
	if h, ok := v.headers.Get(hk); ok {
		return h, nil
	}
	h, err := parseDPoPHeader(enc)
	if err != nil {
		return checkedHeader{}, err
	}
	if !dpopType(h.Typ) {
		return checkedHeader{}, errDPoPType
	}
	if !v.algs[h.Alg] {
		return checkedHeader{}, errDPoPAlgorithm
	}
	key, jkt, err := dpopKey(h.JWK, h.Alg)
	if err != nil {
		return checkedHeader{}, err
	}
	ch := checkedHeader{alg: h.Alg, jkt: jkt, key: key}
	v.headers.Add(hk, ch)
	return ch, nil
}

// dpopHeader is the part of a proof's JOSE header we act on.
type dpopHeader struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

func parseDPoPHeader(enc string) (dpopHeader, error) {
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return dpopHeader{}, errDPoPMalformed
	}
	var h dpopHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return dpopHeader{}, errDPoPHeader
	}
	if h.Crit != nil {
		return dpopHeader{}, errDPoPCrit
	}
	if len(h.JWK) == 0 || string(h.JWK) == "null" {
		return dpopHeader{}, errDPoPNoJWK
	}
	return h, nil
}

// dpopType accepts typ dpop+jwt; media types compare case-insensitively
// and may carry the application/ prefix (RFC 7515 §4.1.9).
func dpopType(typ string) bool {
	return strings.EqualFold(typ, "dpop+jwt") || strings.EqualFold(typ, "application/dpop+jwt")
}

// jwkMembers are the members of a proof's jwk checked before jwx sees it:
// the key type, its use, and any member that carries private (RFC 7518
// §6.2.2, §6.3.2; RFC 8037 §2) or symmetric (§6.4) key material.
type jwkMembers struct {
	Kty string          `json:"kty"`
	Use string          `json:"use"`
	D   json.RawMessage `json:"d"`
	P   json.RawMessage `json:"p"`
	Q   json.RawMessage `json:"q"`
	DP  json.RawMessage `json:"dp"`
	DQ  json.RawMessage `json:"dq"`
	QI  json.RawMessage `json:"qi"`
	Oth json.RawMessage `json:"oth"`
	K   json.RawMessage `json:"k"`
}

// dpopKey parses a proof's jwk header: a public EC, RSA or Ed25519 key
// that fits alg. It returns the key and its RFC 7638 SHA-256 thumbprint.
func dpopKey(raw json.RawMessage, alg string) (any, string, error) {
	var m jwkMembers
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", errDPoPJWK
	}
	if m.D != nil || m.P != nil || m.Q != nil || m.DP != nil || m.DQ != nil || m.QI != nil || m.Oth != nil || m.K != nil {
		return nil, "", errDPoPPrivate
	}
	switch {
	case m.Kty != "EC" && m.Kty != "RSA" && m.Kty != "OKP":
		return nil, "", errDPoPJWK
	case m.Use != "" && m.Use != string(jwk.ForSignature):
		return nil, "", errDPoPJWK
	}
	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, "", errDPoPJWK
	}
	var key any
	if err := k.Raw(&key); err != nil {
		return nil, "", errDPoPJWK
	}
	switch rk := key.(type) {
	case *rsa.PublicKey:
		if bits := rk.N.BitLen(); bits < minRSABits || bits > maxDPoPRSABits {
			return nil, "", errDPoPJWK
		}
	case *ecdsa.PublicKey:
		if _, err := rk.ECDH(); err != nil { // not a point on its curve
			return nil, "", errDPoPJWK
		}
	case ed25519.PublicKey:
	default: // a private key jwx found anyway, X25519, …
		return nil, "", errDPoPJWK
	}
	keyAlg := ""
	if a := k.Algorithm(); a != nil {
		keyAlg = a.String()
	}
	if !(publicKey{alg: keyAlg, key: key}).fits(alg) {
		return nil, "", errDPoPKeyAlg
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", errDPoPJWK
	}
	return key, base64.RawURLEncoding.EncodeToString(tp), nil
}

// dpopClaims are a proof's claims (RFC 9449 §4.2). iat stays raw so that a
// string is refused rather than read as a number.
type dpopClaims struct {
	JTI string          `json:"jti"`
	HTM string          `json:"htm"`
	HTU string          `json:"htu"`
	IAT json.RawMessage `json:"iat"`
	ATH string          `json:"ath"`
}

func parseDPoPClaims(enc string) (dpopClaims, error) {
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return dpopClaims{}, errDPoPMalformed
	}
	var c dpopClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return dpopClaims{}, errDPoPClaims
	}
	return c, nil
}

// proofNumericDate reads a NumericDate as optTime does: a finite, non-negative
// JSON number of seconds, possibly fractional, before the year 10000.
func proofNumericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || !(raw[0] >= '0' && raw[0] <= '9') {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= 253402300800 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// athMatches checks ath: the base64url SHA-256 of the access token's
// ASCII (RFC 9449 §4.2).
func athMatches(ath, accessToken string) bool {
	sum := sha256.Sum256([]byte(accessToken))
	var want [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(want[:], sum[:])
	return subtle.ConstantTimeCompare(want[:], []byte(ath)) == 1
}

// ConfirmationThumbprint returns the JWK SHA-256 thumbprint a token is
// bound to (`cnf.jkt`, RFC 9449 §6) from its claims — a verified JWT's
// Claims.Map() or an introspection answer — and whether it has one.
func ConfirmationThumbprint(claims map[string]any) (jkt string, ok bool) {
	cnf, _ := claims["cnf"].(map[string]any)
	jkt, _ = cnf["jkt"].(string)
	return jkt, jkt != ""
}

// CheckDPoPBinding checks that a token's claims bind it to the key whose
// thumbprint jkt a DPoP proof's Verify returned (RFC 9449 §7.1): a token
// without cnf.jkt, or with another, is ErrDPoPBinding.
func CheckDPoPBinding(claims map[string]any, jkt string) error {
	bound, ok := ConfirmationThumbprint(claims)
	if !ok || jkt == "" || subtle.ConstantTimeCompare([]byte(bound), []byte(jkt)) != 1 {
		return ErrDPoPBinding
	}
	return nil
}

// absoluteHTTP reports whether u is an absolute http(s) URL: what Verify
// needs as the request URL.
func absoluteHTTP(u *url.URL) bool {
	if u == nil || u.Host == "" || u.Opaque != "" {
		return false
	}
	s := strings.ToLower(u.Scheme)
	return s == "https" || s == "http"
}

// normalizeHTU parses and normalizes a proof's htu: an absolute http(s)
// URI without user info.
func normalizeHTU(htu string) (string, bool) {
	if htu == "" || len(htu) > 8<<10 {
		return "", false
	}
	u, err := url.Parse(htu)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil {
		return "", false
	}
	return normalizeURI(u)
}

// normalizeURI applies RFC 3986's syntax-based normalization (§6.2.2: case
// of scheme, host and percent-encodings; unreserved characters decoded;
// dot segments removed) and its scheme-based one for http(s) (§6.2.3: the
// default port and an empty path) to scheme, host and path. Query and
// fragment are left out (RFC 9449 §4.3 item 9).
func normalizeURI(u *url.URL) (string, bool) {
	scheme := strings.ToLower(u.Scheme)
	var defaultPort string
	switch scheme {
	case "https":
		defaultPort = "443"
	case "http":
		defaultPort = "80"
	default:
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if !hostChars(host) {
		return "", false
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && port != defaultPort {
		host += ":" + port
	}
	path, ok := normalizePercent(u.EscapedPath())
	if !ok {
		return "", false
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// hostChars accepts a lower-cased host name or IP literal: letters,
// digits, "-", ".", "_", "~", and the ":" of IPv6 literals (no zones: they
// mean nothing to a remote server). Nothing that could end the authority
// ("/", "?", "#", "@") or hide a byte gets through.
func hostChars(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == ':') {
			return false
		}
	}
	return true
}

// normalizePercent upper-cases percent-encodings and decodes those of
// unreserved characters (RFC 3986 §6.2.2.1–2); a malformed one fails.
func normalizePercent(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
		i += 2
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// removeDotSegments is RFC 3986 §5.2.4's algorithm on an absolute path.
func removeDotSegments(path string) string {
	if !strings.Contains(path, ".") {
		return path
	}
	var out []string // output segments, each with its leading "/"
	in := path
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				out = append(out, in)
				in = ""
			} else {
				out = append(out, in[:j+1])
				in = in[j+1:]
			}
		}
	}
	return strings.Join(out, "")
}
