package session

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// Errors callers branch on. Every reason a cookie is unusable is ErrNoSession
// (or wraps it): a missing, tampered, truncated, expired or foreign cookie is
// "no session", never a server error.
var (
	ErrNoSession = errors.New("session: no session")
	ErrInvalid   = fmt.Errorf("%w: cookie does not authenticate", ErrNoSession)
	ErrExpired   = fmt.Errorf("%w: session expired", ErrNoSession)
	ErrTooLarge  = errors.New("session: sealed session exceeds the cookie size limit")
	// ErrRevoked: the session was signed out (Manager.Revoke).
	ErrRevoked = fmt.Errorf("%w: signed out", ErrNoSession)
	// ErrIdle: the session was not used for longer than the idle timeout.
	ErrIdle = fmt.Errorf("%w: idle too long", ErrNoSession)
)

// Session is what the gateway remembers about a signed-in user: who they
// are (the embedded Identity, whose fields stay at the top level of the
// JSON), which provider they signed in with, and that provider's tokens. A CookieStore keeps all of it in the
// session cookie, so the JSON names are short.
type Session struct {
	// ID is random per login and never reused, so a new login never
	// continues an old session (no fixation).
	ID string `json:"id"`
	identity.Identity
	// Provider is the name of the provider the user signed in with; "" for
	// a gateway with one provider written flat.
	Provider string `json:"pv,omitempty"`
	// SID is the provider's session id (`sid`), for logout.
	SID string `json:"sid,omitempty"`
	// AccessToken, RefreshToken and IDToken are the provider's tokens.
	AccessToken  string `json:"at,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
	IDToken      string `json:"it,omitempty"`
	// AccessExpiry is when the access token expires (Unix seconds; 0: unknown).
	AccessExpiry int64 `json:"ax,omitempty"`
	// AccessIssued is when the access token was obtained (Unix seconds; 0:
	// unknown, in sessions sealed before it was recorded). With AccessExpiry
	// it gives the token's lifetime, which bounds how early it is refreshed.
	AccessIssued int64 `json:"ai,omitempty"`
	// LastSeen is when the session was last used, as recorded at most every
	// tenth of the idle timeout (Unix seconds; 0: not recorded, only with an
	// idle timeout). Sessions from before it count from Created.
	LastSeen int64 `json:"ls,omitempty"`
	// Created is when the user logged in (Unix seconds). The absolute session
	// lifetime counts from here.
	Created int64 `json:"t"`

	// storeKey is the per-session key a RedisStore encrypts the session
	// with. It comes from the cookie and is never stored with the session;
	// copies of a loaded session (a refresh's) keep it.
	storeKey []byte
}

// NewID returns a fresh random session ID.
func NewID() string { return rand.Text() }

// CheckLifetime reports ErrExpired when a session created at s.Created has
// outlived lifetime at now, or claims to be created in the future.
func (s *Session) CheckLifetime(now time.Time, lifetime time.Duration) error {
	created := time.Unix(s.Created, 0)
	if s.Created <= 0 || created.After(now.Add(time.Minute)) || !now.Before(created.Add(lifetime)) {
		return ErrExpired
	}
	return nil
}

// ExpiresAt returns when the session's absolute lifetime ends.
func (s *Session) ExpiresAt(lifetime time.Duration) time.Time {
	return time.Unix(s.Created, 0).Add(lifetime)
}

// LogValue redacts the tokens: logs show whether a token is present, never its value.
func (s *Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", s.ID),
		slog.String("provider", s.Provider),
		slog.String("sub", s.Subject),
		slog.String("user", s.User),
		slog.String("email", s.Email),
		slog.Bool("access_token", s.AccessToken != ""),
		slog.Bool("refresh_token", s.RefreshToken != ""),
		slog.Bool("id_token", s.IDToken != ""),
		slog.Int64("created", s.Created),
	)
}

// String is the redacted form of LogValue, for fmt.
func (s *Session) String() string {
	return fmt.Sprintf("session{id:%s sub:%q access_token:%t refresh_token:%t}",
		s.ID, s.Subject, s.AccessToken != "", s.RefreshToken != "")
}
