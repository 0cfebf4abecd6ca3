package userapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// gitlabSite is what the GitLab fake knows of john_smith (id 1), a
// confirmed user in the group acme/platform.
type gitlabSite struct {
	size     int // groups per page; default 100
	user     string
	groups   []string
	override map[string]http.HandlerFunc // by path below /api/v4
}

func defaultGitLab() gitlabSite {
	return gitlabSite{
		user:   gitlabUser("1", "john_smith", `"john@example.com"`, `"2012-05-23T09:05:22Z"`),
		groups: []string{gitlabGroupItem("acme/platform")},
	}
}

func (s gitlabSite) serve(t *testing.T, cfg Config) (*fake, Config) {
	t.Helper()
	f := newFake(t)
	size := s.size
	if size == 0 {
		size = 100
	}
	f.handle("/api/v4/user", object(s.user))
	groups := paged("gitlab", size, s.groups...)
	f.handle("/api/v4/groups", func(w http.ResponseWriter, r *http.Request) {
		// Without min_access_level GitLab lists every group the user can
		// see (an administrator: all of them), which is not membership.
		if r.URL.Query().Get("min_access_level") != "10" {
			t.Errorf("GET /groups with %q", r.URL.RawQuery)
			object(`[`+gitlabGroupItem("everyone/sees/this")+`]`)(w, r)
			return
		}
		groups(w, r)
	})
	for p, h := range s.override {
		f.handle("/api/v4"+p, h)
	}
	cfg.Kind = GitLab
	cfg.BaseURL = f.srv.URL
	return f, cfg
}

