package devidp

import (
	"net/http"
	"slices"
	"time"
)

// authCode is an issued authorization code. A redeemed code stays in the
// map, marked used, until it expires, so a replay can be recognized.
type authCode struct {
	grant
	redirectURI string
	challenge   string
	expires     time.Time
	used        bool
}

// refreshToken is an issued refresh token. family is the sid of the login it
// descends from; a used token stays, marked used, until it expires.
type refreshToken struct {
	grant
	expires time.Time
	used    bool
}

// oauthError is an OAuth 2.0 error response (RFC 6749 §5.2).
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return "devidp: " + e.code + ": " + e.desc }

var errFull = &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "too many outstanding codes or tokens; try again later"}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

// sweepLocked drops expired codes and refresh tokens, at most once per code
// lifetime unless a map is full. p.stateMu must be held.
func (p *Provider) sweepLocked(now time.Time) {
	if now.Before(p.nextSweep) && len(p.codes) < p.maxEntries && len(p.refreshes) < p.maxEntries {
		return
	}
	for k, c := range p.codes {
		if !now.Before(c.expires) {
			delete(p.codes, k)
		}
	}
	for k, t := range p.refreshes {
		if !now.Before(t.expires) {
			delete(p.refreshes, k)
		}
	}
	p.nextSweep = now.Add(p.codeTTL)
}

// revokeFamilyLocked deletes every refresh token descended from the login
// sid. p.stateMu must be held.
func (p *Provider) revokeFamilyLocked(sid string) {
	for k, t := range p.refreshes {
		if t.sid == sid {
			delete(p.refreshes, k)
		}
	}
}

// revokeFamily deletes every refresh token descended from the login sid.
func (p *Provider) revokeFamily(sid string) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.revokeFamilyLocked(sid)
}

// newCode stores c under a fresh random code and returns the code.
func (p *Provider) newCode(c *authCode, now time.Time) (string, error) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.sweepLocked(now)
	if len(p.codes) >= p.maxEntries {
		return "", errFull
	}
	code := randomToken(32)
	p.codes[code] = c
	return code, nil
}

// redeemCode consumes code for clientID. The first redemption attempt by
// the client the code was issued to uses it up, whether or not the rest of
// the exchange succeeds; presenting a used code again also revokes the
// refresh tokens issued from it.
func (p *Provider) redeemCode(code, clientID string, now time.Time) (authCode, *oauthError) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	c, ok := p.codes[code]
	switch {
	case !ok:
		return authCode{}, invalidGrant("unknown authorization code")
	case !now.Before(c.expires):
		delete(p.codes, code)
		return authCode{}, invalidGrant("authorization code expired")
	case c.clientID != clientID:
		return authCode{}, invalidGrant("authorization code was issued to another client")
	case c.used:
		p.revokeFamilyLocked(c.sid)
		return authCode{}, invalidGrant("authorization code already used")
	}
	c.used = true
	return *c, nil
}

// newRefresh stores a refresh token for g and returns it.
func (p *Provider) newRefresh(g grant, now time.Time) (string, error) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.newRefreshLocked(g, now)
}

func (p *Provider) newRefreshLocked(g grant, now time.Time) (string, error) {
	p.sweepLocked(now)
	if len(p.refreshes) >= p.maxEntries {
		return "", errFull
	}
	tok := randomToken(32)
	p.refreshes[tok] = &refreshToken{grant: g, expires: now.Add(p.refreshTTL)}
	return tok, nil
}

// rotateRefresh uses up refresh token tok for clientID and returns its grant
// and its successor. Presenting a used token revokes its whole family
// (RFC 9700 §4.14.2). A non-nil requested scope must be a subset of the
// granted one; if it is not, the token is not used up.
func (p *Provider) rotateRefresh(tok, clientID string, requested []string, now time.Time) (grant, string, error) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	t, ok := p.refreshes[tok]
	switch {
	case !ok:
		return grant{}, "", invalidGrant("unknown refresh token")
	case !now.Before(t.expires):
		delete(p.refreshes, tok)
		return grant{}, "", invalidGrant("refresh token expired")
	case t.clientID != clientID:
		return grant{}, "", invalidGrant("refresh token was issued to another client")
	case t.used:
		p.revokeFamilyLocked(t.sid)
		return grant{}, "", invalidGrant("refresh token already used; all tokens of this login are revoked")
	}
	for _, s := range requested {
		if !slices.Contains(t.scope, s) {
			return grant{}, "", &oauthError{http.StatusBadRequest, "invalid_scope", "requested scope exceeds the granted scope"}
		}
	}
	next, err := p.newRefreshLocked(t.grant, now)
	if err != nil {
		return grant{}, "", err
	}
	t.used = true
	return t.grant, next, nil
}
