package userapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// githubSite is what the GitHub fake knows of the user octocat (id 1):
// the primary address verified, member of octo-org and of its team
// justice-league.
type githubSite struct {
	prefix   string // "" (github.com) or "/api/v3" (GitHub Enterprise Server)
	size     int    // entries per page; default 100
	user     string
	emails   []string
	orgs     []string
	teams    []string
	override map[string]http.HandlerFunc // by path below the prefix
}

func defaultGitHub() githubSite {
	return githubSite{
		user:   githubUser("1", "octocat", `"monalisa octocat"`),
		emails: []string{githubEmailItem("octocat@github.com", true, true), githubEmailItem("mona@example.com", false, true)},
		orgs:   []string{githubOrgItem("octo-org")},
		teams:  []string{githubTeamItem("octo-org", "justice-league")},
	}
}

// serve puts the site on a new fake and returns it with a config for it.
func (s githubSite) serve(t *testing.T, cfg Config) (*fake, Config) {
	t.Helper()
	f := newFake(t)
	size := s.size
	if size == 0 {
		size = 100
	}
	f.handle(s.prefix+"/user", object(s.user))
	f.handle(s.prefix+"/user/emails", paged("github", size, s.emails...))
	f.handle(s.prefix+"/user/orgs", paged("github", size, s.orgs...))
	f.handle(s.prefix+"/user/teams", paged("github", size, s.teams...))
	for p, h := range s.override {
		f.handle(s.prefix+p, h)
	}
	cfg.Kind = GitHub
	cfg.BaseURL = f.srv.URL + s.prefix
	return f, cfg
}

func mustNew(t *testing.T, cfg Config) *Fetcher {
	t.Helper()
	fe, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return fe
}

const rateLimitBody = `{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`

