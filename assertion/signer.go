package assertion

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of Options.
const (
	DefaultLifetime        = time.Minute
	DefaultCacheSize       = 4096
	DefaultAlgorithm       = es256
	DefaultStorageKey      = "gatehouse/assertion/default/keys.json"
	DefaultRotationPeriod  = 24 * time.Hour
	DefaultPublishAhead    = time.Hour
	DefaultRefreshInterval = 5 * time.Minute
)

// Bounds of Options.Lifetime.
const (
	MinLifetime = time.Second
	MaxLifetime = time.Hour
)

// refreshTimeout bounds one Refresh: loading, locking, writing.
const refreshTimeout = time.Minute

// unlockTimeout bounds releasing the storage lock, which runs even when
// the refresh's context has ended.
const unlockTimeout = 10 * time.Second

// Options configures a Signer. The key comes either from PrivateKeyPEM (a
// static key) or from a key ring in Storage (generated and rotated); one
// of the two is required.
type Options struct {
	// Issuer is every assertion's `iss`: the site's URL. Optional when
	// every Claims names its own Issuer.
	Issuer string
	// Lifetime is how long an assertion is valid (`exp` - `iat`), never
	// past Claims.NotAfter. Default 1m; from 1s to 1h.
	Lifetime time.Duration
	// CacheSize bounds the cache of signed assertions (entries). Default
	// 4096; negative disables the cache, so every Token call signs.
	CacheSize int

	// PrivateKeyPEM is a static signing key: EC P-256 (ES256), RSA of at
	// least 2048 bits (RS256, or PS256 through Algorithm) or Ed25519
	// (EdDSA), in PKCS#8, SEC 1 or PKCS#1 PEM. It never rotates.
	PrivateKeyPEM []byte
	// Algorithm is the JWS algorithm: ES256, RS256, PS256 or EdDSA. With
	// PrivateKeyPEM it must fit the key (default: the key's, RS256 for
	// RSA); with Storage it is the type of the keys generated from now on
	// (default ES256: small keys and signatures, fast to generate, known
	// to every JWT library).
	Algorithm string

	// Storage keeps the key ring that every instance behind a load
	// balancer signs from (Caddy's storage: certmagic.Storage).
	Storage Storage
	// StorageKey names the ring document in Storage; its storage lock
	// has the same name. Default DefaultStorageKey.
	StorageKey string
	// RotationPeriod is how long each key signs. Default 24h: a leaked key
	// is good for about a day, at the cost of one storage write per day
	// for the whole cluster (two, with the write that drops the old key).
	RotationPeriod time.Duration
	// PublishAhead is how long a new key is published before it signs;
	// it must exceed RefreshInterval + JWKSMaxAge, and it is also the
	// margin a retired key stays published after its last assertion
	// expired. Default 1h.
	PublishAhead time.Duration
	// RefreshInterval is how often the ring is reloaded from Storage in
	// the background (and rotated or pruned when due). Default 5m.
	RefreshInterval time.Duration

	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives key ring events: creation and rotation at Info,
	// storage failures at Warn. Default: discard.
	Logger *slog.Logger
}

// Signer issues signed identity assertions (JWTs) and publishes the keys
// that verify them. It is safe for concurrent use. Token and the JWKS
// accessors never touch storage; with a key ring, a background goroutine
// does, until Close.
type Signer struct {
	opts      Options
	retention time.Duration // how long a retired key stays published
	log       *slog.Logger

	state atomic.Pointer[keyState]
	cache *lru.Cache[string, *entry]
	stats counters

	refreshMu sync.Mutex // serializes Refresh; guards the fields below
	ring      *ring      // the ring last installed
	raw       []byte     // the document parsed last, and its ring
	parsed    *ring

	cancel context.CancelFunc
	done   chan struct{}
}

// keyState is what the request path reads: the published keys, sorted by
// activation, and their JWKS.
type keyState struct {
	keys      []*signingKey
	published *Published
}

// signing returns the newest key whose activation has passed, or the
// earliest one when none has (a clock a little behind the one that
// created the ring).
func (st *keyState) signing(now time.Time) *signingKey {
	k := st.keys[0]
	for _, c := range st.keys[1:] {
		if now.Before(c.activates) {
			break
		}
		k = c
	}
	return k
}

// entry is a cached assertion.
type entry struct {
	token      string
	key        *signingKey
	exp        time.Time
	freshUntil time.Time // half its lifetime left
	claims     Claims    // a deep copy, to compare with later calls
}