// TestGitLabRefuses: as TestGitHubRefuses, the regression test for
// oauth2-proxy CVE-2021-21411 / GHSA-652x-m2gr-hppm, where --gitlab-group
// silently stopped being enforced: a group rule denies a non-member, and
// denies when the groups cannot be read.
func TestGitLabRefuses(t *testing.T) {
	platform := Config{AllowGroups: []string{"acme/platform"}}
	for _, tc := range []struct {
		name     string
		cfg      Config
		token    string
		site     func(*gitlabSite)
		override map[string]http.HandlerFunc
		want     []error
		not      []error
	}{
		{name: "token refused", token: "glpat-wrong", want: []error{ErrInvalidToken}},
		{name: "/user 500", override: map[string]http.HandlerFunc{"/user": status(500, `{"message":"500 Internal Server Error"}`)},
			want: []error{ErrProviderUnavailable}},
		{name: "/user 429", override: map[string]http.HandlerFunc{"/user": status(429, `Retry later`,
			"RateLimit-Limit", "60", "RateLimit-Remaining", "0", "Retry-After", "30")}, want: []error{ErrProviderUnavailable}},
		{name: "/user 403 insufficient scope", override: map[string]http.HandlerFunc{"/user": status(403,
			`{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_user"}`)},
			want: []error{ErrBadResponse}, not: []error{ErrProviderUnavailable}},
		{name: "/user not JSON", override: map[string]http.HandlerFunc{"/user": object(`<!DOCTYPE html><html>GitLab</html>`)}, want: []error{ErrBadResponse}},
		{name: "/user id a string", site: func(s *gitlabSite) { s.user = gitlabUser(`"1"`, "john_smith", "null", "null") }, want: []error{ErrBadResponse}},
		{name: "/user no username", site: func(s *gitlabSite) { s.user = gitlabUser(`1`, "", "null", "null") }, want: []error{ErrBadResponse}},

		{name: "group rule, member of another group", cfg: Config{AllowGroups: []string{"acme/security"}}, want: []error{ErrNotMember}, not: []error{ErrMembershipUnknown}},
		{name: "group rule, member of no group", cfg: platform, site: func(s *gitlabSite) { s.groups = nil }, want: []error{ErrNotMember}},
		{name: "group rule, member of a subgroup only", cfg: Config{AllowGroups: []string{"acme"}}, want: []error{ErrNotMember}},
		{name: "group rule, a path prefix is no ancestor", cfg: Config{AllowGroups: []string{"acme/platform-admins"}}, want: []error{ErrNotMember}},
		{name: "group rule, a name prefix is no ancestor", cfg: Config{AllowGroups: []string{"acme/platform"}},
			site: func(s *gitlabSite) { s.groups = []string{gitlabGroupItem("acm"), gitlabGroupItem("acme/plat")} }, want: []error{ErrNotMember}},

		{name: "groups 500", cfg: platform, override: map[string]http.HandlerFunc{"/groups": status(500, `{}`)},
			want: []error{ErrMembershipUnknown, ErrProviderUnavailable}, not: []error{ErrNotMember}},
		{name: "groups 403 insufficient scope (no read_api)", cfg: platform, override: map[string]http.HandlerFunc{"/groups": status(403,
			`{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "groups 429", cfg: platform, override: map[string]http.HandlerFunc{"/groups": status(429, `Retry later`, "Retry-After", "30")},
			want: []error{ErrMembershipUnknown, ErrProviderUnavailable}},
		{name: "groups malformed", cfg: platform, override: map[string]http.HandlerFunc{"/groups": object(`[{"full_path": "acme/platform"},`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "groups entry without full_path", cfg: platform, override: map[string]http.HandlerFunc{"/groups": object(`[{"id": 1, "path": "platform"}]`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "groups unusable X-Next-Page", cfg: platform, override: map[string]http.HandlerFunc{"/groups": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Next-Page", "two")
			object(`[`+gitlabGroupItem("acme/platform")+`]`)(w, r)
		}}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "groups more pages than MaxPages, member on page 1", cfg: Config{AllowGroups: []string{"acme/platform"}, MaxPages: 2},
			site: func(s *gitlabSite) {
				s.size = 1
				s.groups = []string{gitlabGroupItem("acme/platform"), gitlabGroupItem("b"), gitlabGroupItem("c")}
			}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "ReadGroups, groups unavailable", cfg: Config{ReadGroups: true}, override: map[string]http.HandlerFunc{"/groups": status(502, `{}`)},
			want: []error{ErrMembershipUnknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitLab()
			s.override = tc.override
			if tc.site != nil {
				tc.site(&s)
			}
			_, cfg := s.serve(t, tc.cfg)
			tok := token
			if tc.token != "" {
				tok = tc.token
			}
			id, err := mustNew(t, cfg).Identity(context.Background(), tok)
			t.Log(err)
			assertIs(t, err, tc.want, tc.not)
			if slices.Contains(tc.want, ErrNotMember) != (id.Subject == "1") {
				t.Errorf("identity %+v with error %v", id, err)
			}
		})
	}
}

func TestGitLabIdentity(t *testing.T) {
	for _, tc := range []struct {
		name       string
		user       string
		email      string
		unverified bool
	}{
		{"confirmed", gitlabUser("1", "john_smith", `"john@example.com"`, `"2012-05-23T09:05:22Z"`), "john@example.com", false},
		{"not confirmed", gitlabUser("1", "john_smith", `"john@example.com"`, `null`), "john@example.com", true},
		{"OAuth placeholder address", gitlabUser("1", "john_smith", `"temp-email-for-oauth-john_smith@gitlab.localhost"`, `"2012-05-23T09:05:22Z"`),
			"temp-email-for-oauth-john_smith@gitlab.localhost", true},
		{"no address", gitlabUser("1", "john_smith", `null`, `"2012-05-23T09:05:22Z"`), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitLab()
			s.user = tc.user
			f, cfg := s.serve(t, Config{})
			fe := mustNew(t, cfg)
			id, err := fe.Identity(context.Background(), token)
			if err != nil {
				t.Fatal(err)
			}
			want := identity.Identity{Subject: "1", User: "1", Email: tc.email, EmailUnverified: tc.unverified,
				PreferredUsername: "john_smith", Name: "John Smith"}
			if fmt.Sprint(id) != fmt.Sprint(want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, want)
			}
			if f.count("/api/v4/user") != 1 || f.count("/api/v4/groups") != 0 {
				t.Errorf("requests: /user %d, /groups %d", f.count("/api/v4/user"), f.count("/api/v4/groups"))
			}
			for _, h := range f.headers() {
				if h.Get("Authorization") != "Bearer "+token || h.Get("Accept") != "application/json" || h.Get("User-Agent") != UserAgent {
					t.Errorf("request headers %v", h)
				}
			}
			if got := fe.Scopes(); !slices.Equal(got, []string{"read_user"}) {
				t.Errorf("Scopes() = %q", got)
			}
		})
	}
}

func TestGitLabAllowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		site   func(*gitlabSite)
		groups []string
		pages  int
	}{
		{name: "the group", cfg: Config{AllowGroups: []string{"acme/security", "acme/platform"}}, groups: []string{"acme/platform"}, pages: 1},
		{name: "other case", cfg: Config{AllowGroups: []string{"ACME/Platform"}},
			site: func(s *gitlabSite) { s.groups = []string{gitlabGroupItem("Acme/PLATFORM")} }, groups: []string{"acme/platform"}},
		{name: "member of an ancestor", cfg: Config{AllowGroups: []string{"acme/platform/oncall"}},
			site: func(s *gitlabSite) { s.groups = []string{gitlabGroupItem("acme")} }, groups: []string{"acme"}},
		{name: "on page 3 of 3", cfg: Config{AllowGroups: []string{"acme/platform"}, MaxPages: 3},
			site: func(s *gitlabSite) {
				s.size = 2
				s.groups = []string{gitlabGroupItem("a"), gitlabGroupItem("b"), gitlabGroupItem("c"), gitlabGroupItem("d"), gitlabGroupItem("acme/platform")}
			}, groups: []string{"a", "b", "c", "d", "acme/platform"}, pages: 3},
		{name: "ReadGroups without rules", cfg: Config{ReadGroups: true}, groups: []string{"acme/platform"}, pages: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitLab()
			if tc.site != nil {
				tc.site(&s)
			}
			f, cfg := s.serve(t, tc.cfg)
			fe := mustNew(t, cfg)
			id, err := fe.Identity(context.Background(), token)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Groups, tc.groups) {
				t.Errorf("groups %q, want %q", id.Groups, tc.groups)
			}
			if tc.pages != 0 && f.count("/api/v4/groups") != tc.pages {
				t.Errorf("/groups requested %d times, want %d", f.count("/api/v4/groups"), tc.pages)
			}
			if got := fe.Scopes(); !slices.Equal(got, []string{"read_user", "read_api"}) {
				t.Errorf("Scopes() = %q", got)
			}
		})
	}
}

// TestGitLabLinkOnly: without X-Next-Page (keyset pagination, or a proxy
// that drops it), the Link header leads.
func TestGitLabLinkOnly(t *testing.T) {
	s := defaultGitLab()
	s.size = 1
	s.groups = []string{gitlabGroupItem("a"), gitlabGroupItem("acme/platform")}
	inner := paged("github", 1, s.groups...) // Link only
	s.override = map[string]http.HandlerFunc{"/groups": inner}
	f, cfg := s.serve(t, Config{AllowGroups: []string{"acme/platform"}})
	if _, err := mustNew(t, cfg).Identity(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if n := f.count("/api/v4/groups"); n != 2 {
		t.Errorf("/groups requested %d times, want 2", n)
	}
}
