package userapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// Kind is the kind of user API a provider has.
type Kind string

// The kinds of user API.
const (
	// GitHub is the GitHub REST API (github.com, GitHub Enterprise).
	GitHub Kind = "github"
	// GitLab is the GitLab REST API v4 (gitlab.com, self-managed).
	GitLab Kind = "gitlab"
	// OAuth2 is a generic user-info endpoint that answers a JSON object.
	OAuth2 Kind = "oauth2"
)

// Defaults and limits of a Fetcher.
const (
	// DefaultGitHubURL is the GitHub REST API of github.com.
	DefaultGitHubURL = "https://api.github.com"
	// DefaultGitLabURL is gitlab.com.
	DefaultGitLabURL = "https://gitlab.com"
	// DefaultMaxPages bounds the pages of 100 entries read from one list.
	DefaultMaxPages = 10
	// DefaultTimeout bounds one API request.
	DefaultTimeout = 10 * time.Second
	// MaxResponseBytes bounds one API response.
	MaxResponseBytes = 1 << 20
	// UserAgent is sent with every request (GitHub refuses requests
	// without one).
	UserAgent = "gatehouse"
	// perPage is the page size asked for: the largest GitHub and GitLab
	// allow.
	perPage = 100
)

// Errors of Identity. A refusal of the user is ErrNotMember; the others
// say why the user could not be known. A failure to read the memberships
// an allow rule or ReadGroups needs is ErrMembershipUnknown as well as its
// cause (ErrProviderUnavailable, ErrInvalidToken or ErrBadResponse).
var (
	// ErrNotMember: the user is in none of the allowed organizations,
	// teams or groups.
	ErrNotMember = errors.New("userapi: the user is not a member of an allowed organization, team or group")
	// ErrMembershipUnknown: the memberships could not be read, so the
	// user is refused (fail closed, never allowed by default).
	ErrMembershipUnknown = errors.New("userapi: the user's memberships could not be read")
	// ErrInvalidToken: the API refused the access token (401), or it is
	// not a token at all.
	ErrInvalidToken = errors.New("userapi: the provider refused the access token")
	// ErrProviderUnavailable: the API could not be reached, failed (5xx),
	// or rate-limited the request (429, or 403 with rate-limit headers).
	ErrProviderUnavailable = errors.New("userapi: the provider's API is unavailable")
	// ErrBadResponse: the API answered, but not usably: another status
	// (403 for a missing scope, 404, a redirect), a body that is not the
	// documented JSON or too large, a list longer than MaxPages, a next
	// page on another host.
	ErrBadResponse = errors.New("userapi: unusable answer from the provider's API")
)

// Config configures a Fetcher. Zero values select the documented defaults.
type Config struct {
	// Kind of API. Required.
	Kind Kind

	// BaseURL is where the API lives. GitHub: the REST API root, default
	// https://api.github.com (GitHub Enterprise Server:
	// https://HOST/api/v3). GitLab: the instance, default
	// https://gitlab.com; the API is BaseURL/api/v4. Not used by OAuth2.
	BaseURL string

	// UserinfoURL is the OAuth2 kind's user-info endpoint, called with GET
	// and Authorization: Bearer. Required for OAuth2, else unused.
	UserinfoURL string

	// SubjectPath, EmailVerifiedPath, UsernamePath and NamePath say where
	// the OAuth2 kind's user-info object carries the subject,
	// email_verified, preferred_username and name: a member name, or a
	// dotted path into nested objects ("data.id"), as for the Mapper's
	// claims. Defaults: "sub", "email_verified", "preferred_username",
	// "name". The user, e-mail and groups are the Mapper's UserClaim,
	// EmailClaim and GroupsClaim, read from the same object. Unused by
	// the other kinds.
	SubjectPath, EmailVerifiedPath, UsernamePath, NamePath string

	// Mapper turns the claims into the Identity (see the package
	// documentation for the claims of each kind). Its AssumeEmailVerified
	// applies to the OAuth2 kind only: GitHub and GitLab always say.
	// Default: the default claim names, so the user is the subject.
	Mapper *identity.Mapper

	// AllowOrgs (GitHub): when set, the user must be a member of one of
	// these organizations (logins, compared ignoring case).
	AllowOrgs []string
	// AllowTeams (GitHub): when set, the user must be a member of one of
	// these teams, each "org/team-slug" (compared ignoring case). With
	// AllowOrgs too, both must be satisfied.
	AllowTeams []string
	// AllowGroups (GitLab): when set, the user must be a member (Guest or
	// above) of one of these groups, by full path ("acme/platform",
	// compared ignoring case). A member of a group is a member of its
	// subgroups, as in GitLab.
	AllowGroups []string
	// ReadGroups reads the user's memberships into Identity.Groups even
	// when no allow rule needs them (GitHub: organizations and teams;
	// GitLab: groups). Default: only what the allow rules need is read.
	ReadGroups bool

	// HTTPClient makes the requests. Default: gatehouse's provider client
	// (Timeout, response cap, no redirect to another host).
	HTTPClient *http.Client
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// MaxPages bounds the pages (of 100 entries) read from one list;
	// a longer list is an error. Default 10.
	MaxPages int
}