// Stats counts the Signer's work.
type Stats struct {
	// Reused counts Token calls answered from the cache.
	Reused uint64
	// Signed counts assertions signed.
	Signed uint64
	// Rotations counts keys this instance added to the ring.
	Rotations uint64
	// RefreshFailures counts background refreshes that failed.
	RefreshFailures uint64
}

type counters struct {
	reused, signed, rotations, refreshFailures atomic.Uint64
}

// New checks opts (failing closed on anything incomplete or unsafe) and
// returns a Signer. With Storage it loads the ring (creating it, under the
// storage lock, when there is none), failing when no key could be had,
// and starts the background refresh, which stops when ctx ends or Close
// is called.
func New(ctx context.Context, opts Options) (*Signer, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	s := &Signer{opts: opts, log: opts.Logger, retention: opts.Lifetime + opts.PublishAhead}
	if opts.CacheSize > 0 {
		c, err := lru.New[string, *entry](opts.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("assertion: cache: %w", err)
		}
		s.cache = c
	}
	if opts.Storage == nil {
		priv, err := parsePrivateKeyPEM(opts.PrivateKeyPEM)
		if err != nil {
			return nil, err
		}
		alg, err := keyAlgorithm(priv, opts.Algorithm)
		if err != nil {
			return nil, err
		}
		k, err := newSigningKey(priv, alg, time.Time{})
		if err != nil {
			return nil, err
		}
		pub, err := buildPublished([]*signingKey{k})
		if err != nil {
			return nil, err
		}
		s.state.Store(&keyState{keys: []*signingKey{k}, published: pub})
		return s, nil
	}
	if err := s.Refresh(ctx); err != nil {
		if s.state.Load() == nil {
			return nil, err
		}
		s.log.Warn("assertion key ring loaded, but its maintenance failed", "error", err)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx)
	return s, nil
}

// checkIssuer accepts an absolute http(s) URL.
func checkIssuer(iss string) error {
	if u, err := url.Parse(iss); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("assertion: the issuer must be an http(s) URL")
	}
	return nil
}

