package userapi

import (
	"context"
	"maps"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// oauth2 reads the user-info object at UserinfoURL and returns it as the
// claims.
func (f *Fetcher) oauth2(ctx context.Context, token string) (map[string]any, error) {
	body, _, err := f.get(ctx, token, f.api)
	if err != nil {
		return nil, err
	}
	claims, err := f.userinfoClaims(body)
	if err != nil {
		return nil, badJSON(describe(f.api), err.Error())
	}
	return claims, nil
}

// userinfoClaims decodes a user-info object and puts what the configured
// paths find under the names the Mapper reads: sub, email_verified,
// preferred_username, name. A path that finds nothing removes the name,
// so a member of that name elsewhere in the object never stands in.
func (f *Fetcher) userinfoClaims(body []byte) (map[string]any, error) {
	raw, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	claims := maps.Clone(raw)
	for _, c := range []struct{ name, path string }{
		{"sub", f.paths.subject},
		{"email_verified", f.paths.emailVerified},
		{"preferred_username", f.paths.username},
		{"name", f.paths.name},
	} {
		if v, ok := identity.Lookup(raw, c.path); ok {
			claims[c.name] = v
		} else {
			delete(claims, c.name)
		}
	}
	return claims, nil
}
