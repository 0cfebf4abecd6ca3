package session

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Store keeps sessions between requests, behind the cookie that names them:
// the Manager seals what Save returns into the session cookie and hands
// the unsealed cookie value to Load. A store may keep the whole session in
// the value (CookieStore) or keep it elsewhere and put only a key there
// (RedisStore). Errors other than ErrNoSession (and those wrapping it)
// mean the store could not answer; they wrap ErrUnavailable.
type Store interface {
	// Save keeps s until `until` (the end of its lifetime) and returns the value its cookie carries (the transport seals it).
	Save(ctx context.Context, s *Session, until time.Time) ([]byte, error)
	// Load returns the session a cookie value names; an error wrapping ErrNoSession when there is none.
	Load(ctx context.Context, value []byte) (*Session, error)
	// Revoke ends the session with this ID, wherever the store reaches, until `until` (the end of its lifetime).
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether s was revoked (by Revoke or EndProviderSession). It is asked on every request, also when the Manager answers from its decoded-session cache, so it must be cheap.
	Revoked(ctx context.Context, s *Session) (bool, error)
	// EndProviderSession ends the sessions a provider logged out (back-channel logout), wherever the store reaches.
	EndProviderSession(ctx context.Context, l ProviderLogout) error
	// FirstUse records key until `until` and reports whether it was new: a replay check (logout tokens' jti).
	FirstUse(ctx context.Context, key string, until time.Time) (bool, error)
}

// ErrUnavailable wraps a Store's failure to answer (its backend cannot be
// reached): the session is neither confirmed nor refused.
var ErrUnavailable = errors.New("session: the session store is unavailable")

// ProviderLogout names the sessions a provider ended: with SID, every
// session of that provider session; without it, every session of Subject.
// Only sessions of Provider end (two providers may both know a subject
// "123" or a sid "abc"), and only those created at or before At: a login
// after the logout is a new session.
type ProviderLogout struct {
	// Provider is the name of the provider that logged out ("" for a
	// gateway with one provider written flat).
	Provider     string
	SID, Subject string
	// At is when the provider logged out (the logout token's iat).
	At time.Time
	// Until is when every session the logout could name has ended (At plus
	// the session lifetime): a denylist may forget the logout then.
	Until time.Time
}

// ends reports whether l ends s.
func (l *ProviderLogout) ends(s *Session) bool {
	if s.Provider != l.Provider || s.Created > l.At.Unix() {
		return false
	}
	if l.SID != "" {
		return s.SID == l.SID
	}
	return l.Subject != "" && s.Subject == l.Subject
}

// DefaultMaxRevoked is the default bound of a CookieStore's denylist.
const DefaultMaxRevoked = 100000

// CookieStoreOptions configures a CookieStore. Zero values select the
// defaults.
type CookieStoreOptions struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxRevoked bounds the denylist of revoked sessions; past it the
	// least recently used entry is forgotten. Default DefaultMaxRevoked.
	MaxRevoked int
}

// CookieStore keeps the whole session in its cookie: the value is the
// session's JSON, so the store holds no sessions and any number of
// instances with the same secrets serve the same users.
//
// Revocation is a denylist kept in memory until each session's lifetime
// ends: session IDs (sign-out), provider session IDs and subjects
// (back-channel logout), and used keys (FirstUse). It therefore holds in
// this process only, for every handler that shares this CookieStore:
// another instance, or this one after a restart, still accepts a revoked
// session's cookie until the session ends (or its refresh is refused). A
// RedisStore makes revocation cluster-wide.
type CookieStore struct {
	now       func() time.Time
	revoked   *lru.Cache[string, time.Time]         // session ID → until
	logouts   *lru.Cache[logoutKey, ProviderLogout] // provider session or subject → the logout
	used      *lru.Cache[string, time.Time]         // FirstUse key → until
	anyLogout atomic.Bool                           // false until the first logout: no lookup on the hot path
}

// NewCookieStore returns a CookieStore with an empty denylist.
func NewCookieStore(opts CookieStoreOptions) *CookieStore {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRevoked <= 0 {
		opts.MaxRevoked = DefaultMaxRevoked
	}
	// New fails only for a size ≤ 0.
	s := &CookieStore{now: opts.Now}
	s.revoked, _ = lru.New[string, time.Time](opts.MaxRevoked)
	s.logouts, _ = lru.New[logoutKey, ProviderLogout](opts.MaxRevoked)
	s.used, _ = lru.New[string, time.Time](opts.MaxRevoked)
	return s
}

// Save returns sess as JSON: the cookie carries the whole session.
func (s *CookieStore) Save(_ context.Context, sess *Session, _ time.Time) ([]byte, error) {
	b, err := sess.marshal()
	if err != nil {
		return nil, fmt.Errorf("session: encoding: %w", err)
	}
	return b, nil
}

// Load unmarshals the session in value. A value that is not a session
// with an ID and a subject is ErrInvalid.
func (s *CookieStore) Load(_ context.Context, value []byte) (*Session, error) {
	return unmarshalSession(value)
}

// Revoke puts id on the denylist until until. It never fails.
func (s *CookieStore) Revoke(_ context.Context, id string, until time.Time) error {
	s.revoked.Add(id, until)
	return nil
}

// Revoked reports whether sess's ID is on the denylist, or a provider
// logout ended it; an entry past its until is forgotten. It never fails
// and does not allocate.
func (s *CookieStore) Revoked(_ context.Context, sess *Session) (bool, error) {
	now := s.now()
	if until, ok := s.revoked.Get(sess.ID); ok {
		if now.After(until) {
			s.revoked.Remove(sess.ID)
			return false, nil
		}
		return true, nil
	}
	if !s.anyLogout.Load() {
		return false, nil
	}
	for _, key := range [2]logoutKey{{provider: sess.Provider, bySID: true, value: sess.SID}, {provider: sess.Provider, value: sess.Subject}} {
		if l, ok := s.logouts.Get(key); ok && now.Before(l.Until) && l.ends(sess) {
			return true, nil
		}
	}
	return false, nil
}

// logoutKey names what a provider logout ended: a provider session (sid)
// or a subject, of one provider. A struct, not a concatenation: Revoked
// builds one per request without allocating.
type logoutKey struct {
	provider string
	bySID    bool
	value    string
}

// EndProviderSession puts the provider session (or, without one, the
// subject) of l.Provider on the denylist until l.Until. It never fails.
func (s *CookieStore) EndProviderSession(_ context.Context, l ProviderLogout) error {
	key := logoutKey{provider: l.Provider, value: l.Subject}
	if l.SID != "" {
		key = logoutKey{provider: l.Provider, bySID: true, value: l.SID}
	}
	if prev, ok := s.logouts.Get(key); ok && prev.At.After(l.At) {
		return nil // a later logout of the same session or user already ends more
	}
	s.logouts.Add(key, l)
	s.anyLogout.Store(true)
	return nil
}

// FirstUse reports whether key is new, and records it until until. It
// never fails.
func (s *CookieStore) FirstUse(_ context.Context, key string, until time.Time) (bool, error) {
	if prev, ok := s.used.Get(key); ok && s.now().Before(prev) {
		return false, nil
	}
	s.used.Add(key, until)
	return true, nil
}
