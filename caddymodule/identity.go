package caddymodule

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/flow"
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
// the upstream never sees a client-supplied identity. Headers configured
// with `header` are added to them.
var identityHeaders = []string{headerUser, headerEmail, headerPreferredUsername, headerGroups, headerAccessToken}

// stripHeaders deletes every header whose name equals one of names
// ignoring case and treating "_" as "-". It allocates nothing.
func stripHeaders(h http.Header, names []string) {
	for name := range h {
		for _, id := range names {
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
	emailUnverified                               bool
	groups                                        []string
	claims                                        map[string][]string // the claims the config maps or checks
	accessToken                                   string
	fromSession                                   bool   // a cookie session (not a bearer token)
	groupsJoined                                  string // groups, comma-separated (set by setIdentity)
}

func sessionIdentity(s *session.Session) identity {
	return identity{
		user: s.User, subject: s.Subject, email: s.Email,
		preferredUsername: s.PreferredUsername, name: s.Name,
		emailUnverified: s.EmailUnverified, groups: s.Groups, claims: s.Claims,
		accessToken: s.AccessToken, fromSession: true,
	}
}

// claimsIdentity maps a bearer token's claims through the *_claim
// settings, as a login does.
func (g *Gatehouse) claimsIdentity(c *verify.Claims, token string) identity {
	all := c.Map()
	id := identity{
		user:              claimString(all, g.UserClaim),
		subject:           c.Subject,
		email:             claimString(all, g.EmailClaim),
		emailUnverified:   all["email_verified"] == false,
		preferredUsername: claimString(all, "preferred_username"),
		name:              claimString(all, "name"),
		groups:            claimStrings(all, g.GroupsClaim),
		accessToken:       token,
	}
	if len(g.claimsNeeded) > 0 {
		id.claims = make(map[string][]string, len(g.claimsNeeded))
		for _, n := range g.claimsNeeded {
			if v := claimStrings(all, n); v != nil {
				id.claims[n] = v
			}
		}
	}
	return id
}

// setIdentity hands the identity to the next handlers: identity headers
// (only those with a value), the mapped `header`s, the access token when
// asked, and the placeholders Caddy's own authentication handler sets,
// {http.auth.user.id} and {http.auth.user.<claim>} — resolved on use by
// one provider rather than stored one by one.
func (g *Gatehouse) setIdentity(r *http.Request, repl *caddy.Replacer, id *identity) {
	id.groupsJoined = strings.Join(id.groups, ",")
	// One backing array for the header values; each slice is capped at
	// its length, so a later append copies instead of writing into it.
	vals := make([]string, 0, 6+len(g.headerMap))
	set := func(name, value string) {
		if value != "" {
			vals = append(vals, value)
			n := len(vals)
			r.Header[name] = vals[n-1 : n : n]
		}
	}
	set(headerUser, id.user)
	set(headerEmail, id.email)
	set(headerPreferredUsername, id.preferredUsername)
	set(headerGroups, id.groupsJoined)
	if g.PassAccessToken {
		set(headerAccessToken, id.accessToken)
	}
	if g.PassAuthorization && id.accessToken != "" {
		set("Authorization", "Bearer "+id.accessToken)
	}
	for _, m := range g.headerMap {
		set(m.header, strings.Join(id.claims[m.claim], ","))
	}
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.auth.user.")
		if !ok {
			return nil, false
		}
		return g.placeholder(id, name)
	})
}

// placeholder is the value of {http.auth.user.<name>}.
func (g *Gatehouse) placeholder(id *identity, name string) (any, bool) {
	switch name {
	case "id":
		return id.user, true
	case "sub":
		return id.subject, true
	case "email":
		return id.email, true
	case "preferred_username":
		return id.preferredUsername, true
	case "name":
		return id.name, true
	case "groups":
		return id.groupsJoined, true
	}
	for _, m := range g.headerMap {
		if m.claim == name {
			return strings.Join(id.claims[name], ","), true
		}
	}
	return nil, false
}

// headerMapping is one `header NAME CLAIM`.
type headerMapping struct {
	header, claim string
}

