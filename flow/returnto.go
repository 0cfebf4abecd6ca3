package flow

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// maxReturnTo bounds the length of a return-to URL.
const maxReturnTo = 4096

// HostPatterns are hosts trusted as redirect targets: exact names
// ("app.example.com", any port), names with a port ("app.example.com:8443",
// that port only) and wildcards ("*.example.com": any subdomain, not the
// apex). Matching ignores case.
type HostPatterns struct {
	patterns []hostPattern
}

type hostPattern struct {
	suffix string // ".example.com" for a wildcard; else empty
	host   string // exact host name when suffix is empty
	port   string // required port; empty: any
}

// NewHostPatterns parses host patterns, rejecting anything that is not a
// bare host name, optionally with a port or a leading "*." (no schemes,
// paths, user info or other wildcards).
func NewHostPatterns(list []string) (HostPatterns, error) {
	var hp HostPatterns
	for _, raw := range list {
		p, err := parseHostPattern(raw)
		if err != nil {
			return HostPatterns{}, err
		}
		hp.patterns = append(hp.patterns, p)
	}
	return hp, nil
}

func parseHostPattern(raw string) (hostPattern, error) {
	s := strings.ToLower(raw)
	var p hostPattern
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		p.suffix = "."
		s = rest
	}
	host, port := s, ""
	if h, pt, err := net.SplitHostPort(s); err == nil {
		host, port = h, pt
		if !isPort(port) {
			return p, fmt.Errorf("invalid port in host %q", raw)
		}
	}
	if !isHostName(host) || p.suffix != "" && !strings.Contains(host, ".") {
		return p, fmt.Errorf("invalid host %q: want a host name like app.example.com, app.example.com:8443 or *.example.com", raw)
	}
	if p.suffix != "" {
		// *.co.uk or *.github.io would trust every site registered there
		// (review SA2-19).
		if ps, _ := publicsuffix.PublicSuffix(host); ps == host {
			return p, fmt.Errorf("invalid host %q: %s is a public suffix, where anyone can register a site", raw, host)
		}
	}
	if p.suffix != "" {
		p.suffix += host
	} else {
		p.host = host
	}
	p.port = port
	return p, nil
}

func (hp HostPatterns) match(host, port string) bool {
	for _, p := range hp.patterns {
		if p.port != "" && p.port != port {
			continue
		}
		if p.suffix != "" {
			if len(host) > len(p.suffix) && strings.HasSuffix(host, p.suffix) {
				return true
			}
		} else if host == p.host {
			return true
		}
	}
	return false
}

// ErrUnsafeReturnTo is why ValidateReturnTo refused a target.
var ErrUnsafeReturnTo = errors.New("flow: return-to URL is not on this site")

// SafeReturnTo returns target if ValidateReturnTo accepts it, else "/".
func SafeReturnTo(target, requestHost string, trusted HostPatterns) string {
	if ValidateReturnTo(target, requestHost, trusted) != nil {
		return "/"
	}
	return target
}

// ValidateReturnTo accepts only targets a browser will resolve on this site:
//
//   - a path on the request's host: starts with a single "/", holds no
//     "//", "\", whitespace, control or non-ASCII bytes and no "." or ".."
//     segments — neither as written nor, for the path before the query,
//     after percent-decoding (where UTF-8 is fine but invisible and
//     separator characters are not; a path still encoded after three
//     rounds is refused). The query is kept as sent;
//   - an absolute http(s) URL without user info whose host equals
//     requestHost (host and port) or matches trusted.
//
// Anything else — "//evil.example", "/\evil.example", "https://evil.example",
// "javascript:…", "https:evil.example", "https:///evil.example" and their
// encoded forms — is ErrUnsafeReturnTo.
func ValidateReturnTo(target, requestHost string, trusted HostPatterns) error {
	if target == "" || len(target) > maxReturnTo || !cleanASCII(target) {
		return ErrUnsafeReturnTo
	}
	// Only what comes before the query decides where a browser goes: it is
	// checked as written and percent-decoded. The query and fragment are
	// kept as sent ("?q=hello%20world" is an ordinary search).
	path := pathOf(target)
	decoded, ok := unescapeFully(path)
	if !ok {
		return ErrUnsafeReturnTo
	}
	if strings.HasPrefix(target, "/") {
		if strings.HasPrefix(decoded, "//") || hasDotSegment(path) || hasDotSegment(decoded) {
			return ErrUnsafeReturnTo
		}
		if _, err := url.Parse(target); err != nil { // e.g. a broken escape in a fragment
			return ErrUnsafeReturnTo
		}
		return nil
	}
	lower := strings.ToLower(target)
	if !strings.HasPrefix(lower, "https://") && !strings.HasPrefix(lower, "http://") {
		return ErrUnsafeReturnTo
	}
	u, err := url.Parse(target)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host == "" {
		return ErrUnsafeReturnTo
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if !isHostName(host) && net.ParseIP(host) == nil || port != "" && !isPort(port) {
		return ErrUnsafeReturnTo
	}
	if strings.EqualFold(u.Host, requestHost) || trusted.match(host, port) {
		return nil
	}
	return ErrUnsafeReturnTo
}

// unescapeFully percent-decodes s until it stops changing (at most three
// rounds), requiring every round to be clean (see cleanDecoded).
func unescapeFully(s string) (string, bool) {
	for range 4 {
		d, err := url.PathUnescape(s)
		if err != nil || !cleanDecoded(d) {
			return "", false
		}
		if d == s {
			return s, true
		}
		s = d
	}
	return "", false
}

// cleanASCII reports whether s holds only visible ASCII and no backslash
// (browsers read "\" as "/" and drop tabs and newlines inside URLs).
func cleanASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// cleanDecoded is cleanASCII for percent-decoded text, which may also hold
// UTF-8 (international paths) but no invisible or separator characters.
func cleanDecoded(s string) bool {
	for _, r := range s {
		if r < utf8.RuneSelf {
			if r <= ' ' || r == 0x7f || r == '\\' {
				return false
			}
			continue
		}
		if r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zs, unicode.Zl, unicode.Zp) {
			return false
		}
	}
	return true
}

func pathOf(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i]
	}
	return s
}

func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func isHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