// defaults checks o and fills in the defaults.
func (o *Options) defaults() error {
	if err := checkIssuer(o.Issuer); o.Issuer != "" && err != nil {
		return err
	}
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.Lifetime < MinLifetime || o.Lifetime > MaxLifetime {
		return fmt.Errorf("assertion: lifetime %s out of range [%s, %s]", o.Lifetime, MinLifetime, MaxLifetime)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Algorithm != "" && !slices.Contains(algorithms, o.Algorithm) {
		return fmt.Errorf("assertion: algorithm %q (one of %s)", o.Algorithm, strings.Join(algorithms, ", "))
	}
	ring := o.StorageKey != "" || o.RotationPeriod != 0 || o.PublishAhead != 0 || o.RefreshInterval != 0
	switch {
	case len(o.PrivateKeyPEM) > 0 && o.Storage != nil:
		return errors.New("assertion: a static private key and a key ring storage exclude each other")
	case len(o.PrivateKeyPEM) > 0 && ring:
		return errors.New("assertion: a static private key does not rotate: storage key, rotation, publish-ahead and refresh settings need a Storage")
	case len(o.PrivateKeyPEM) > 0:
		return nil
	case o.Storage == nil:
		return errors.New("assertion: a private key or a key ring storage is required")
	}
	if o.Algorithm == "" {
		o.Algorithm = DefaultAlgorithm
	}
	if o.StorageKey == "" {
		o.StorageKey = DefaultStorageKey
	}
	if strings.HasPrefix(o.StorageKey, "/") || strings.HasSuffix(o.StorageKey, "/") {
		return fmt.Errorf("assertion: storage key %q has a leading or trailing slash", o.StorageKey)
	}
	if o.RotationPeriod == 0 {
		o.RotationPeriod = DefaultRotationPeriod
	}
	if o.PublishAhead == 0 {
		o.PublishAhead = DefaultPublishAhead
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.RotationPeriod < 0 || o.PublishAhead < 0 || o.RefreshInterval < 0 {
		return errors.New("assertion: negative rotation period, publish-ahead or refresh interval")
	}
	if o.PublishAhead <= o.RefreshInterval+JWKSMaxAge {
		return fmt.Errorf("assertion: publish-ahead %s must exceed the refresh interval %s plus the JWKS max-age %s",
			o.PublishAhead, o.RefreshInterval, JWKSMaxAge)
	}
	if o.RotationPeriod <= o.PublishAhead {
		return fmt.Errorf("assertion: rotation period %s must exceed publish-ahead %s", o.RotationPeriod, o.PublishAhead)
	}
	return nil
}

// Token returns a signed assertion of c. An assertion cached under
// cacheKey is returned instead while it has at least half its lifetime
// left, says exactly what c says (NotAfter aside: its exp must not be
// past c.NotAfter), and was signed by the key that signs now; otherwise a
// new one is signed and cached. The caller picks cacheKey per session
// (its ID and version) or per bearer token (a hash); "" does not cache.
// A cache hit does no signing and no allocation.
//
// The assertion carries iss (Options.Issuer), sub, aud, email and groups
// (when not empty), the Extra claims that are not Reserved, iat and exp =
// min(iat + Lifetime, NotAfter). Errors: ErrIncompleteClaims,
// ErrSessionEnded, ErrExtraClaim.
func (s *Signer) Token(cacheKey string, c Claims) (string, error) {
	now := s.opts.Now()
	key := s.state.Load().signing(now)
	caching := s.cache != nil && cacheKey != ""
	if caching {
		if e, ok := s.cache.Get(cacheKey); ok && e.key == key && !now.After(e.freshUntil) &&
			!e.exp.After(c.NotAfter) && sameClaims(&e.claims, &c) {
			s.stats.reused.Add(1)
			return e.token, nil
		}
	}
	if err := c.check(); err != nil {
		return "", err
	}
	iat := now.Unix()
	exp := min(now.Add(s.opts.Lifetime).Unix(), c.NotAfter.Unix())
	if exp <= iat {
		return "", ErrSessionEnded
	}
	issuer := s.opts.Issuer
	if c.Issuer != "" {
		issuer = c.Issuer
	}
	if issuer == "" {
		return "", ErrIncompleteClaims
	}
	body, err := c.encode(issuer, iat, exp)
	if err != nil {
		return "", err
	}
	tok, err := key.token(body)
	if err != nil {
		return "", err
	}
	s.stats.signed.Add(1)
	if caching {
		expT := time.Unix(exp, 0)
		s.cache.Add(cacheKey, &entry{
			token:      tok,
			key:        key,
			exp:        expT,
			freshUntil: expT.Add(-time.Duration(exp-iat) * time.Second / 2),
			claims:     c.clone(),
		})
	}
	return tok, nil
}

// token is the compact JWS of the claims set body.
func (k *signingKey) token(body []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(k.header)+enc.EncodedLen(len(body))+1+enc.EncodedLen(512))
	buf = enc.AppendEncode(append(buf, k.header...), body)
	sig, err := k.sign(buf)
	if err != nil {
		return "", fmt.Errorf("assertion: signing: %w", err)
	}
	return string(enc.AppendEncode(append(buf, '.'), sig)), nil
}

// Published returns the JWKS with its ETag and Cache-Control, consistent
// with each other. It does no work: they are computed when keys change.
func (s *Signer) Published() Published { return *s.state.Load().published }

// JWKS returns the JSON Web Key Set of the published keys (shared: do not
// modify it).
func (s *Signer) JWKS() []byte { return s.state.Load().published.JWKS }

// Stats returns the counters.
func (s *Signer) Stats() Stats {
	return Stats{
		Reused:          s.stats.reused.Load(),
		Signed:          s.stats.signed.Load(),
		Rotations:       s.stats.rotations.Load(),
		RefreshFailures: s.stats.refreshFailures.Load(),
	}
}

// Close stops the background refresh and waits until it has ended. It is
// safe to call more than once; a Signer with a static key has nothing to
// stop. Token and the JWKS keep working with the keys last loaded.
func (s *Signer) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
}

// run refreshes the ring every RefreshInterval until ctx ends.
func (s *Signer) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.opts.RefreshInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.stats.refreshFailures.Add(1)
			s.log.Warn("assertion key ring refresh failed; signing with the keys loaded before",
				"storage_key", s.opts.StorageKey, "error", err)
			failing = true
		case failing:
			s.log.Info("assertion key ring refresh works again", "storage_key", s.opts.StorageKey)
			failing = false
		}
	}
}

// Refresh reloads the key ring from Storage and installs it. When the
// ring is due for its next key, or holds a key whose assertions have all
// expired, Refresh takes the storage lock, reloads, checks again and
// writes the ring back changed. It returns nil at once for a static key.
// The background goroutine calls it every RefreshInterval; tests call it
// after moving the clock.
func (s *Signer) Refresh(ctx context.Context) error {
	if s.opts.Storage == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	now := s.opts.Now()
	r, err := s.load(ctx)
	if err != nil {
		return err
	}
	if r != nil {
		if err := s.install(r, now); err != nil {
			return err
		}
		if !s.due(r, now) {
			return nil
		}
	}
	return s.maintain(ctx, now)
}