// TestGitHubRefuses: every way the user or their memberships cannot be
// established refuses the login. The allow-rule cases are the regression
// test for oauth2-proxy CVE-2021-21411 / GHSA-652x-m2gr-hppm (a group
// restriction that silently stopped being enforced): every configured
// restriction denies a non-member, and denies when the membership source
// is unavailable.
func TestGitHubRefuses(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a request reached another host: %s %s", r.Method, r.URL)
	}))
	defer other.Close()
	orgs := Config{AllowOrgs: []string{"octo-org"}}
	teams := Config{AllowTeams: []string{"octo-org/justice-league"}}
	for _, tc := range []struct {
		name     string
		cfg      Config
		token    string // default: the token; "-": none
		override map[string]http.HandlerFunc
		site     func(*githubSite)
		want     []error
		not      []error
	}{
		{name: "token refused", token: "gho_notthetoken", want: []error{ErrInvalidToken}, not: []error{ErrProviderUnavailable}},
		{name: "empty token", token: "-", want: []error{ErrInvalidToken}},
		{name: "token with a line break", token: "gho_x\r\nX-Evil: 1", want: []error{ErrInvalidToken}},
		{name: "/user 500", override: map[string]http.HandlerFunc{"/user": status(500, `{"message":"Server Error"}`)},
			want: []error{ErrProviderUnavailable}, not: []error{ErrInvalidToken, ErrBadResponse}},
		{name: "/user 502 HTML", override: map[string]http.HandlerFunc{"/user": status(502, `<html>Bad gateway</html>`)},
			want: []error{ErrProviderUnavailable}},
		{name: "/user 403 primary rate limit", override: map[string]http.HandlerFunc{"/user": status(403, rateLimitBody,
			"X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Used", "5000", "X-RateLimit-Reset", "1377013266")},
			want: []error{ErrProviderUnavailable}, not: []error{ErrBadResponse}},
		{name: "/user 429 secondary rate limit", override: map[string]http.HandlerFunc{"/user": status(429,
			`{"message":"You have exceeded a secondary rate limit."}`, "Retry-After", "60")},
			want: []error{ErrProviderUnavailable}},
		{name: "/user 403 not rate limited", override: map[string]http.HandlerFunc{"/user": status(403,
			`{"message":"Forbidden"}`, "X-RateLimit-Remaining", "4999")},
			want: []error{ErrBadResponse}, not: []error{ErrProviderUnavailable}},
		{name: "/user redirects", override: map[string]http.HandlerFunc{"/user": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/user", http.StatusFound)
		}}, want: []error{ErrBadResponse}},
		{name: "/user not JSON", override: map[string]http.HandlerFunc{"/user": object(`<html><body>Sign in</body></html>`)},
			want: []error{ErrBadResponse}},
		{name: "/user an array", override: map[string]http.HandlerFunc{"/user": object(`[]`)}, want: []error{ErrBadResponse}},
		{name: "/user null", override: map[string]http.HandlerFunc{"/user": object(`null`)}, want: []error{ErrBadResponse}},
		{name: "/user data after the object", site: func(s *githubSite) { s.user += `{}` }, want: []error{ErrBadResponse}},
		{name: "/user id a string", site: func(s *githubSite) { s.user = githubUser(`"1"`, "octocat", "null") }, want: []error{ErrBadResponse}},
		{name: "/user id fractional", site: func(s *githubSite) { s.user = githubUser(`1.5`, "octocat", "null") }, want: []error{ErrBadResponse}},
		{name: "/user id negative", site: func(s *githubSite) { s.user = githubUser(`-1`, "octocat", "null") }, want: []error{ErrBadResponse}},
		{name: "/user id exponent", site: func(s *githubSite) { s.user = githubUser(`1e3`, "octocat", "null") }, want: []error{ErrBadResponse}},
		{name: "/user id null", site: func(s *githubSite) { s.user = githubUser(`null`, "octocat", "null") }, want: []error{ErrBadResponse}},
		{name: "/user no login", site: func(s *githubSite) { s.user = githubUser(`1`, "", "null") }, want: []error{ErrBadResponse}},
		{name: "/user answer over 1 MiB", override: map[string]http.HandlerFunc{"/user": object(`{"login":"octocat","id":1,"bio":"` + strings.Repeat("x", MaxResponseBytes) + `"}`)},
			want: []error{ErrBadResponse}},
		{name: "/user/emails 500", override: map[string]http.HandlerFunc{"/user/emails": status(500, `{}`)},
			want: []error{ErrProviderUnavailable}, not: []error{ErrMembershipUnknown}},
		{name: "/user/emails 404 (no permission)", override: map[string]http.HandlerFunc{"/user/emails": status(404, `{"message":"Not Found"}`)},
			want: []error{ErrBadResponse}},
		{name: "/user/emails verified a string", override: map[string]http.HandlerFunc{"/user/emails": object(`[{"email":"octocat@github.com","verified":"true","primary":true}]`)},
			want: []error{ErrBadResponse}},

		{name: "org rule, member of another org", cfg: Config{AllowOrgs: []string{"acme"}}, want: []error{ErrNotMember}, not: []error{ErrMembershipUnknown}},
		{name: "org rule, member of no org", cfg: orgs, site: func(s *githubSite) { s.orgs = nil }, want: []error{ErrNotMember}},
		{name: "org rule, only a prefix", cfg: Config{AllowOrgs: []string{"octo"}}, want: []error{ErrNotMember}},
		{name: "team rule, same slug in another org", cfg: Config{AllowTeams: []string{"acme/justice-league"}}, want: []error{ErrNotMember}},
		{name: "team rule, another team of the org", cfg: Config{AllowTeams: []string{"octo-org/platform"}}, want: []error{ErrNotMember}},
		{name: "team rule, member of no team", cfg: teams, site: func(s *githubSite) { s.teams = nil }, want: []error{ErrNotMember}},
		{name: "org and team rules, the org only", cfg: Config{AllowOrgs: []string{"octo-org"}, AllowTeams: []string{"octo-org/platform"}}, want: []error{ErrNotMember}},
		{name: "org and team rules, the team only", cfg: Config{AllowOrgs: []string{"acme"}, AllowTeams: []string{"octo-org/justice-league"}}, want: []error{ErrNotMember}},

		{name: "orgs 500", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": status(500, `{}`)},
			want: []error{ErrMembershipUnknown, ErrProviderUnavailable}, not: []error{ErrNotMember}},
		{name: "orgs 403 rate limited", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": status(403, rateLimitBody, "X-RateLimit-Remaining", "0")},
			want: []error{ErrMembershipUnknown, ErrProviderUnavailable}},
		{name: "orgs 403 insufficient scope", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": status(403, `{"message":"Resource not accessible by integration"}`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}, not: []error{ErrProviderUnavailable}},
		{name: "orgs 403 SAML SSO", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": status(403, `{"message":"Resource protected by organization SAML enforcement."}`,
			"X-GitHub-SSO", "required; url=https://github.com/orgs/octo-org/sso?authorization_request=AZSCKtL4U8yX1H3sCQIVnVgmjmon5fWxks5YrqhJgah0b2tlbl9pZM4EuMz4")},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs 401", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": status(401, `{"message":"Bad credentials"}`)},
			want: []error{ErrMembershipUnknown, ErrInvalidToken}},
		{name: "orgs truncated JSON", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`[{"login": "octo-org"`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs an object", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`{"login": "octo-org"}`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs null", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`null`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs entry without login", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`[{"id": 1}, {"login": "octo-org"}]`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs login a number", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`[{"login": 5}]`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs unreadable Link", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `https://api.github.com/user/orgs?page=2; rel="next"`)
			object(`[`+githubOrgItem("octo-org")+`]`)(w, r)
		}}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs more pages than MaxPages, member on page 1", cfg: Config{AllowOrgs: []string{"octo-org"}, MaxPages: 2},
			site: func(s *githubSite) {
				s.size = 1
				s.orgs = []string{githubOrgItem("octo-org"), githubOrgItem("b"), githubOrgItem("c")}
			}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs next page on another host", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<`+other.URL+`/user/orgs?page=2>; rel="next"`)
			object(`[]`)(w, r)
		}}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs next page over plain http", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<https://`+r.Host+`/user/orgs?page=2>; rel="next"`)
			object(`[]`)(w, r)
		}}, want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "orgs answer over 1 MiB", cfg: orgs, override: map[string]http.HandlerFunc{"/user/orgs": object(`[` +
			strings.Repeat(githubOrgItem("x")+",", MaxResponseBytes/len(githubOrgItem("x"))) + githubOrgItem("octo-org") + `]`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "teams 500", cfg: teams, override: map[string]http.HandlerFunc{"/user/teams": status(503, `{}`)},
			want: []error{ErrMembershipUnknown, ErrProviderUnavailable}},
		{name: "teams entry without organization", cfg: teams, override: map[string]http.HandlerFunc{"/user/teams": object(`[{"slug": "justice-league"}]`)},
			want: []error{ErrMembershipUnknown, ErrBadResponse}},
		{name: "ReadGroups, orgs unavailable", cfg: Config{ReadGroups: true}, override: map[string]http.HandlerFunc{"/user/orgs": status(500, `{}`)},
			want: []error{ErrMembershipUnknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitHub()
			s.override = tc.override
			if tc.site != nil {
				tc.site(&s)
			}
			_, cfg := s.serve(t, tc.cfg)
			tok := token
			switch tc.token {
			case "":
			case "-":
				tok = ""
			default:
				tok = tc.token
			}
			id, err := mustNew(t, cfg).Identity(context.Background(), tok)
			t.Log(err)
			assertIs(t, err, tc.want, tc.not)
			if slices.Contains(tc.want, ErrNotMember) {
				if id.Subject != "1" {
					t.Errorf("a refused user is named %+v, want subject 1 for the log", id)
				}
			} else if id.Subject != "" || id.User != "" {
				t.Errorf("identity %+v with error %v", id, err)
			}
		})
	}
}

