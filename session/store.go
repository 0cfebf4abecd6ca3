package session

import (
	"context"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Store keeps sessions between requests, behind the cookie that names them:
// the Manager seals what Save returns into the session cookie and hands
// the unsealed cookie value to Load. A store may keep the whole session in
// the value (CookieStore) or keep it elsewhere and put only a key there.
type Store interface {
	// Save keeps s and returns the value its cookie carries (the transport seals it).
	Save(ctx context.Context, s *Session) ([]byte, error)
	// Load returns the session a cookie value names; an error wrapping ErrNoSession when there is none.
	Load(ctx context.Context, value []byte) (*Session, error)
	// Revoke ends the session with this ID, wherever the store reaches, until `until` (the end of its lifetime).
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether the session with this ID was revoked. It is asked on every request, also when the Manager answers from its decoded-session cache, so it must be cheap.
	Revoked(ctx context.Context, id string) (bool, error)
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
// Revocation is a denylist of session IDs kept in memory until each
// session's lifetime ends. It therefore holds in this process only, for
// every handler that shares this CookieStore: another instance, or this
// one after a restart, still accepts a revoked session's cookie until the
// session ends (or its refresh is refused). A shared store (Redis, later)
// makes revocation cluster-wide.
type CookieStore struct {
	now     func() time.Time
	revoked *lru.Cache[string, time.Time] // session ID → until
}

// NewCookieStore returns a CookieStore with an empty denylist.
func NewCookieStore(opts CookieStoreOptions) *CookieStore {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRevoked <= 0 {
		opts.MaxRevoked = DefaultMaxRevoked
	}
	revoked, _ := lru.New[string, time.Time](opts.MaxRevoked) // fails only for a size ≤ 0
	return &CookieStore{now: opts.Now, revoked: revoked}
}

// Save returns sess as JSON: the cookie carries the whole session.
func (s *CookieStore) Save(_ context.Context, sess *Session) ([]byte, error) {
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

// Revoked reports whether id is on the denylist; an entry past its until
// is forgotten. It never fails and does not allocate.
func (s *CookieStore) Revoked(_ context.Context, id string) (bool, error) {
	until, ok := s.revoked.Get(id)
	if ok && s.now().After(until) {
		s.revoked.Remove(id)
		return false, nil
	}
	return ok, nil
}
