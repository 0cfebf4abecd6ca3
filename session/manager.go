package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of Options.
const (
	DefaultName = "_gatehouse"
	// DefaultHostName is the name gatehouse uses for Secure, host-only
	// session cookies: browsers let no other host set a __Host- cookie.
	DefaultHostName  = "__Host-gatehouse"
	DefaultLifetime  = 168 * time.Hour
	DefaultLoginTTL  = 15 * time.Minute
	DefaultCacheSize = 4096
	// DefaultCacheBytes bounds the decoded-session cache's memory.
	DefaultCacheBytes = 32 << 20
)

// Options configures a Manager. Zero values select the documented defaults.
type Options struct {
	// Name of the session cookie; chunks are Name_1, Name_2, …; login
	// cookies are Name_login_<id>. Default "_gatehouse".
	Name string
	// Domain of the session cookie. Default: host-only.
	Domain string
	// SameSite of the session cookie. Default http.SameSiteLaxMode.
	SameSite http.SameSite
	// Insecure drops the Secure attribute (plain-HTTP development only).
	Insecure bool
	// Lifetime is the absolute session lifetime since login. Default 168h.
	Lifetime time.Duration
	// IdleTimeout ends a session not used for this long (ErrIdle). Use is
	// recorded in the cookie: Load asks for a save (rotate) when the
	// record is older than a tenth of the timeout, so a busy session costs
	// a Set-Cookie now and then, not on every request. Default 0: off.
	IdleTimeout time.Duration
	// LoginTTL is how long a started login may take. Default 15m.
	LoginTTL time.Duration
	// Secrets are the cookie secrets (each ≥ 32 bytes); the first seals,
	// all unseal. Required.
	Secrets [][]byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Binding ties every cookie to a context (for gatehouse: the issuer
	// and the client id): a cookie sealed under another binding does not
	// unseal, even with the same secrets and cookie name, so a session made
	// for one provider or client is never accepted by another. Default "".
	Binding string
	// CacheBytes bounds the decoded-session cache in memory (about twice
	// the sealed size per entry): a few large sessions cannot crowd out
	// the machine (review SA2-28). 0 selects DefaultCacheBytes.
	CacheBytes int64
	// CacheSize bounds the decoded-session cache: a cookie seen before is
	// not unsealed again (entries hold the sealed value, a few KB). 0
	// selects DefaultCacheSize; negative disables the cache.
	CacheSize int
	// Store keeps the sessions. Default: a CookieStore of this Manager's
	// own, with Now as its clock; give several Managers one Store to share
	// revocations between them.
	Store Store
}

// Manager loads, saves and revokes sessions: its Store keeps them and the
// embedded Cookies carry them, which also gives it ClearSession, ClearAll,
// HasSession, StripCookies, SaveLogin and TakeLogin.
type Manager struct {
	*Cookies // also holds the Options, completed by New
	store    Store
	// selfContained: the store keeps the whole session in the cookie
	// (CookieStore), so a cached decode is the session. Other stores are
	// asked on every request (they cache themselves, and see changes made
	// by other instances); the cache then spares only the unsealing.
	selfContained bool
	cache         *lru.Cache[uint64, decoded] // nil: no cache
	cached        atomic.Int64                // bytes held by the cache (cost of its entries)
	seed          maphash.Seed
	hits, misses  atomic.Uint64 // cache lookups by outcome (Stats)
}

// CacheStats counts the decoded-session cache's lookups by outcome: a hit
// is a cookie not unsealed again.
type CacheStats struct {
	Hits, Misses uint64
}

// Stats returns the cache counters (zero without a cache).
func (m *Manager) Stats() CacheStats {
	return CacheStats{Hits: m.hits.Load(), Misses: m.misses.Load()}
}

// decoded is a cached Load result. sealed is kept to compare in full: only
// the very same cookie bytes hit, so a tampered cookie never does.
type decoded struct {
	sealed string
	value  []byte   // the unsealed cookie value, when the store is not self-contained
	sess   *Session // the session, when it is
	rotate bool
	until  time.Time
}

// New checks opts and derives the cookie keys.
func New(opts Options) (*Manager, error) {
	opts.Name = cmp.Or(opts.Name, DefaultName)
	if opts.SameSite == 0 || opts.SameSite == http.SameSiteDefaultMode {
		opts.SameSite = http.SameSiteLaxMode
	}
	opts.Lifetime = cmp.Or(opts.Lifetime, DefaultLifetime)
	opts.LoginTTL = cmp.Or(opts.LoginTTL, DefaultLoginTTL)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.CacheSize = cmp.Or(opts.CacheSize, DefaultCacheSize)
	opts.CacheBytes = cmp.Or(opts.CacheBytes, DefaultCacheBytes)
	if err := CheckCookieName(opts.Name); err != nil {
		return nil, err
	}
	if err := CheckCookieDomain(opts.Domain); err != nil {
		return nil, err
	}
	if opts.Lifetime < time.Minute || opts.LoginTTL < time.Second {
		return nil, errors.New("session: lifetime must be at least a minute")
	}
	if opts.Insecure && opts.SameSite == http.SameSiteNoneMode {
		return nil, errors.New("session: SameSite=None requires Secure cookies")
	}
	if opts.Insecure && (strings.HasPrefix(opts.Name, "__Secure-") || strings.HasPrefix(opts.Name, "__Host-")) {
		return nil, fmt.Errorf("session: cookie name %q requires Secure cookies", opts.Name)
	}
	if opts.Domain != "" && strings.HasPrefix(opts.Name, "__Host-") {
		return nil, fmt.Errorf("session: cookie name %q forbids a cookie domain", opts.Name)
	}
	if opts.Store == nil {
		opts.Store = NewCookieStore(CookieStoreOptions{Now: opts.Now})
	}
	cookies, err := newCookies(opts)
	if err != nil {
		return nil, err
	}
	_, selfContained := opts.Store.(*CookieStore)
	m := &Manager{Cookies: cookies, store: opts.Store, selfContained: selfContained}
	if opts.CacheSize > 0 {
		m.cache, _ = lru.NewWithEvict(opts.CacheSize, func(_ uint64, e decoded) { m.cached.Add(-e.cost()) })
		m.seed = maphash.MakeSeed()
	}
	return m, nil
}

// Load returns the session r's cookie(s) carry. Any reason the cookies
// are unusable is ErrNoSession (or an error wrapping it): ErrRevoked when
// the session was revoked. Other errors come from a Store that could not
// answer (ErrUnavailable). rotate reports that the session was sealed with an older secret
// and should be saved again. A cookie decoded before is answered from the
// cache until the session's lifetime ends; the returned session may be
// shared, so callers must not modify it.
func (m *Manager) Load(r *http.Request) (sess *Session, rotate bool, err error) {
	var buf [maxChunks]string
	parts, err := m.readSealed(r, &buf)
	if err != nil {
		return nil, false, err
	}
	sess, rotate, err = m.decode(r.Context(), parts)
	if err != nil {
		return nil, false, err
	}
	revoked, err := m.store.Revoked(r.Context(), sess)
	if err != nil {
		return nil, false, fmt.Errorf("session: checking revocation: %w", err)
	}
	if revoked {
		return nil, false, ErrRevoked
	}
	if idle := m.opts.IdleTimeout; idle > 0 {
		since := m.opts.Now().Sub(time.Unix(max(sess.LastSeen, sess.Created), 0))
		if since > idle {
			return nil, false, ErrIdle
		}
		rotate = rotate || since > idle/10
	}
	return sess, rotate, nil
}

// decode unseals the session cookie's chunks and loads the session they
// name, or answers from the cache when it saw the same chunks before.
func (m *Manager) decode(ctx context.Context, parts []string) (sess *Session, rotate bool, err error) {
	now := m.opts.Now()
	var key uint64
	if m.cache != nil {
		// Hash and compare the chunks in place: no join on a cache hit.
		var h maphash.Hash
		h.SetSeed(m.seed)
		for _, p := range parts {
			h.WriteString(p)
		}
		key = h.Sum64()
		if e, ok := m.cache.Get(key); ok && equalJoined(e.sealed, parts) {
			if !now.Before(e.until) {
				m.cache.Remove(key)
			} else if e.sess != nil {
				m.hits.Add(1)
				return e.sess, e.rotate, nil
			} else {
				m.hits.Add(1)
				sess, err := m.load(ctx, e.value, now)
				return sess, e.rotate, err
			}
		}
		m.misses.Add(1)
	}
	sealed := joinChunks(parts)
	value, rotate, err := m.unseal(sealed)
	if err != nil {
		return nil, false, err
	}
	if sess, err = m.load(ctx, value, now); err != nil {
		return nil, false, err
	}
	if m.cache != nil {
		e := decoded{sealed: sealed, rotate: rotate, until: sess.ExpiresAt(m.opts.Lifetime)}
		if m.selfContained {
			e.sess = sess
		} else {
			e.value = value
		}
		m.remember(key, e)
	}
	return sess, rotate, nil
}

// load asks the store for the session an unsealed cookie value names.
func (m *Manager) load(ctx context.Context, value []byte, now time.Time) (*Session, error) {
	sess, err := m.store.Load(ctx, value)
	if err != nil {
		return nil, err
	}
	if err := sess.CheckLifetime(now, m.opts.Lifetime); err != nil {
		return nil, err
	}
	return sess, nil
}

// remember caches e under key, evicting the least recently used entries
// while the cache holds more than CacheBytes.
func (m *Manager) remember(key uint64, e decoded) {
	if e.cost() > m.opts.CacheBytes/8 {
		return // one session may not take an eighth of the budget
	}
	m.cache.Remove(key) // a hash collision's entry: its cost must go
	m.cached.Add(e.cost())
	m.cache.Add(key, e)
	for m.cached.Load() > m.opts.CacheBytes {
		if _, _, ok := m.cache.RemoveOldest(); !ok {
			break
		}
	}
}

// cost is what an entry holds in memory, roughly: the sealed value and
// the decoded session, which is about as large.
func (e decoded) cost() int64 { return 2*int64(len(e.sealed)) + int64(len(e.value)) }

// Save keeps sess in the Store and seals the value it returns into the
// session cookie(s) on w, which live until the session's lifetime ends.
// With an idle timeout it records now as the session's last use.
// A session past its lifetime is ErrExpired; one too large for the
// cookies, ErrTooLarge.
func (m *Manager) Save(w http.ResponseWriter, r *http.Request, sess *Session) error {
	now := m.opts.Now()
	maxAge := int(sess.ExpiresAt(m.opts.Lifetime).Sub(now) / time.Second)
	if maxAge <= 0 {
		return ErrExpired
	}
	if m.opts.IdleTimeout > 0 {
		seen := *sess // the session may be shared (the decoded-session cache)
		seen.LastSeen = now.Unix()
		sess = &seen
	}
	value, err := m.store.Save(r.Context(), sess, sess.ExpiresAt(m.opts.Lifetime))
	if err != nil {
		return err
	}
	return m.writeSealed(w, r, value, maxAge)
}

// Revoke ends sess until its lifetime ends, as far as the Store reaches
// (a CookieStore: this process). Load then answers ErrRevoked for it.
// Revoke does not touch cookies: see ClearAll.
func (m *Manager) Revoke(ctx context.Context, sess *Session) error {
	return m.store.Revoke(ctx, sess.ID, sess.ExpiresAt(m.opts.Lifetime))
}

// EndProviderSession ends the sessions the provider named provider ("" for
// a gateway with one provider written flat) logged out at `at`
// (back-channel logout): those of provider session sid, or, when sid is
// "", every session of subject — only that provider's sessions, as far as
// the Store reaches. Load then answers ErrRevoked (CookieStore) or
// ErrNoSession for them.
func (m *Manager) EndProviderSession(ctx context.Context, provider, sid, subject string, at time.Time) error {
	return m.store.EndProviderSession(ctx, ProviderLogout{Provider: provider, SID: sid, Subject: subject, At: at, Until: at.Add(m.opts.Lifetime)})
}

// FirstUse reports whether key was not used before, and records it until
// until, as far as the Store reaches: a replay check.
func (m *Manager) FirstUse(ctx context.Context, key string, until time.Time) (bool, error) {
	return m.store.FirstUse(ctx, key, until)
}
