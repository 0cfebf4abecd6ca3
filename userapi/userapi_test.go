package userapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
)

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no kind", Config{}, "Kind"},
		{"unknown kind", Config{Kind: "bitbucket"}, "Kind"},
		{"kind in capitals", Config{Kind: "GitHub"}, "Kind"},
		// Rules for another kind would be ignored: refused instead
		// (oauth2-proxy CVE-2021-21411).
		{"github with groups", Config{Kind: GitHub, AllowGroups: []string{"acme"}}, "AllowGroups"},
		{"gitlab with orgs", Config{Kind: GitLab, AllowOrgs: []string{"acme"}}, "AllowOrgs"},
		{"gitlab with teams", Config{Kind: GitLab, AllowTeams: []string{"acme/a"}}, "AllowTeams"},
		{"oauth2 with orgs", Config{Kind: OAuth2, UserinfoURL: "https://x.example/me", AllowOrgs: []string{"acme"}}, "AllowOrgs"},
		{"oauth2 with groups", Config{Kind: OAuth2, UserinfoURL: "https://x.example/me", AllowGroups: []string{"acme"}}, "AllowGroups"},
		{"oauth2 with ReadGroups", Config{Kind: OAuth2, UserinfoURL: "https://x.example/me", ReadGroups: true}, "ReadGroups"},
		{"oauth2 with BaseURL", Config{Kind: OAuth2, UserinfoURL: "https://x.example/me", BaseURL: "https://x.example"}, "BaseURL"},
		{"oauth2 without UserinfoURL", Config{Kind: OAuth2}, "UserinfoURL"},
		{"github with UserinfoURL", Config{Kind: GitHub, UserinfoURL: "https://x.example/me"}, "UserinfoURL"},
		{"gitlab with a claim path", Config{Kind: GitLab, SubjectPath: "uid"}, "SubjectPath, EmailVerifiedPath, UsernamePath, NamePath"},
		{"relative base", Config{Kind: GitHub, BaseURL: "/api/v3"}, "BaseURL"},
		{"ftp base", Config{Kind: GitLab, BaseURL: "ftp://gitlab.example"}, "BaseURL"},
		{"base with user info", Config{Kind: GitHub, BaseURL: "https://u:p@ghe.example/api/v3"}, "BaseURL"},
		{"base with a query", Config{Kind: GitHub, BaseURL: "https://ghe.example/api/v3?x=1"}, "BaseURL"},
		{"base with a fragment", Config{Kind: GitLab, BaseURL: "https://gitlab.example/#x"}, "BaseURL"},
		{"userinfo not absolute", Config{Kind: OAuth2, UserinfoURL: "x.example/me"}, "UserinfoURL"},
		{"empty org", Config{Kind: GitHub, AllowOrgs: []string{""}}, "AllowOrgs"},
		{"org with a slash", Config{Kind: GitHub, AllowOrgs: []string{"acme/platform"}}, "AllowOrgs"},
		{"org with a space", Config{Kind: GitHub, AllowOrgs: []string{"acme "}}, "AllowOrgs"},
		{"team without org", Config{Kind: GitHub, AllowTeams: []string{"platform"}}, "AllowTeams"},
		{"team with an empty org", Config{Kind: GitHub, AllowTeams: []string{"/platform"}}, "AllowTeams"},
		{"team with an empty slug", Config{Kind: GitHub, AllowTeams: []string{"acme/"}}, "AllowTeams"},
		{"team with three parts", Config{Kind: GitHub, AllowTeams: []string{"acme/platform/x"}}, "AllowTeams"},
		{"group with an empty part", Config{Kind: GitLab, AllowGroups: []string{"acme//platform"}}, "AllowGroups"},
		{"group with a leading slash", Config{Kind: GitLab, AllowGroups: []string{"/acme"}}, "AllowGroups"},
		{"negative MaxPages", Config{Kind: GitHub, MaxPages: -1}, "MaxPages"},
		{"negative Timeout", Config{Kind: GitHub, Timeout: -1}, "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(tc.cfg)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tc.field {
				t.Fatalf("New = %v, %v; want an *OptionError for %s", f, err, tc.field)
			}
			t.Log(err)
		})
	}
}

func TestNewDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		api string
	}{
		{Config{Kind: GitHub}, "https://api.github.com"},
		{Config{Kind: GitHub, BaseURL: "https://ghe.example/api/v3/"}, "https://ghe.example/api/v3"},
		{Config{Kind: GitLab}, "https://gitlab.com/api/v4"},
		{Config{Kind: GitLab, BaseURL: "https://example.com/gitlab/"}, "https://example.com/gitlab/api/v4"},
		{Config{Kind: OAuth2, UserinfoURL: "https://x.example/api/me?fields=id,name"}, "https://x.example/api/me?fields=id,name"},
	} {
		f, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if f.api.String() != tc.api || f.maxPages != DefaultMaxPages || f.timeout != DefaultTimeout || f.client == nil || f.mapper == nil {
			t.Errorf("%+v: api %s, maxPages %d, timeout %v", tc.cfg, f.api, f.maxPages, f.timeout)
		}
	}
}

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{Kind: GitHub}, []string{"user:email"}},
		{Config{Kind: GitHub, AllowOrgs: []string{"a"}}, []string{"user:email", "read:org"}},
		{Config{Kind: GitHub, AllowTeams: []string{"a/b"}}, []string{"user:email", "read:org"}},
		{Config{Kind: GitHub, ReadGroups: true}, []string{"user:email", "read:org"}},
		{Config{Kind: GitLab}, []string{"read_user"}},
		{Config{Kind: GitLab, AllowGroups: []string{"a"}}, []string{"read_user", "read_api"}},
		{Config{Kind: GitLab, ReadGroups: true}, []string{"read_user", "read_api"}},
		{Config{Kind: OAuth2, UserinfoURL: "https://x.example/me"}, nil},
	} {
		f, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Scopes(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: Scopes() = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

// TestCanceled: a caller that gives up gets ErrProviderUnavailable
// wrapping its context's error, and no identity.
func TestCanceled(t *testing.T) {
	_, cfg := defaultGitHub().serve(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id, err := mustNew(t, cfg).Identity(ctx, token)
	assertIs(t, err, []error{ErrProviderUnavailable, context.Canceled}, nil)
	if id.Subject != "" {
		t.Errorf("identity %+v", id)
	}
}

// TestTimeout: every request gets a deadline of Timeout, whatever the
// caller's context allows.
func TestTimeout(t *testing.T) {
	_, cfg := defaultGitHub().serve(t, Config{Timeout: 1}) // 1ns: expired before the request is sent
	_, err := mustNew(t, cfg).Identity(context.Background(), token)
	assertIs(t, err, []error{ErrProviderUnavailable, context.DeadlineExceeded}, nil)
}

// TestTokenNeverSent: a token that is not a token never reaches the API.
func TestTokenNeverSent(t *testing.T) {
	f, cfg := defaultGitHub().serve(t, Config{})
	for _, tok := range []string{"", " ", "a b", "tok\x00", "tok\n", "tök"} {
		_, err := mustNew(t, cfg).Identity(context.Background(), tok)
		assertIs(t, err, []error{ErrInvalidToken}, nil)
	}
	if n := f.total(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func TestLinkNext(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
		want   string
		err    bool
	}{
		{"none", nil, "", false},
		{"GitHub docs example", []string{`<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", ` +
			`<https://api.github.com/repositories/1300192/issues?page=4>; rel="next", ` +
			`<https://api.github.com/repositories/1300192/issues?page=515>; rel="last", ` +
			`<https://api.github.com/repositories/1300192/issues?page=1>; rel="first"`},
			"https://api.github.com/repositories/1300192/issues?page=4", false},
		{"last page", []string{`<https://api.github.com/user/orgs?page=1>; rel="first", <https://api.github.com/user/orgs?page=2>; rel="prev"`}, "", false},
		{"unquoted, other case, several relations", []string{`</x?page=3>;REL=Next`}, "/x?page=3", false},
		{"relation list", []string{`<https://a.example/2>; rel="last next"`}, "https://a.example/2", false},
		{"next only as a word of another parameter", []string{`<https://a.example/2>; title="next"; rel="prev"`}, "", false},
		{"escaped quote in a parameter", []string{`<https://a.example/2>; title="a \"b\", c"; rel=next`}, "https://a.example/2", false},
		{"comma in the target", []string{`<https://a.example/x?a=1,2>; rel="next"`}, "https://a.example/x?a=1,2", false},
		{"several header lines", []string{`<https://a.example/1>; rel="prev"`, `<https://a.example/3>; rel="next"`}, "https://a.example/3", false},
		{"no angle brackets", []string{`https://a.example/2; rel="next"`}, "", true},
		{"unclosed target", []string{`<https://a.example/2; rel="next"`}, "", true},
		{"unclosed quote", []string{`<https://a.example/2>; rel="next`}, "", true},
		{"garbage after the target", []string{`<https://a.example/2> rel="next"`}, "", true},
		{"empty parameter name", []string{`<https://a.example/2>; =next`}, "", true},
		{"a space in the target", []string{`<https://a.example/2 x>; rel=next`}, "", true},
		{"an angle bracket in the target", []string{`<<https://a.example/2>; rel=next`}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := linkNext(tc.header)
			if got != tc.want || (err != nil) != tc.err {
				t.Errorf("linkNext = %q, %v; want %q, error %t", got, err, tc.want, tc.err)
			}
		})
	}
}

// TestOnAPI: the pages a list may continue on.
func TestOnAPI(t *testing.T) {
	f, err := New(Config{Kind: GitHub, BaseURL: "https://ghe.example/api/v3"})
	if err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]bool{
		"https://ghe.example/api/v3/user/orgs?page=2":     true,
		"https://GHE.example:443/api/v3/user/orgs":        true,
		"https://ghe.example/api/v3":                      true,
		"http://ghe.example/api/v3/user/orgs":             false,
		"https://ghe.example:8443/api/v3/user/orgs":       false,
		"https://evil.example/api/v3/user/orgs":           false,
		"https://ghe.example.evil.example/api/v3/user":    false,
		"https://ghe.example/api/v30/user":                false,
		"https://ghe.example/api/v3/../../login":          false,
		"https://ghe.example/other":                       false,
		"https://x@ghe.example/api/v3/user/orgs":          false,
		"https://ghe.example/api/v3/%2e%2e/%2e%2e/logout": false,
	} {
		u, err := f.api.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.onAPI(u); got != want {
			t.Errorf("onAPI(%s) = %t, want %t", raw, got, want)
		}
	}
}

// TestRedirectNotFollowedElsewhere: the default client does not carry the
// token to another host.
func TestRedirectNotFollowedElsewhere(t *testing.T) {
	other := newFake(t)
	s := defaultGitHub()
	s.override = map[string]http.HandlerFunc{"/user": func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL+"/user", http.StatusTemporaryRedirect)
	}}
	_, cfg := s.serve(t, Config{})
	_, err := mustNew(t, cfg).Identity(context.Background(), token)
	assertIs(t, err, []error{ErrBadResponse}, nil)
	if n := other.total(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
}
