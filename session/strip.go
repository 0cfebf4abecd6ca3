package session

import (
	"net/http"
	"strings"
)

// StripCookies removes our cookies (session chunks and login cookies) from
// r's Cookie header(s), so the upstream never sees them. Other cookies are
// passed through unchanged.
func (c *Cookies) StripCookies(r *http.Request) {
	values := r.Header["Cookie"]
	if len(values) == 0 {
		return
	}
	var kept []string
	changed := false
	for _, line := range values {
		out, lineChanged := c.stripLine(line)
		changed = changed || lineChanged
		if out != "" {
			kept = append(kept, out)
		}
	}
	if !changed {
		return
	}
	if len(kept) == 0 {
		r.Header.Del("Cookie")
		return
	}
	r.Header["Cookie"] = kept
}

// stripLine removes our cookies from one Cookie header line and reports
// whether it removed any.
func (c *Cookies) stripLine(line string) (string, bool) {
	var b strings.Builder
	changed := false
	for rest := line; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "=")
		if c.isOwnCookie(strings.TrimSpace(name)) {
			changed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	if !changed {
		return line, false
	}
	return b.String(), true
}

// isOwnCookie reports whether a cookie of this name is ours (a session
// chunk or a login cookie), so it is kept from upstreams.
func (c *Cookies) isOwnCookie(name string) bool {
	return c.chunkIndex(name) >= 0 || c.isLoginName(name)
}

// scan calls fn for every cookie in r's Cookie headers that could be one of
// ours, in order, without allocating.
func (c *Cookies) scan(r *http.Request, fn func(name, value string)) {
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			name, value, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			name = strings.TrimSpace(name)
			if !strings.HasPrefix(name, c.opts.Name) {
				continue
			}
			value = strings.TrimSpace(value)
			if len(value) > 1 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			fn(name, value)
		}
	}
}
