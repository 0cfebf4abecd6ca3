package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/verify"
)

// LogoutToken is a verified back-channel logout token: which provider
// session (SessionID) or user (Subject) to end.
type LogoutToken struct {
	Subject   string // sub; "" when only sid is given
	SessionID string // sid; "" when only sub is given
	ID        string // jti, for the caller's replay check
	IssuedAt  time.Time
	Expiry    time.Time // zero when the token has no exp
}

// ErrInvalidLogoutToken wraps every reason a logout token is refused (the
// caller answers 400). Trouble reaching the provider's metadata or keys is
// ErrProviderUnavailable instead (503).
var ErrInvalidLogoutToken = errors.New("flow: invalid logout token")

// backchannelLogoutEvent is the member of `events` that makes a JWT a
// logout token (Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenMaxAge bounds how long after its iat a logout token is
// accepted (plus the clock skew): it is delivered at once, so an older one
// is a replay. Its jti is remembered by the caller for about this long.
const logoutTokenMaxAge = 5 * time.Minute

// VerifyLogoutToken checks raw as a logout token from this client's
// provider (OpenID Connect Back-Channel Logout 1.0 §2.6): an asymmetric
// signature by the provider's keys with an ID-token algorithm, iss, aud
// naming the client, iat within the clock skew and at most
// logoutTokenMaxAge old, exp when present, the back-channel logout event,
// sid and/or sub, no nonce, a jti, and a header typ of logout+jwt or JWT
// when present. Refusals wrap ErrInvalidLogoutToken; metadata or keys that
// cannot be had are ErrProviderUnavailable. The caller refuses a jti seen
// before.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	meta, err := c.p.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	v, err := c.logoutTokenVerifier(meta)
	if err != nil {
		return nil, err
	}
	claims, err := v.Verify(ctx, raw)
	if errors.Is(err, verify.ErrKeysUnavailable) {
		return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidLogoutToken, err)
	}
	if err := c.checkLogoutClaims(claims); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidLogoutToken, err)
	}
	jti, _ := claims.Map()["jti"].(string)
	return &LogoutToken{
		Subject:   claims.Subject,
		SessionID: claims.SessionID,
		ID:        jti,
		IssuedAt:  claims.IssuedAt,
		Expiry:    claims.Expiry,
	}, nil
}

// logoutTokenVerifier returns the logout-token verifier, built once the
// provider's metadata is known: the ID-token verifier's settings (§2.6
// validates both alike), except that exp is optional (§2.4).
func (c *Client) logoutTokenVerifier(meta *Metadata) (*verify.Verifier, error) {
	return c.providerVerifier(&c.logout, meta, true)
}

// checkLogoutClaims applies §2.6's rules beyond the verifier's (signature,
// iss, aud, exp, nbf, iat not in the future). Its errors name the rule and
// never quote the token.
func (c *Client) checkLogoutClaims(claims *verify.Claims) error {
	all := claims.Map()
	switch {
	case !logoutTokenType(claims.Type):
		return errors.New("header typ is neither logout+jwt nor JWT")
	case claims.IssuedAt.IsZero():
		return errors.New("no iat")
	case c.opts.Now().Sub(claims.IssuedAt) > logoutTokenMaxAge+c.opts.ClockSkew:
		return errors.New("iat is too old")
	case !hasLogoutEvent(all["events"]):
		return errors.New("events lacks the back-channel logout event object")
	case emptyString(all, "sub") || emptyString(all, "sid"):
		return errors.New("sub or sid is empty")
	case claims.Subject == "" && claims.SessionID == "":
		return errors.New("neither sid nor sub")
	}
	if _, ok := all["nonce"]; ok {
		return errors.New("a nonce is present")
	}
	if jti, _ := all["jti"].(string); jti == "" {
		return errors.New("no jti")
	}
	return nil
}

// logoutTokenType accepts a header typ of logout+jwt (explicit typing,
// RFC 8725 §3.11; also as application/logout+jwt), the generic JWT, or
// none; media types compare case-insensitively (RFC 7515 §4.1.9).
func logoutTokenType(typ string) bool {
	return typ == "" || strings.EqualFold(typ, "JWT") ||
		strings.EqualFold(typ, "logout+jwt") || strings.EqualFold(typ, "application/logout+jwt")
}

// hasLogoutEvent reports whether events is a JSON object whose
// back-channel logout member is a JSON object.
func hasLogoutEvent(events any) bool {
	obj, ok := events.(map[string]any)
	if !ok {
		return false
	}
	_, ok = obj[backchannelLogoutEvent].(map[string]any)
	return ok
}

// emptyString reports whether claim name is present as "" (its type is
// checked by the verifier).
func emptyString(all map[string]any, name string) bool {
	s, ok := all[name].(string)
	return ok && s == ""
}
