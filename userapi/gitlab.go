package userapi

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// https://docs.gitlab.com/api/groups/#list-groups
type gitlabGroup struct {
	FullPath string `json:"full_path"`
}

// gitlab reads the user (GET /api/v4/user) and, as the configuration
// needs, the groups the user is a member of (GET
// /api/v4/groups?min_access_level=10). It returns the claims and the allow
// rules' verdict.
func (f *Fetcher) gitlab(ctx context.Context, token string) (map[string]any, func() bool, error) {
	u := f.endpoint("/user", nil)
	body, _, err := f.get(ctx, token, u)
	if err != nil {
		return nil, nil, err
	}
	user, err := decodeObject(body)
	if err != nil {
		return nil, nil, badJSON(describe(u), err.Error())
	}
	// https://docs.gitlab.com/api/users/#get-the-current-user
	id, ok := decimalID(user["id"])
	username, _ := user["username"].(string)
	if !ok || username == "" {
		return nil, nil, badJSON(describe(u), "no numeric id or no username")
	}
	claims := map[string]any{"sub": id, "preferred_username": username, "email_verified": false}
	if name, ok := user["name"].(string); ok && name != "" {
		claims["name"] = name
	}
	// email is the primary address. GitLab counts it verified when the
	// account is confirmed (confirmed_at set) and it is not the
	// placeholder GitLab gives OAuth sign-ups without an address
	// (temp-email-for-oauth-…), as its OpenID Connect email_verified
	// does (User#primary_email_verified?).
	if email, ok := user["email"].(string); ok && email != "" {
		claims["email"] = email
		confirmed, _ := user["confirmed_at"].(string)
		claims["email_verified"] = confirmed != "" && !strings.HasPrefix(email, "temp-email-for-oauth-")
	}
	if !f.readGroups {
		return claims, func() bool { return true }, nil
	}

	// Guest (10) or above: Minimal Access (5) is not membership.
	groups, err := list[gitlabGroup](ctx, f, token, "/groups", url.Values{"min_access_level": {"10"}})
	if err != nil {
		return nil, nil, membership(err)
	}
	paths := []any{}
	var member []string
	for _, g := range groups {
		if g.FullPath == "" {
			return nil, nil, membership(badJSON(describe(f.endpoint("/groups", nil)), "a group without full_path"))
		}
		p := strings.ToLower(g.FullPath)
		paths = append(paths, p)
		member = append(member, p)
	}
	claims["groups"] = paths
	allowed := func() bool {
		return len(f.groups) == 0 || slices.ContainsFunc(f.groups, func(a string) bool {
			return slices.ContainsFunc(member, func(m string) bool {
				// The group itself, or an ancestor: members of a
				// group are members of its subgroups.
				return a == m || strings.HasPrefix(a, m+"/")
			})
		})
	}
	return claims, allowed, nil
}

// decimalID returns a JSON number that is a non-negative integer as its
// decimal text, exactly as sent (no float64 rounding for large IDs).
func decimalID(v any) (string, bool) {
	n, ok := v.(json.Number)
	s := string(n)
	if !ok || s == "" || len(s) > 20 || len(s) > 1 && s[0] == '0' {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	return s, true
}