func TestGitHubIdentity(t *testing.T) {
	f, cfg := defaultGitHub().serve(t, Config{})
	fe := mustNew(t, cfg)
	id, err := fe.Identity(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.Identity{Subject: "1", User: "1", Email: "octocat@github.com", PreferredUsername: "octocat", Name: "monalisa octocat"}
	if fmt.Sprint(id) != fmt.Sprint(want) {
		t.Errorf("identity\n got %+v\nwant %+v", id, want)
	}
	// No allow rule and no ReadGroups: memberships are never asked for.
	for p, n := range map[string]int{"/user": 1, "/user/emails": 1, "/user/orgs": 0, "/user/teams": 0} {
		if got := f.count(p); got != n {
			t.Errorf("%s requested %d times, want %d", p, got, n)
		}
	}
	for _, h := range f.headers() {
		for name, v := range map[string]string{
			"Authorization":        "Bearer " + token,
			"Accept":               "application/vnd.github+json",
			"X-Github-Api-Version": "2022-11-28",
			"User-Agent":           UserAgent,
		} {
			if got := h.Get(name); got != v {
				t.Errorf("request header %s: %q, want %q", name, got, v)
			}
		}
	}
	if got := fe.Scopes(); !slices.Equal(got, []string{"user:email"}) {
		t.Errorf("Scopes() = %q", got)
	}
}

func TestGitHubEmail(t *testing.T) {
	for _, tc := range []struct {
		name       string
		emails     []string
		mapper     *identity.Mapper
		email      string
		unverified bool
		err        error
	}{
		{name: "primary unverified, a verified secondary", emails: []string{
			githubEmailItem("mona@example.com", false, true), githubEmailItem("octocat@github.com", true, false)},
			email: "octocat@github.com", unverified: true},
		{name: "no primary", emails: []string{githubEmailItem("mona@example.com", false, true)}, unverified: true},
		{name: "no address", unverified: true},
		{name: "the user is the e-mail, unverified", emails: []string{githubEmailItem("octocat@github.com", true, false)},
			mapper: &identity.Mapper{UserClaim: "email"}, email: "octocat@github.com", unverified: true, err: identity.ErrUnverifiedEmail},
		{name: "AssumeEmailVerified does not apply", emails: []string{githubEmailItem("octocat@github.com", true, false)},
			mapper: &identity.Mapper{AssumeEmailVerified: true}, email: "octocat@github.com", unverified: true},
		{name: "the user is the e-mail, verified", emails: []string{githubEmailItem("octocat@github.com", true, true)},
			mapper: &identity.Mapper{UserClaim: "email"}, email: "octocat@github.com"},
		{name: "primary verified", emails: []string{githubEmailItem("mona@example.com", false, true), githubEmailItem("octocat@github.com", true, true)},
			email: "octocat@github.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitHub()
			s.emails = tc.emails
			_, cfg := s.serve(t, Config{Mapper: tc.mapper})
			id, err := mustNew(t, cfg).Identity(context.Background(), token)
			if err != tc.err {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if id.Email != tc.email || id.EmailUnverified != tc.unverified {
				t.Errorf("email %q unverified %t, want %q %t", id.Email, id.EmailUnverified, tc.email, tc.unverified)
			}
			if id.Email == "public-unverified@example.com" {
				t.Error("the profile's public e-mail was used")
			}
			if tc.unverified && id.VerifiedEmail() != "" {
				t.Errorf("VerifiedEmail() = %q for an unverified address", id.VerifiedEmail())
			}
		})
	}
}

func TestGitHubAllowed(t *testing.T) {
	many := func(prefix string, n int, item func(string) string, last string) []string {
		var out []string
		for i := range n {
			out = append(out, item(fmt.Sprintf("%s%d", prefix, i)))
		}
		return append(out, item(last))
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		site   func(*githubSite)
		groups []string
		counts map[string]int
	}{
		{name: "org", cfg: Config{AllowOrgs: []string{"acme", "octo-org"}},
			groups: []string{"octo-org"}, counts: map[string]int{"/user/orgs": 1, "/user/teams": 0}},
		{name: "org, other case", cfg: Config{AllowOrgs: []string{"Octo-Org"}},
			site: func(s *githubSite) { s.orgs = []string{githubOrgItem("OCTO-org")} }, groups: []string{"octo-org"}},
		{name: "team, other case", cfg: Config{AllowTeams: []string{"Octo-Org/Justice-League"}},
			groups: []string{"octo-org/justice-league"}, counts: map[string]int{"/user/orgs": 0, "/user/teams": 1}},
		{name: "org and team", cfg: Config{AllowOrgs: []string{"octo-org"}, AllowTeams: []string{"octo-org/justice-league"}},
			groups: []string{"octo-org", "octo-org/justice-league"}, counts: map[string]int{"/user/orgs": 1, "/user/teams": 1}},
		{name: "org on page 3 of 3", cfg: Config{AllowOrgs: []string{"octo-org"}, MaxPages: 3},
			site: func(s *githubSite) {
				s.size = 2
				s.orgs = many("org", 5, githubOrgItem, "octo-org")
			},
			groups: []string{"org0", "org1", "org2", "org3", "org4", "octo-org"}, counts: map[string]int{"/user/orgs": 3}},
		{name: "team on page 3 of 3", cfg: Config{AllowTeams: []string{"octo-org/justice-league"}, MaxPages: 3},
			site: func(s *githubSite) {
				s.size = 2
				s.teams = append(many("t", 4, func(n string) string { return githubTeamItem("octo-org", n) }, "x"), githubTeamItem("octo-org", "justice-league"))
			}, counts: map[string]int{"/user/teams": 3}},
		{name: "ReadGroups without rules", cfg: Config{ReadGroups: true},
			site: func(s *githubSite) {
				s.orgs = []string{githubOrgItem("octo-org"), githubOrgItem("Acme")}
				s.teams = []string{githubTeamItem("octo-org", "justice-league"), githubTeamItem("Acme", "platform")}
			},
			groups: []string{"octo-org", "acme", "octo-org/justice-league", "acme/platform"}, counts: map[string]int{"/user/orgs": 1, "/user/teams": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultGitHub()
			if tc.site != nil {
				tc.site(&s)
			}
			f, cfg := s.serve(t, tc.cfg)
			fe := mustNew(t, cfg)
			id, err := fe.Identity(context.Background(), token)
			if err != nil {
				t.Fatal(err)
			}
			if tc.groups != nil && !slices.Equal(id.Groups, tc.groups) {
				t.Errorf("groups %q, want %q", id.Groups, tc.groups)
			}
			for p, n := range tc.counts {
				if got := f.count(p); got != n {
					t.Errorf("%s requested %d times, want %d", p, got, n)
				}
			}
			if got := fe.Scopes(); !slices.Equal(got, []string{"user:email", "read:org"}) {
				t.Errorf("Scopes() = %q", got)
			}
		})
	}
}

// TestGitHubEnterprise: the API under /api/v3, pagination included.
func TestGitHubEnterprise(t *testing.T) {
	s := defaultGitHub()
	s.prefix = "/api/v3"
	s.size = 1
	s.orgs = []string{githubOrgItem("a"), githubOrgItem("octo-org")}
	f, cfg := s.serve(t, Config{AllowOrgs: []string{"octo-org"}})
	cfg.BaseURL += "/" // a trailing slash is tolerated
	id, err := mustNew(t, cfg).Identity(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "1" || !slices.Equal(id.Groups, []string{"a", "octo-org"}) {
		t.Errorf("identity %+v", id)
	}
	if f.count("/api/v3/user") != 1 || f.count("/api/v3/user/orgs") != 2 || f.count("/user") != 0 {
		t.Errorf("requests: /api/v3/user %d, /api/v3/user/orgs %d, /user %d", f.count("/api/v3/user"), f.count("/api/v3/user/orgs"), f.count("/user"))
	}
}

// TestGitHubLargeID: IDs stay exact beyond float64's 2^53.
func TestGitHubLargeID(t *testing.T) {
	s := defaultGitHub()
	s.user = githubUser("9007199254740993", "octocat", "null")
	_, cfg := s.serve(t, Config{})
	id, err := mustNew(t, cfg).Identity(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "9007199254740993" || id.User != "9007199254740993" || id.Name != "" {
		t.Errorf("identity %+v", id)
	}
}

// TestGitHubConcurrent: one Fetcher serves concurrent logins (run with
// -race).
func TestGitHubConcurrent(t *testing.T) {
	f, cfg := defaultGitHub().serve(t, Config{AllowTeams: []string{"octo-org/justice-league"}, ReadGroups: true})
	fe := mustNew(t, cfg)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := fe.Identity(context.Background(), token)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := f.count("/user/teams"); n != 8 {
		t.Errorf("/user/teams requested %d times, want 8", n)
	}
}
