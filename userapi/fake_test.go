package userapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The fakes below answer as the providers document. Bodies are the
// documented examples (fields gatehouse ignores included), with the values
// a test cares about substituted.
//
// GitHub REST API, version 2022-11-28:
//   - https://docs.github.com/en/rest/users/users#get-the-authenticated-user
//   - https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user
//   - https://docs.github.com/en/rest/orgs/orgs#list-organizations-for-the-authenticated-user
//   - https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user
//   - https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
//     (the Link header: rel="next", "prev", "first", "last")
//   - https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
//     (403 or 429 with x-ratelimit-remaining: 0, or retry-after)
//
// GitLab REST API v4:
//   - https://docs.gitlab.com/api/users/#get-the-current-user
//   - https://docs.gitlab.com/api/groups/#list-groups
//   - https://docs.gitlab.com/api/rest/#pagination (offset pagination:
//     x-next-page, x-page, x-per-page, x-prev-page, x-total,
//     x-total-pages, and a Link header)

// token is the access token the fakes accept.
const token = "gho_16C7e42F292c6912E7710c838347Ae178B4a"

// fake is an API server that counts the requests per path and keeps their
// headers.
type fake struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]http.HandlerFunc
	hits   map[string]int
	seen   []http.Header
}

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{t: t, routes: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits[r.URL.Path]++
		f.seen = append(f.seen, r.Header.Clone())
		h := f.routes[r.URL.Path]
		f.mu.Unlock()
		if r.Method != http.MethodGet {
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			// GitHub: {"message":"Bad credentials",...}; GitLab: {"message":"401 Unauthorized"}.
			// The body echoes the token, to show errors never carry bodies.
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"message":"Bad credentials: %s","documentation_url":"https://docs.github.com/rest","status":"401"}`, r.Header.Get("Authorization"))
			return
		}
		if h == nil {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) handle(path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[path] = h
}

func (f *fake) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fake) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.hits {
		n += c
	}
	return n
}

func (f *fake) headers() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.seen...)
}

// object answers a JSON body.
func object(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, body)
	}
}

// status answers st with a JSON message and the given headers.
func status(st int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(st)
		fmt.Fprint(w, body)
	}
}

// paged answers items (JSON objects) size per page, paginated in the
// provider's style: "github" (Link) or "gitlab" (x-next-page and friends,
// and Link).
func paged(style string, size int, items ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page := 1
		if p := r.URL.Query().Get("page"); p != "" {
			var err error
			if page, err = strconv.Atoi(p); err != nil || page < 1 {
				http.Error(w, `{"message":"400 Bad request - page is invalid"}`, http.StatusBadRequest)
				return
			}
		}
		pages := max(1, (len(items)+size-1)/size)
		lo, hi := min((page-1)*size, len(items)), min(page*size, len(items))
		link := func(p int) string {
			q := r.URL.Query()
			q.Set("page", strconv.Itoa(p))
			return (&url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}).String()
		}
		var links []string
		if page > 1 {
			links = append(links, fmt.Sprintf(`<%s>; rel="prev"`, link(page-1)))
		}
		if page < pages {
			links = append(links, fmt.Sprintf(`<%s>; rel="next"`, link(page+1)))
		}
		links = append(links, fmt.Sprintf(`<%s>; rel="first"`, link(1)), fmt.Sprintf(`<%s>; rel="last"`, link(pages)))
		if style == "github" && pages == 1 {
			links = nil // GitHub sends no Link for a single page
		}
		if len(links) > 0 {
			w.Header().Set("Link", strings.Join(links, ", "))
		}
		if style == "gitlab" {
			next, prev := "", ""
			if page < pages {
				next = strconv.Itoa(page + 1)
			}
			if page > 1 {
				prev = strconv.Itoa(page - 1)
			}
			h := w.Header()
			h.Set("X-Page", strconv.Itoa(page))
			h.Set("X-Per-Page", strconv.Itoa(size))
			h.Set("X-Next-Page", next)
			h.Set("X-Prev-Page", prev)
			h.Set("X-Total", strconv.Itoa(len(items)))
			h.Set("X-Total-Pages", strconv.Itoa(pages))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "["+strings.Join(items[lo:hi], ",")+"]")
	}
}

// GitHub's documented examples.

func githubUser(id, login, name string) string {
	return `{
  "login": "` + login + `", "id": ` + id + `, "node_id": "MDQ6VXNlcjE=",
  "avatar_url": "https://github.com/images/error/octocat_happy.gif", "gravatar_id": "",
  "url": "https://api.github.com/users/octocat", "html_url": "https://github.com/octocat",
  "followers_url": "https://api.github.com/users/octocat/followers",
  "following_url": "https://api.github.com/users/octocat/following{/other_user}",
  "gists_url": "https://api.github.com/users/octocat/gists{/gist_id}",
  "starred_url": "https://api.github.com/users/octocat/starred{/owner}{/repo}",
  "subscriptions_url": "https://api.github.com/users/octocat/subscriptions",
  "organizations_url": "https://api.github.com/users/octocat/orgs",
  "repos_url": "https://api.github.com/users/octocat/repos",
  "events_url": "https://api.github.com/users/octocat/events{/privacy}",
  "received_events_url": "https://api.github.com/users/octocat/received_events",
  "type": "User", "site_admin": false, "name": ` + name + `, "company": "GitHub",
  "blog": "https://github.com/blog", "location": "San Francisco",
  "email": "public-unverified@example.com", "hireable": false,
  "bio": "There once was...", "twitter_username": "monatheoctocat",
  "public_repos": 2, "public_gists": 1, "followers": 20, "following": 0,
  "created_at": "2008-01-14T04:33:35Z", "updated_at": "2008-01-14T04:33:35Z",
  "private_gists": 81, "total_private_repos": 100, "owned_private_repos": 100,
  "disk_usage": 10000, "collaborators": 8, "two_factor_authentication": true,
  "plan": {"name": "Medium", "space": 400, "private_repos": 20, "collaborators": 0}
}`
}

func githubEmailItem(email string, primary, verified bool) string {
	return fmt.Sprintf(`{"email": %q, "verified": %t, "primary": %t, "visibility": "public"}`, email, verified, primary)
}

func githubOrgItem(login string) string {
	return `{"login": "` + login + `", "id": 1, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
  "url": "https://api.github.com/orgs/` + login + `", "repos_url": "https://api.github.com/orgs/` + login + `/repos",
  "events_url": "https://api.github.com/orgs/` + login + `/events", "hooks_url": "https://api.github.com/orgs/` + login + `/hooks",
  "issues_url": "https://api.github.com/orgs/` + login + `/issues",
  "members_url": "https://api.github.com/orgs/` + login + `/members{/member}",
  "public_members_url": "https://api.github.com/orgs/` + login + `/public_members{/member}",
  "avatar_url": "https://github.com/images/error/octocat_happy.gif", "description": "A great organization"}`
}

func githubTeamItem(org, slug string) string {
	return `{"id": 1, "node_id": "MDQ6VGVhbTE=", "url": "https://api.github.com/teams/1",
  "html_url": "https://github.com/orgs/` + org + `/teams/` + slug + `", "name": "Justice League",
  "slug": "` + slug + `", "description": "A great team.", "privacy": "closed",
  "notification_setting": "notifications_enabled", "permission": "admin",
  "members_url": "https://api.github.com/teams/1/members{/member}",
  "repositories_url": "https://api.github.com/teams/1/repos", "parent": null,
  "members_count": 3, "repos_count": 10,
  "created_at": "2017-07-14T16:53:42Z", "updated_at": "2017-08-17T12:37:15Z",
  "organization": {"login": "` + org + `", "id": 1, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
    "url": "https://api.github.com/orgs/` + org + `", "name": "github", "company": "GitHub",
    "blog": "https://github.com/blog", "location": "San Francisco", "email": "octocat@github.com",
    "is_verified": true, "has_organization_projects": true, "has_repository_projects": true,
    "public_repos": 2, "public_gists": 1, "followers": 20, "following": 0,
    "html_url": "https://github.com/octocat", "created_at": "2008-01-14T04:33:35Z",
    "updated_at": "2017-08-17T12:37:15Z", "type": "Organization"}}`
}

// GitLab's documented examples.

func gitlabUser(id, username, email, confirmedAt string) string {
	return `{
  "id": ` + id + `, "username": "` + username + `", "email": ` + email + `, "name": "John Smith",
  "state": "active", "locked": false,
  "avatar_url": "http://localhost:3000/uploads/user/avatar/1/index.jpg",
  "web_url": "http://localhost:3000/john_smith", "created_at": "2012-05-23T08:00:58Z",
  "bio": "", "location": null, "public_email": "john@example.com", "skype": "", "linkedin": "",
  "twitter": "", "discord": "", "website_url": "", "organization": "", "job_title": "",
  "pronouns": "he/him", "bot": false, "work_information": null, "followers": 0, "following": 0,
  "local_time": "3:38 PM", "last_sign_in_at": "2012-06-01T11:41:01Z",
  "confirmed_at": ` + confirmedAt + `, "theme_id": 1, "last_activity_on": "2012-05-23",
  "color_scheme_id": 2, "projects_limit": 100, "current_sign_in_at": "2012-06-02T06:36:55Z",
  "identities": [{"provider": "github", "extern_uid": "2435223452345"}],
  "can_create_group": true, "can_create_project": true, "two_factor_enabled": true,
  "external": false, "private_profile": false, "commit_email": "admin@example.com"
}`
}

func gitlabGroupItem(fullPath string) string {
	name := fullPath[strings.LastIndex(fullPath, "/")+1:]
	return `{"id": 1, "name": "Foobar Group", "path": "` + name + `", "description": "An interesting group",
  "visibility": "public", "share_with_group_lock": false, "require_two_factor_authentication": false,
  "two_factor_grace_period": 48, "project_creation_level": "developer", "auto_devops_enabled": null,
  "subgroup_creation_level": "owner", "emails_disabled": null, "emails_enabled": null,
  "mentions_disabled": null, "lfs_enabled": true, "default_branch": null,
  "default_branch_protection": 2,
  "default_branch_protection_defaults": {"allowed_to_push": [{"access_level": 40}],
    "allow_force_push": false, "allowed_to_merge": [{"access_level": 40}]},
  "avatar_url": "http://localhost:3000/uploads/group/avatar/1/foo.jpg",
  "web_url": "http://localhost:3000/groups/` + fullPath + `", "request_access_enabled": false,
  "repository_storage": "default", "full_name": "Foobar Group", "full_path": "` + fullPath + `",
  "file_template_project_id": 1, "parent_id": null, "created_at": "2020-01-15T12:36:29.590Z",
  "ip_restriction_ranges": null}`
}

// assertNoToken fails when err carries the token.
func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(token, "gho_")) {
		t.Errorf("the error carries the token: %v", err)
	}
}

// assertIs fails unless err is each of want and none of not.
func assertIs(t *testing.T, err error, want []error, not []error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("error %q is not %q", err, w)
		}
	}
	for _, n := range not {
		if errors.Is(err, n) {
			t.Errorf("error %q is %q", err, n)
		}
	}
	assertNoToken(t, err)
}