// due reports whether r needs a write: a new key or an expired one gone.
func (s *Signer) due(r *ring, now time.Time) bool {
	if r.rotationDue(now, s.opts.RotationPeriod, s.opts.PublishAhead) {
		return true
	}
	for i := range r.keys {
		if r.expired(i, now, s.retention) {
			return true
		}
	}
	return false
}

// load reads and parses the stored ring; nil when there is none. A
// document identical to the one parsed last is not parsed again. The ring
// returned is shared: copy it before changing it.
func (s *Signer) load(ctx context.Context) (*ring, error) {
	data, err := s.opts.Storage.Load(ctx, s.opts.StorageKey)
	if errNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("assertion: loading the key ring %q: %w", s.opts.StorageKey, err)
	}
	if s.parsed != nil && bytes.Equal(data, s.raw) {
		return s.parsed, nil
	}
	r, err := parseRing(data)
	if err != nil {
		return nil, fmt.Errorf("%w (storage key %q; delete it to start a new ring)", err, s.opts.StorageKey)
	}
	s.raw, s.parsed = data, r
	return r, nil
}

// maintain changes the stored ring under the storage lock: it creates it
// (or writes back the keys in use when it disappeared), drops expired
// keys and adds the next key when rotation is due.
func (s *Signer) maintain(ctx context.Context, now time.Time) (err error) {
	st, name := s.opts.Storage, s.opts.StorageKey
	if err := st.Lock(ctx, name); err != nil {
		return fmt.Errorf("assertion: locking the key ring %q: %w", name, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if uerr := st.Unlock(uctx, name); uerr != nil && err == nil {
			err = fmt.Errorf("assertion: unlocking the key ring %q: %w", name, uerr)
		}
	}()
	r, err := s.load(ctx)
	if err != nil {
		return err
	}
	write := false
	switch {
	case r != nil:
		r = r.clone()
	case s.ring != nil:
		s.log.Warn("assertion key ring missing from storage; writing back the keys in use", "storage_key", name)
		r, write = s.ring.clone(), true
	default:
		r, write = &ring{}, true
		k, err := r.add(s.opts.Algorithm, now, now)
		if err != nil {
			return err
		}
		s.log.Info("assertion key ring created", "storage_key", name, "kid", k.doc.KID, "alg", k.doc.Algorithm)
	}
	if r.prune(now, s.retention) {
		write = true
	}
	if r.rotationDue(now, s.opts.RotationPeriod, s.opts.PublishAhead) {
		k, err := r.add(s.opts.Algorithm, now, now.Add(s.opts.PublishAhead))
		if err != nil {
			return err
		}
		s.stats.rotations.Add(1)
		s.log.Info("assertion key added to the ring", "storage_key", name, "kid", k.doc.KID,
			"alg", k.doc.Algorithm, "activates", k.doc.Activates)
		write = true
	}
	if write {
		data, err := r.encode()
		if err != nil {
			return err
		}
		if err := st.Store(ctx, name, data); err != nil {
			return fmt.Errorf("assertion: storing the key ring %q: %w", name, err)
		}
		s.raw, s.parsed = data, r
	}
	return s.install(r, now)
}

// install publishes the keys of r that have not expired and makes them
// the ones Token signs with. Keys already installed are kept as they are,
// so cached assertions stay valid across refreshes.
func (s *Signer) install(r *ring, now time.Time) error {
	prev := s.state.Load()
	old := make(map[string]*signingKey)
	if prev != nil {
		for _, k := range prev.keys {
			old[k.kid] = k
		}
	}
	keys := make([]*signingKey, 0, len(r.keys))
	for i, rk := range r.keys {
		if r.expired(i, now, s.retention) {
			continue
		}
		if k := old[rk.doc.KID]; k != nil && k.alg == rk.doc.Algorithm && k.activates.Equal(rk.doc.Activates) {
			keys = append(keys, k)
			continue
		}
		k, err := newSigningKey(rk.priv, rk.doc.Algorithm, rk.doc.Activates)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	s.ring = r
	if prev != nil && slices.Equal(prev.keys, keys) {
		return nil
	}
	pub, err := buildPublished(keys)
	if err != nil {
		return err
	}
	s.state.Store(&keyState{keys: keys, published: pub})
	return nil
}
