package userapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// headerSafe tells whether an identity could go into headers as it is.
func headerSafe(id identity.Identity) bool {
	vals := append([]string{id.Subject, id.User, id.Email, id.PreferredUsername, id.Name}, id.Groups...)
	return !slices.ContainsFunc(vals, func(v string) bool { return identity.HeaderSafe(v) != v })
}

// FuzzUserinfo: any user-info body is a claims map or an error, never a
// panic; a mapped identity has a subject and only header-safe values.
func FuzzUserinfo(f *testing.F) {
	for _, s := range []string{
		nestedUserinfo,
		`{"sub":"248289761001","name":"Jane Doe","email":"janedoe@example.com","email_verified":true,"groups":["staff"]}`,
		`{"sub":1e400,"data":{"id":[1,2]}}`,
		`{"data":null,"sub":{"x":"y"}}`,
		`{"data":{"id":"a\u0000b","attributes":{"mail_confirmed":"true"}}}`,
		`[]`, `null`, `{}`, `{"a":1}{}`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	nested, err := New(Config{Kind: OAuth2, UserinfoURL: "https://x.example/me", SubjectPath: "data.id",
		EmailVerifiedPath: "data.attributes.mail_confirmed", UsernamePath: "data.attributes.handle", NamePath: "data.attributes.display_name",
		Mapper: &identity.Mapper{EmailClaim: "data.attributes.mail", GroupsClaim: "data.roles"}})
	if err != nil {
		f.Fatal(err)
	}
	plain, err := New(Config{Kind: OAuth2, UserinfoURL: "https://x.example/me"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, fe := range []*Fetcher{nested, plain} {
			claims, err := fe.userinfoClaims(body)
			if err != nil {
				continue
			}
			id, err := fe.mapper.Map(claims)
			if err == nil && (id.Subject == "" || id.User == "") {
				t.Fatalf("identity %+v without an error", id)
			}
			if !headerSafe(id) {
				t.Fatalf("identity %+v is not header-safe", id)
			}
		}
	})
}

// FuzzLinkNext: any Link header yields a target taken from it, nothing,
// or an error; never a panic.
func FuzzLinkNext(f *testing.F) {
	for _, s := range []string{
		`<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", <https://api.github.com/repositories/1300192/issues?page=4>; rel="next"`,
		`</x>;rel=next`, `<a>; title="x\"y"; rel="last next"`, `<`, `<>`, `<a>;`, `<a>; rel="`, `,,,`, `<a>; rel=next, garbage`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		target, err := linkNext([]string{header})
		if err != nil && target != "" {
			t.Fatalf("target %q with error %v", target, err)
		}
		if !strings.Contains(header, target) || strings.ContainsAny(target, "<>") {
			t.Fatalf("target %q is not a link of %q", target, header)
		}
	})
}

// answers is a transport that gives every request the fuzzed answer:
// the user object at /user, the list (with the Link header) elsewhere.
type answers struct {
	status     int
	user, list []byte
	link       string
}

func (a *answers) RoundTrip(r *http.Request) (*http.Response, error) {
	body, h := a.list, http.Header{"Link": {a.link}, "X-Next-Page": {""}}
	if strings.HasSuffix(r.URL.Path, "/user") {
		body, h = a.user, http.Header{}
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

// FuzzAnswers: whatever the GitHub and GitLab APIs answer, Identity
// never panics, and it never lets a user in whose membership it did not
// read: with an allow rule, success means the allowed name is among the
// groups read (fail closed, oauth2-proxy CVE-2021-21411).
func FuzzAnswers(f *testing.F) {
	f.Add(200, []byte(githubUser("1", "octocat", "null")), []byte(`[`+githubOrgItem("octo-org")+`]`), "")
	f.Add(200, []byte(githubUser("1", "octocat", "null")), []byte(`[`+githubTeamItem("octo-org", "justice-league")+`,`+githubEmailItem("a@b.example", true, true)+`]`), "")
	f.Add(200, []byte(gitlabUser("1", "john_smith", `"john@example.com"`, "null")), []byte(`[`+gitlabGroupItem("acme")+`]`), "")
	f.Add(200, []byte(gitlabUser("1", "john_smith", `"john@example.com"`, "null")), []byte(`[`+gitlabGroupItem("acme/platform")+`]`), `<https://api.example/api/v4/groups?page=2>; rel="next"`)
	f.Add(403, []byte(`{}`), []byte(`[]`), "")
	f.Add(200, []byte(`{"id":1,"login":"x","username":"x"}`), []byte(`[{"login":"octo-org","slug":"justice-league","organization":{"login":"octo-org"},"full_path":"acme/platform","email":"a@b","primary":true,"verified":true}]`), "")
	f.Fuzz(func(t *testing.T, status int, user, list []byte, link string) {
		if status < 100 || status > 999 {
			status = 200
		}
		client := &http.Client{Transport: &answers{status: status, user: user, list: list, link: link}}
		for _, c := range []struct {
			cfg     Config
			allowed func([]string) bool
		}{
			{Config{Kind: GitHub, BaseURL: "https://api.example", AllowOrgs: []string{"octo-org"}, ReadGroups: true},
				func(g []string) bool { return slices.Contains(g, "octo-org") }},
			{Config{Kind: GitHub, BaseURL: "https://api.example", AllowTeams: []string{"octo-org/justice-league"}, ReadGroups: true},
				func(g []string) bool { return slices.Contains(g, "octo-org/justice-league") }},
			{Config{Kind: GitLab, BaseURL: "https://api.example", AllowGroups: []string{"acme/platform"}},
				func(g []string) bool { return slices.Contains(g, "acme/platform") || slices.Contains(g, "acme") }},
		} {
			c.cfg.HTTPClient = client
			c.cfg.MaxPages = 3
			fe, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := fe.Identity(context.Background(), token)
			if err == nil && (id.Subject == "" || !c.allowed(id.Groups)) {
				t.Fatalf("%s let %+v in", c.cfg.Kind, id)
			}
			if !headerSafe(id) {
				t.Fatalf("identity %+v is not header-safe", id)
			}
			assertNoToken(t, err)
		}
	})
}
