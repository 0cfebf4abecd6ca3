package flow

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// UserAPI says who the holder of an access token is at a plain OAuth 2.0
// provider, which issues no ID token (*userapi.Fetcher, adapted). Its
// errors wrap ErrProviderUnavailable when the answer could not be had
// (the API is down or rate-limited, memberships could not be read):
// a login fails then, a refresh keeps the session's identity. Any other
// error (a user outside the allow rules, a refused token) fails a login
// and ends a session at its refresh.
type UserAPI interface {
	Identity(ctx context.Context, accessToken string) (identity.Identity, error)
}

// ErrUserAPI wraps the UserAPI's refusals: the user it names may not sign
// in (see the wrapped error for why).
var ErrUserAPI = errors.New("flow: the provider's user API refused the login")

// userAPIResult is result for a plain OAuth 2.0 provider: the identity
// comes from the user API, called with the new access token. On a refresh
// the subject must stay the session's; an API that cannot answer now
// leaves the identity as it was.
func (c *Client) userAPIResult(ctx context.Context, tok *oauth2.Token, check tokenCheck) (*Result, error) {
	res := &Result{
		Tokens: Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: c.expiryOf(tok)},
		Claims: map[string]any{},
		Plain:  true,
	}
	id, err := c.opts.UserAPI.Identity(ctx, tok.AccessToken)
	switch {
	case err == nil:
	case errors.Is(err, ErrProviderUnavailable):
		if check.refresh {
			return res, nil
		}
		return nil, err
	default:
		return nil, fmt.Errorf("%w: %w", ErrUserAPI, err)
	}
	if check.refresh && id.Subject != check.subject {
		return nil, fmt.Errorf("%w: the user API names another user than the session's", ErrUserinfo)
	}
	res.Identity = &id
	return res, nil
}