// OptionError is a Config value New refuses. Field names the Config
// field; Reason says why, for callers that report it under their own
// name for the option.
type OptionError struct {
	Field, Reason string
}

func (e *OptionError) Error() string { return "userapi: " + e.Field + ": " + e.Reason }

// Fetcher turns an access token into an Identity with a provider's user
// API. It is safe for concurrent use.
type Fetcher struct {
	kind     Kind
	api      *url.URL // GitHub: BaseURL; GitLab: BaseURL/api/v4; OAuth2: UserinfoURL
	client   *http.Client
	timeout  time.Duration
	maxPages int
	mapper   *identity.Mapper
	paths    claimPaths // OAuth2

	orgs   []string   // lower case
	teams  []teamName // lower case
	groups []string   // lower case
	// What Identity reads besides the user.
	readOrgs, readTeams, readGroups bool
}

type teamName struct{ org, slug string }

type claimPaths struct {
	subject, emailVerified, username, name string
}

// New checks cfg and returns a Fetcher. It makes no request.
func New(cfg Config) (*Fetcher, error) {
	f := &Fetcher{
		kind:     cfg.Kind,
		client:   cfg.HTTPClient,
		timeout:  cfg.Timeout,
		maxPages: cfg.MaxPages,
		mapper:   cfg.Mapper,
	}
	if f.timeout < 0 {
		return nil, &OptionError{"Timeout", "must not be negative"}
	}
	if f.timeout == 0 {
		f.timeout = DefaultTimeout
	}
	if f.maxPages < 0 {
		return nil, &OptionError{"MaxPages", "must not be negative"}
	}
	if f.maxPages == 0 {
		f.maxPages = DefaultMaxPages
	}
	if f.client == nil {
		f.client = httpx.NewClient(nil, f.timeout, MaxResponseBytes)
	}
	if f.mapper == nil {
		f.mapper = &identity.Mapper{}
	}
	var err error
	switch cfg.Kind {
	case GitHub:
		if f.api, err = baseURL("BaseURL", cfg.BaseURL, DefaultGitHubURL, ""); err != nil {
			return nil, err
		}
		if f.orgs, err = names("AllowOrgs", cfg.AllowOrgs, 1); err != nil {
			return nil, err
		}
		teams, err := names("AllowTeams", cfg.AllowTeams, 2)
		if err != nil {
			return nil, err
		}
		for _, t := range teams {
			org, slug, _ := strings.Cut(t, "/")
			f.teams = append(f.teams, teamName{org, slug})
		}
		f.readOrgs = len(f.orgs) > 0 || cfg.ReadGroups
		f.readTeams = len(f.teams) > 0 || cfg.ReadGroups
	case GitLab:
		if f.api, err = baseURL("BaseURL", cfg.BaseURL, DefaultGitLabURL, "/api/v4"); err != nil {
			return nil, err
		}
		if f.groups, err = names("AllowGroups", cfg.AllowGroups, -1); err != nil {
			return nil, err
		}
		f.readGroups = len(f.groups) > 0 || cfg.ReadGroups
	case OAuth2:
		if cfg.UserinfoURL == "" {
			return nil, &OptionError{"UserinfoURL", "required for the oauth2 kind"}
		}
		if f.api, err = endpointURL("UserinfoURL", cfg.UserinfoURL); err != nil {
			return nil, err
		}
		f.paths = claimPaths{
			subject:       or(cfg.SubjectPath, "sub"),
			emailVerified: or(cfg.EmailVerifiedPath, "email_verified"),
			username:      or(cfg.UsernamePath, "preferred_username"),
			name:          or(cfg.NamePath, "name"),
		}
	case "":
		return nil, &OptionError{"Kind", "required (github, gitlab or oauth2)"}
	default:
		return nil, &OptionError{"Kind", fmt.Sprintf("unknown kind %q (want github, gitlab or oauth2)", string(cfg.Kind))}
	}
	// Options that do not apply to the kind are refused, never ignored:
	// an ignored restriction is an open door (oauth2-proxy CVE-2021-21411).
	paths := cfg.SubjectPath != "" || cfg.EmailVerifiedPath != "" || cfg.UsernamePath != "" || cfg.NamePath != ""
	for _, o := range []struct {
		field string
		set   bool
		kinds []Kind
	}{
		{"BaseURL", cfg.BaseURL != "", []Kind{GitHub, GitLab}},
		{"UserinfoURL", cfg.UserinfoURL != "", []Kind{OAuth2}},
		{"SubjectPath, EmailVerifiedPath, UsernamePath, NamePath", paths, []Kind{OAuth2}},
		{"AllowOrgs", len(cfg.AllowOrgs) > 0, []Kind{GitHub}},
		{"AllowTeams", len(cfg.AllowTeams) > 0, []Kind{GitHub}},
		{"AllowGroups", len(cfg.AllowGroups) > 0, []Kind{GitLab}},
		{"ReadGroups", cfg.ReadGroups, []Kind{GitHub, GitLab}},
	} {
		if o.set && !slices.Contains(o.kinds, cfg.Kind) {
			return nil, &OptionError{o.field, fmt.Sprintf("does not apply to the %s kind", cfg.Kind)}
		}
	}
	return f, nil
}

