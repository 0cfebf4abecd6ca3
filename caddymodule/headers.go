package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/identity"
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

// stripRequest deletes what a client sent that could pass for gatehouse's
// word upstream: the identity headers (and every `header` name) in any
// case and with "_" or "." for "-"; the same names in trailers, which
// reverse_proxy forwards (review SA2-09); and Connection tokens naming
// them, which would have reverse_proxy delete the headers gatehouse sets
// (review SA2-08).
func (g *Gatehouse) stripRequest(r *http.Request) {
	stripHeaders(r.Header, g.strip)
	if conn := r.Header["Connection"]; len(conn) > 0 {
		r.Header["Connection"] = stripTokens(conn, g.strip)
	}
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength < 0 || r.Trailer != nil) {
		stripHeaders(r.Trailer, g.strip)
		r.Body = &trailerScrubber{ReadCloser: r.Body, r: r, names: g.strip}
	}
}

// trailerScrubber strips trailers as they arrive: net/http adds them to
// the request once the body has been read to its end.
type trailerScrubber struct {
	io.ReadCloser
	r     *http.Request
	names []string
}

func (t *trailerScrubber) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err != nil {
		stripHeaders(t.r.Trailer, t.names)
	}
	return n, err
}

// stripTokens removes from comma-separated header values the tokens that
// name one of names. Values without such a token (the usual "keep-alive")
// are returned as they are, without allocating.
func stripTokens(values, names []string) []string {
	if !slices.ContainsFunc(values, func(v string) bool { return namesOneOf(v, names) }) {
		return values
	}
	out := values[:0:0]
	for _, v := range values {
		var kept []string
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !namesOneOf(tok, names) {
				kept = append(kept, tok)
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, ", "))
		}
	}
	return out
}

// namesOneOf reports whether the comma-separated list v holds a token that
// is one of names.
func namesOneOf(v string, names []string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.TrimSpace(tok)
		for _, n := range names {
			if sameHeaderName(tok, n) {
				return true
			}
		}
	}
	return false
}

// stripHeaders deletes every header whose name equals one of names
// ignoring case and treating "_" and "." as "-". It allocates nothing.
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
		if x == '_' || x == '.' {
			x = '-'
		}
		if y == '_' || y == '.' {
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

// reservedHeaders may not be set with `header`: gatehouse's own identity
// headers, and headers that would change what the request means.
var reservedHeaders = append([]string{
	"Authorization", "Cookie", "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
	"Te", "Upgrade", "Proxy-Authorization", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
}, identityHeaders...)

// checkHeaderName accepts a header name for `header`: a token that is not
// one of reservedHeaders.
func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invalid header name %q", name)
		}
	}
	for _, r := range reservedHeaders {
		if sameHeaderName(name, r) {
			return fmt.Errorf("header %q is not one `header` may set", name)
		}
	}
	return nil
}

// headerMapping is one `header NAME CLAIM`.
type headerMapping struct {
	header, claim string
}

// principal is an authenticated request: who it is, and with what.
type principal struct {
	id          *identity.Identity // shared with the session cache: read only
	accessToken string
	session     bool      // signed in with a session cookie, not a bearer token
	provider    *provider // whose user it is: its allow_* rules apply too (nil: a bearer token of another issuer)
	notAfter    time.Time // when the session or token ends: the assertion's exp never passes it
}

// setIdentity hands the identity to the next handlers: identity headers
// (only those with a value), the mapped `header`s, the access token when
// asked, and the placeholders Caddy's own authentication handler sets,
// {http.auth.user.id} and {http.auth.user.<claim>} — resolved on use by
// one provider rather than stored one by one.
func (g *Gatehouse) setIdentity(r *http.Request, p principal) {
	id := p.id
	groups := joinList(id.Groups)
	// One backing array for the header values; each slice is capped at
	// its length, so a later append copies instead of writing into it.
	vals := make([]string, 0, 7+len(g.headerMap))
	set := func(name, value string) {
		if value != "" {
			vals = append(vals, value)
			n := len(vals)
			r.Header[name] = vals[n-1 : n : n]
		}
	}
	set(headerUser, id.User)
	set(headerEmail, id.VerifiedEmail())
	set(headerPreferredUsername, id.PreferredUsername)
	set(headerGroups, groups)
	if g.PassAccessToken {
		set(headerAccessToken, p.accessToken)
	}
	if g.PassAuthorization && p.accessToken != "" {
		set("Authorization", "Bearer "+p.accessToken)
	}
	for _, m := range g.headerMap {
		set(m.header, joinList(id.Claims[m.claim]))
	}
	var signed string
	if g.signer != nil {
		var err error
		if signed, err = g.assertionFor(r, &p); err != nil {
			// The session or token ends within the second: the upstream
			// gets no assertion, and the next request a login or a 401.
			g.logger.Debug("no identity assertion", zap.Error(err))
		}
		set(g.assertionHeader, signed)
	}
	prov := p.provider // not p: the closure would move all of p to the heap
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.auth.user.")
		if !ok {
			return nil, false
		}
		if name == "assertion" && g.signer != nil {
			return signed, true
		}
		if name == "provider" {
			if prov == nil {
				return "", true
			}
			return prov.name, true
		}
		return g.placeholder(id, groups, name)
	})
}

// setAnonymous answers every {http.auth.user.*} placeholder with "" for a
// request that goes on without an identity: Caddy leaves an unknown
// placeholder in header values as literal text, and an upstream that trusts
// `Remote-User: {http.auth.user.id}` would take that for a user (review
// SA2-03).
func setAnonymous(r *http.Request) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(anonymousPlaceholders)
	}
}

func anonymousPlaceholders(key string) (any, bool) {
	if strings.HasPrefix(key, "http.auth.user.") {
		return "", true
	}
	return nil, false
}

// placeholder is the value of {http.auth.user.<name>}: "" for a claim the
// configuration does not map (never the literal placeholder, SA2-03).
func (g *Gatehouse) placeholder(id *identity.Identity, groups, name string) (any, bool) {
	switch name {
	case "id":
		return id.User, true
	case "sub":
		return id.Subject, true
	case "email":
		return id.VerifiedEmail(), true
	case "preferred_username":
		return id.PreferredUsername, true
	case "name":
		return id.Name, true
	case "groups":
		return groups, true
	}
	return joinList(id.Claims[name]), true
}

// joinList joins list values with commas for a header, leaving out values
// that hold a comma themselves: "a,b" would reach the upstream as two
// values (review SA2-26). The rules still see every value.
func joinList(values []string) string {
	for _, v := range values {
		if strings.IndexByte(v, ',') >= 0 {
			kept := make([]string, 0, len(values))
			for _, v := range values {
				if strings.IndexByte(v, ',') < 0 {
					kept = append(kept, v)
				}
			}
			return strings.Join(kept, ",")
		}
	}
	return strings.Join(values, ",")
}
