package flow

import (
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
)

// NewSession starts the session of a finished login: a fresh random ID
// (a new login never continues an old session: no fixation), the
// identity, the provider's session ID and the tokens.
func NewSession(res *Result, now time.Time) (*session.Session, error) {
	if res.Identity == nil || res.IDToken == nil && !res.Plain {
		return nil, identity.ErrIncomplete
	}
	s := &session.Session{ID: session.NewID(), Created: now.Unix(), Identity: *res.Identity}
	if res.IDToken != nil {
		s.SID = res.IDToken.SessionID
	}
	setTokens(s, res, now)
	return s, nil
}

// Refreshed returns old with a refresh's tokens. The identity is mapped
// anew when the refresh brought claims, so group changes at the provider
// reach the session (Pomerium CVE-2021-41230); the session ID, the
// subject and the login time carry over.
func Refreshed(old *session.Session, res *Result, now time.Time) *session.Session {
	s := *old
	if res.Identity != nil {
		subject := s.Subject
		s.Identity = *res.Identity
		s.Subject = subject // checked equal by the refresh; the session's is authoritative
	}
	if res.IDToken != nil && res.IDToken.SessionID != "" {
		s.SID = res.IDToken.SessionID
	}
	setTokens(&s, res, now)
	return &s
}

// setTokens stores a token response's tokens, obtained at now. The
// access token's expiry comes from expires_in, else from the ID token that
// came with it; with neither it is unknown (0: never refreshed, the
// session lifetime rules), never the expiry of the token it replaces,
// which would have every request refresh again (review SA2-14).
func setTokens(s *session.Session, res *Result, now time.Time) {
	t := res.Tokens
	s.AccessToken = t.AccessToken
	s.AccessIssued = now.Unix()
	if t.RefreshToken != "" {
		s.RefreshToken = t.RefreshToken
	}
	if t.IDToken != "" {
		s.IDToken = t.IDToken
	}
	switch {
	case !t.Expiry.IsZero():
		s.AccessExpiry = t.Expiry.Unix()
	case res.IDToken != nil:
		// No expires_in: the ID token's expiry bounds the session.
		s.AccessExpiry = res.IDToken.Expiry.Unix()
	default:
		s.AccessExpiry = 0
	}
}