// sessionClaims knows, per session cookie name, which claims the
// gatehouse handlers sharing that cookie map (`header`) or check
// (`allow_claim`), so that whichever handler finishes a login keeps them
// all in the session, and per-path rules in other blocks can use them.
var sessionClaims = &claimRegistry{names: map[string]map[string]int{}}

type claimRegistry struct {
	mu    sync.Mutex
	names map[string]map[string]int // cookie name → claim → users
}

func (c *claimRegistry) add(cookie string, claims []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.names[cookie]
	if m == nil {
		m = map[string]int{}
		c.names[cookie] = m
	}
	for _, n := range claims {
		m[n]++
	}
}

func (c *claimRegistry) remove(cookie string, claims []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.names[cookie]
	for _, n := range claims {
		if m[n]--; m[n] <= 0 {
			delete(m, n)
		}
	}
	if len(m) == 0 {
		delete(c.names, cookie)
	}
}

func (c *claimRegistry) get(cookie string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.names[cookie]))
	for n := range c.names[cookie] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
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

// claimStrings returns a claim that is a string, number, boolean or an
// array of strings (other elements are skipped), each made header-safe.
func claimStrings(claims map[string]any, name string) []string {
	v, _ := lookupClaim(claims, name)
	if arr, ok := v.([]any); ok {
		var out []string
		for _, e := range arr {
			if s, ok := e.(string); ok {
				if s = headerSafe(s); s != "" {
					out = append(out, s)
				}
			}
		}
		return out
	}
	if s := claimString(claims, name); s != "" {
		return []string{s}
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

// emailUnverified reports whether the provider said email_verified: false.
func emailUnverified(claims map[string]any) bool {
	v, ok := claims["email_verified"].(bool)
	return ok && !v
}

// newSessionFrom builds a session from a login or refresh result: old is
// nil for a new login (fresh ID: no fixation) and the session being
// refreshed otherwise (ID, login time and unchanged tokens carry over).
// Identity claims are (re)mapped whenever the result has claims, so a
// refresh brings group changes in (Pomerium CVE-2021-41230).
func (g *Gatehouse) newSessionFrom(old *session.Session, res *flow.Result) (*session.Session, error) {
	s := &session.Session{ID: session.NewID(), Created: g.now().Unix()}
	if old != nil {
		cp := *old
		s = &cp
	}
	if res.IDToken != nil {
		s.Subject = res.IDToken.Subject
		if res.IDToken.SessionID != "" {
			s.SID = res.IDToken.SessionID
		}
	}
	if len(res.Claims) > 0 {
		user := claimString(res.Claims, g.UserClaim)
		if user == "" || s.Subject == "" {
			return nil, errIncompleteIdentity
		}
		s.User = user
		s.Email = claimString(res.Claims, g.EmailClaim)
		s.EmailVerified = res.Claims["email_verified"] == true
		s.EmailUnverified = emailUnverified(res.Claims)
		s.PreferredUsername = claimString(res.Claims, "preferred_username")
		s.Name = claimString(res.Claims, "name")
		s.Groups = claimStrings(res.Claims, g.GroupsClaim)
		s.Claims = nil
		for _, n := range sessionClaims.get(g.CookieName) {
			if v := claimStrings(res.Claims, n); v != nil {
				if s.Claims == nil {
					s.Claims = map[string][]string{}
				}
				s.Claims[n] = v
			}
		}
	}
	if s.Subject == "" || s.User == "" {
		return nil, errIncompleteIdentity
	}
	t := res.Tokens
	s.AccessToken = t.AccessToken
	if t.RefreshToken != "" {
		s.RefreshToken = t.RefreshToken
	}
	if t.IDToken != "" {
		s.IDToken = t.IDToken
	}
	switch {
	case !t.Expiry.IsZero():
		s.AccessExpiry = t.Expiry.Unix()
	case res.IDToken != nil:
		// No expires_in: the ID token's expiry bounds the session.
		s.AccessExpiry = res.IDToken.Expiry.Unix()
	}
	return s, nil
}
