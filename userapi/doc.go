// Package userapi is who a user is at a plain OAuth 2.0 provider, which
// has no ID token: after the authorization code exchange (package flow),
// the access token is taken to the provider's REST API, and the answers
// become an identity.Identity, checked against membership rules.
//
// New checks a Config and returns a Fetcher; it makes no request. Scopes
// says what the authorization request must ask for. Identity calls the
// API with "Authorization: Bearer <token>", builds the claims below, maps
// them with the configured identity.Mapper (default: the user is the
// subject) and applies the allow rules.
//
// GitHub (Kind GitHub; BaseURL https://api.github.com, or
// https://HOST/api/v3 for GitHub Enterprise Server):
//
//   - sub: GET /user `id`, in decimal. Logins can be renamed and then
//     taken by someone else; the numeric ID never changes, so it is the
//     subject and, by default, the user.
//   - preferred_username: `login`; name: `name`.
//   - email: the primary address of GET /user/emails, email_verified its
//     `verified`. An unverified primary is kept but marked unverified
//     (Identity.EmailUnverified: never forwarded, never matched by e-mail
//     rules); another address, verified or not, is never used, nor the
//     profile's public `email`, which GitHub does not verify.
//   - groups, when memberships are read: the organizations (GET
//     /user/orgs) as "org", and the teams (GET /user/teams) as
//     "org/team-slug", in lower case (GitHub compares logins and slugs
//     ignoring case, so allow_groups entries are written in lower case).
//     Organizations are read when AllowOrgs or ReadGroups is set, teams
//     when AllowTeams or ReadGroups is; otherwise neither is requested.
//     An organization that restricts OAuth app access and has not
//     approved the app is not listed, so its members are refused.
//
// Scopes: "user:email", plus "read:org" when organizations or teams are
// read (GET /user needs none; the fields read are public). A GitHub App's
// user token ignores scopes: the app's permissions decide what these
// endpoints answer (for /user/emails, the "Email addresses" permission).
//
// GitLab (Kind GitLab; BaseURL https://gitlab.com or the self-managed
// instance; the API is BaseURL/api/v4):
//
//   - sub: GET /user `id`, in decimal (the same as GitLab's OpenID
//     Connect sub); preferred_username: `username`; name: `name`.
//   - email: `email`, the primary address; email_verified when
//     `confirmed_at` is set and the address is not GitLab's
//     temp-email-for-oauth placeholder.
//   - groups, when AllowGroups or ReadGroups is set: the `full_path` of
//     GET /groups?min_access_level=10 (Guest or above), in lower case.
//     An allowed group admits its members and the members of its
//     ancestors, whose membership GitLab inherits downwards.
//
// Scopes: "read_user", plus "read_api" when groups are read (GET /groups
// is not covered by read_user). GitLab's /oauth/userinfo would give the
// groups with the narrower "openid" scope, but that is OpenID Connect,
// which a GitLab deployment that can do it should use through package
// flow instead.
//
// OAuth2 (Kind OAuth2): GET UserinfoURL must answer a JSON object; the
// claims are that object, with sub, email_verified, preferred_username
// and name taken from SubjectPath, EmailVerifiedPath, UsernamePath and
// NamePath (dotted paths into nested objects). The user, e-mail and
// groups are the Mapper's claims, read from the same object. An e-mail is
// verified only when the email_verified path holds the JSON true, or,
// when it is absent, if the Mapper's AssumeEmailVerified says so. No
// scopes are added: the provider's own are configured with the client.
//
// Allow rules fail closed (oauth2-proxy CVE-2021-21411, where a group
// restriction silently stopped being enforced): a rule that does not
// apply to the Kind is a configuration error; a user outside the rules is
// ErrNotMember; memberships that cannot be read completely (an API error,
// a rate limit, an unexpected answer, more than MaxPages pages of 100) are
// ErrMembershipUnknown, never a partial list. With AllowOrgs and
// AllowTeams both set, the user must satisfy both.
//
// Every request has a deadline (Timeout), every answer is capped at 1 MiB
// and must be the documented JSON; numbers stay exact (json.Number).
// Lists are followed through the Link header (rel="next"), or GitLab's
// X-Next-Page, and only to pages on the API itself. Errors name the
// request and the status and belong to ErrInvalidToken (401),
// ErrProviderUnavailable (unreachable, 5xx, rate limited) or
// ErrBadResponse; they never contain the token or a response body.
package userapi
