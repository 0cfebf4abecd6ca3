package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// Identity headers set for the upstream, canonical form.
const (
	headerUser              = "X-Forwarded-User"
	headerEmail             = "X-Forwarded-Email"
	headerPreferredUsername = "X-Forwarded-Preferred-Username"
	headerGroups            = "X-Forwarded-Groups"
	headerAccessToken       = "X-Forwarded-Access-Token"
)

// identityHeaders are deleted from every request before anything else, in
// any letter case and with "_" for "-" (CVE-2025-64484, CVE-2026-52845):
// the upstream never sees a client-supplied identity.
var identityHeaders = []string{headerUser, headerEmail, headerPreferredUsername, headerGroups, headerAccessToken}

// stripIdentityHeaders deletes every header whose name equals one of
// identityHeaders ignoring case and treating "_" as "-". It allocates
// nothing.
func stripIdentityHeaders(h http.Header) {
	for name := range h {
		for _, id := range identityHeaders {
			if sameHeaderName(name, id) {
				delete(h, name)
				break
			}
		}
	}
}

func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// identity is who a request is, from a session or a bearer token.
type identity struct {
	user, subject, email, preferredUsername, name string
	groups                                        []string
}

func sessionIdentity(s *session.Session) identity {
	return identity{
		user: s.User, subject: s.Subject, email: s.Email,
		preferredUsername: s.PreferredUsername, name: s.Name, groups: s.Groups,
	}
}

// claimsIdentity maps a bearer token's claims through the *_claim
// settings, as a login does.
func (g *Gatehouse) claimsIdentity(c *verify.Claims) identity {
	all := c.Map()
	return identity{
		user:              claimString(all, g.UserClaim),
		subject:           c.Subject,
		email:             claimString(all, g.EmailClaim),
		preferredUsername: claimString(all, "preferred_username"),
		name:              claimString(all, "name"),
		groups:            claimStrings(all, g.GroupsClaim),
	}
}

// set hands the identity to the next handlers: identity headers (only
// those with a value) and the placeholders Caddy's own authentication
// handler sets, {http.auth.user.id} and {http.auth.user.<claim>}.
func (id identity) set(r *http.Request, repl *caddy.Replacer) {
	groups := strings.Join(id.groups, ",")
	setHeader(r.Header, headerUser, id.user)
	setHeader(r.Header, headerEmail, id.email)
	setHeader(r.Header, headerPreferredUsername, id.preferredUsername)
	setHeader(r.Header, headerGroups, groups)

	repl.Set("http.auth.user.id", id.user)
	repl.Set("http.auth.user.sub", id.subject)
	repl.Set("http.auth.user.email", id.email)
	repl.Set("http.auth.user.preferred_username", id.preferredUsername)
	repl.Set("http.auth.user.name", id.name)
	repl.Set("http.auth.user.groups", groups)
}

func setHeader(h http.Header, name, value string) {
	if value != "" {
		h[name] = []string{value}
	}
}

// lookupClaim finds a claim by name; a dotted name that is not itself a
// claim reaches into nested objects ("realm_access.roles").
func lookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// claimString returns a claim as header-safe text: strings, numbers and
// booleans; anything else is "".
func claimString(claims map[string]any, name string) string {
	v, _ := lookupClaim(claims, name)
	switch v := v.(type) {
	case string:
		return headerSafe(v)
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}

// claimStrings returns a claim that is a string or an array of strings
// (other elements are skipped), each made header-safe.
func claimStrings(claims map[string]any, name string) []string {
	v, _ := lookupClaim(claims, name)
	switch v := v.(type) {
	case string:
		if s := headerSafe(v); s != "" {
			return []string{s}
		}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				if s = headerSafe(s); s != "" {
					out = append(out, s)
				}
			}
		}
		return out
	}
	return nil
}

// headerSafe drops control characters, which are not allowed in header
// values (and could split headers at a careless upstream).
func headerSafe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= ' ' && c != 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}