// Scopes returns the scopes the authorization request must ask for, so
// that Identity can read what the configuration needs. GitHub:
// "user:email" (the verified addresses), plus "read:org" when
// organizations or teams are read. GitLab: "read_user" (GET /user), plus
// "read_api" when groups are read (GET /groups needs it). OAuth2: none.
func (f *Fetcher) Scopes() []string {
	switch f.kind {
	case GitHub:
		if f.readOrgs || f.readTeams {
			return []string{"user:email", "read:org"}
		}
		return []string{"user:email"}
	case GitLab:
		if f.readGroups {
			return []string{"read_user", "read_api"}
		}
		return []string{"read_user"}
	}
	return nil
}

// Identity finds out whose the access token is and checks the allow
// rules. A user the rules refuse is ErrNotMember; memberships that cannot
// be read are ErrMembershipUnknown; either way the user is refused. The
// Identity is returned with ErrNotMember and with the Mapper's errors
// (identity.ErrIncomplete, identity.ErrUnverifiedEmail), to name the user
// in a log; with any error it must not be taken for a signed-in user.
// Errors never contain the token.
func (f *Fetcher) Identity(ctx context.Context, accessToken string) (identity.Identity, error) {
	if !tokenChars(accessToken) {
		return identity.Identity{}, fmt.Errorf("%w: empty or not a token", ErrInvalidToken)
	}
	var claims map[string]any
	var allowed func() bool
	var err error
	switch f.kind {
	case GitHub:
		claims, allowed, err = f.github(ctx, accessToken)
	case GitLab:
		claims, allowed, err = f.gitlab(ctx, accessToken)
	default:
		claims, err = f.oauth2(ctx, accessToken)
		allowed = func() bool { return true }
	}
	if err != nil {
		return identity.Identity{}, err
	}
	id, err := f.mapper.Map(claims)
	if err != nil {
		return id, err
	}
	if !allowed() {
		return id, ErrNotMember
	}
	return id, nil
}

// tokenChars accepts a non-empty access token of visible ASCII (RFC 6750's
// b64token is narrower), so it can go into a header as it is.
func tokenChars(s string) bool {
	if s == "" || len(s) > 8192 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// baseURL checks an API root (default def when empty) and appends suffix
// to its path.
func baseURL(field, raw, def, suffix string) (*url.URL, error) {
	u, err := endpointURL(field, or(raw, def))
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, &OptionError{field, "must not have a query"}
	}
	u.Path = strings.TrimRight(u.Path, "/") + suffix
	u.RawPath = ""
	return u, nil
}

// endpointURL accepts an absolute http(s) URL with a host and without
// user info or fragment.
func endpointURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, &OptionError{field, fmt.Sprintf("%q is not an absolute http(s) URL without user info or fragment", raw)}
	}
	return u, nil
}

// names checks and lower-cases a list of organizations (segments 1),
// teams ("org/slug", segments 2) or group paths (segments -1: any number).
func names(field string, list []string, segments int) ([]string, error) {
	var out []string
	for _, n := range list {
		parts := strings.Split(n, "/")
		if segments > 0 && len(parts) != segments {
			want := map[int]string{1: "an organization login without /", 2: `"org/team-slug"`}[segments]
			return nil, &OptionError{field, fmt.Sprintf("%q is not %s", n, want)}
		}
		for _, p := range parts {
			if p == "" || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				return nil, &OptionError{field, fmt.Sprintf("%q has an empty part or white space", n)}
			}
		}
		out = append(out, strings.ToLower(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
