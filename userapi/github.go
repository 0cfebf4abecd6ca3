package userapi

import (
	"context"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
)

// The GitHub REST API's answers, as far as gatehouse reads them.
type (
	// https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user
	githubEmail struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	// https://docs.github.com/en/rest/orgs/orgs#list-organizations-for-the-authenticated-user
	githubOrg struct {
		Login string `json:"login"`
	}
	// https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user
	githubTeam struct {
		Slug         string    `json:"slug"`
		Organization githubOrg `json:"organization"`
	}
)

// github reads the user (GET /user), the primary e-mail (GET
// /user/emails) and, as the configuration needs, the organizations (GET
// /user/orgs) and teams (GET /user/teams). It returns the claims and the
// allow rules' verdict.
func (f *Fetcher) github(ctx context.Context, token string) (map[string]any, func() bool, error) {
	u := f.endpoint("/user", nil)
	body, _, err := f.get(ctx, token, u)
	if err != nil {
		return nil, nil, err
	}
	user, err := decodeObject(body)
	if err != nil {
		return nil, nil, badJSON(describe(u), err.Error())
	}
	// https://docs.github.com/en/rest/users/users#get-the-authenticated-user:
	// id is the stable number; login can be renamed.
	id, ok := decimalID(user["id"])
	login, _ := user["login"].(string)
	if !ok || login == "" {
		return nil, nil, badJSON(describe(u), "no numeric id or no login")
	}
	claims := map[string]any{"sub": id, "preferred_username": login, "email_verified": false}
	if name, ok := user["name"].(string); ok && name != "" {
		claims["name"] = name
	}
	// Never /user's own "email": the public profile address, unverified.

	var emails []githubEmail
	var orgs []githubOrg
	var teams []githubTeam
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		emails, err = list[githubEmail](gctx, f, token, "/user/emails", nil)
		return err
	})
	if f.readOrgs {
		g.Go(func() error {
			var err error
			if orgs, err = list[githubOrg](gctx, f, token, "/user/orgs", nil); err != nil {
				return membership(err)
			}
			for _, o := range orgs {
				if o.Login == "" {
					return membership(badJSON(describe(f.endpoint("/user/orgs", nil)), "an organization without login"))
				}
			}
			return nil
		})
	}
	if f.readTeams {
		g.Go(func() error {
			var err error
			if teams, err = list[githubTeam](gctx, f, token, "/user/teams", nil); err != nil {
				return membership(err)
			}
			for _, t := range teams {
				if t.Slug == "" || t.Organization.Login == "" {
					return membership(badJSON(describe(f.endpoint("/user/teams", nil)), "a team without slug or organization"))
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}

	// Only the primary address, and it counts as verified only when
	// GitHub says so; another verified address is not the user's choice.
	for _, e := range emails {
		if e.Primary && e.Email != "" {
			claims["email"] = e.Email
			claims["email_verified"] = e.Verified
			break
		}
	}
	if f.readOrgs || f.readTeams {
		groups := []any{}
		for _, o := range orgs {
			groups = append(groups, strings.ToLower(o.Login))
		}
		for _, t := range teams {
			groups = append(groups, strings.ToLower(t.Organization.Login+"/"+t.Slug))
		}
		claims["groups"] = groups
	}
	allowed := func() bool {
		if len(f.orgs) > 0 && !slices.ContainsFunc(orgs, func(o githubOrg) bool {
			return slices.Contains(f.orgs, strings.ToLower(o.Login))
		}) {
			return false
		}
		if len(f.teams) > 0 && !slices.ContainsFunc(teams, func(t githubTeam) bool {
			return slices.Contains(f.teams, teamName{strings.ToLower(t.Organization.Login), strings.ToLower(t.Slug)})
		}) {
			return false
		}
		return true
	}
	return claims, allowed, nil
}
