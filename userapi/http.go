package userapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// apiError is a failed API call: the request (method and path, never the
// query, never the token), the status when there was one, and the
// categories (sentinels) it belongs to, then its cause.
type apiError struct {
	request string // "GET /user/orgs"
	status  int
	detail  string
	kinds   []error
}

var kindNames = map[error]string{
	ErrInvalidToken:        "token refused",
	ErrProviderUnavailable: "provider unavailable",
	ErrBadResponse:         "unusable answer",
	ErrMembershipUnknown:   "memberships unknown",
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString("userapi: ")
	b.WriteString(e.request)
	if e.status != 0 {
		fmt.Fprintf(&b, ": status %d", e.status)
	}
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	var kinds []string
	for _, k := range e.kinds {
		if n, ok := kindNames[k]; ok {
			kinds = append(kinds, n)
		}
	}
	if len(kinds) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(kinds, ", "))
		b.WriteString(")")
	}
	return b.String()
}

func (e *apiError) Unwrap() []error { return e.kinds }

// membership marks err, a failed read of memberships, ErrMembershipUnknown.
func membership(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		ae.kinds = append(ae.kinds, ErrMembershipUnknown)
		return ae
	}
	return fmt.Errorf("%w: %w", ErrMembershipUnknown, err)
}

func describe(u *url.URL) string { return "GET " + u.EscapedPath() }

// endpoint is the API URL of p (a path below the API root) with query q.
func (f *Fetcher) endpoint(p string, q url.Values) *url.URL {
	u := *f.api
	u.Path = f.api.Path + p
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return &u
}

// get fetches u with the token and returns the body and header of a 200
// answer, read up to MaxResponseBytes.
func (f *Fetcher) get(ctx context.Context, token string, u *url.URL) ([]byte, http.Header, error) {
	request := describe(u)
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(httpx.WithEndpoint(ctx, httpx.EndpointUserinfo), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, &apiError{request: request, detail: "unusable URL", kinds: []error{ErrBadResponse}}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", UserAgent)
	if f.kind == GitHub {
		// https://docs.github.com/en/rest/about-the-rest-api/api-versions
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, transportError(request, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, transportError(request, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, &apiError{request: request, detail: "answer larger than 1 MiB", kinds: []error{ErrBadResponse}}
	}
	switch st := resp.StatusCode; {
	case st == http.StatusOK:
		return body, resp.Header, nil
	case st == http.StatusUnauthorized:
		return nil, nil, &apiError{request: request, status: st, kinds: []error{ErrInvalidToken}}
	case st == http.StatusTooManyRequests || st == http.StatusForbidden && rateLimited(resp.Header):
		return nil, nil, &apiError{request: request, status: st, detail: "rate limited", kinds: []error{ErrProviderUnavailable}}
	case st >= 500:
		return nil, nil, &apiError{request: request, status: st, kinds: []error{ErrProviderUnavailable}}
	default:
		e := &apiError{request: request, status: st, kinds: []error{ErrBadResponse}}
		if st == http.StatusForbidden && resp.Header.Get("X-GitHub-SSO") != "" {
			// https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api
			e.detail = "an organization's SAML SSO requires the user to authorize the token"
		}
		return nil, nil, e
	}
}

// rateLimited tells a rate-limit 403 from a refusal: GitHub answers 403 or
// 429 with x-ratelimit-remaining: 0 (primary limit) or retry-after
// (secondary limit); GitLab answers 429 with RateLimit-Remaining.
func rateLimited(h http.Header) bool {
	return h.Get("X-RateLimit-Remaining") == "0" || h.Get("RateLimit-Remaining") == "0" || h.Get("Retry-After") != ""
}

// transportError classifies a failed request or body read: a redirect not
// followed or an oversized body is an unusable answer; anything else
// (connection, timeout, cancellation) is the provider being unavailable.
// The URL that net/http puts in its errors is left out.
func transportError(request string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	kind := ErrProviderUnavailable
	if errors.Is(err, httpx.ErrRedirect) || errors.Is(err, httpx.ErrBodyTooLarge) {
		kind = ErrBadResponse
	}
	return &apiError{request: request, detail: err.Error(), kinds: []error{kind, err}}
}

// badJSON is a 200 answer whose body is not what the API documents.
func badJSON(request, what string) error {
	return &apiError{request: request, detail: what, kinds: []error{ErrBadResponse}}
}

// decodeObject decodes a body that must be one JSON object, numbers kept
// as json.Number (exact, whatever their size).
func decodeObject(body []byte) (map[string]any, error) {
	var m map[string]any
	if err := decodeOne(body, '{', &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeOne decodes a body that must be exactly one JSON value starting
// with open ('{' or '[') into v.
func decodeOne(body []byte, open byte, v any) error {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != open {
		return errors.New("not the documented JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return errors.New("not the documented JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// list reads every page of the JSON array at p (with query q and
// per_page=100) into one slice, following the API's pagination for at
// most f.maxPages pages; a longer list is an error, never a silent cut.
func list[T any](ctx context.Context, f *Fetcher, token, p string, q url.Values) ([]T, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("per_page", strconv.Itoa(perPage))
	u := f.endpoint(p, q)
	var all []T
	for page := 1; ; page++ {
		body, h, err := f.get(ctx, token, u)
		if err != nil {
			return nil, err
		}
		var items []T
		if err := decodeOne(body, '[', &items); err != nil {
			return nil, badJSON(describe(u), err.Error())
		}
		all = append(all, items...)
		next, err := f.next(u, h)
		if err != nil || next == nil {
			return all, err
		}
		if page >= f.maxPages {
			return nil, &apiError{request: describe(u), detail: fmt.Sprintf("more than %d pages", f.maxPages), kinds: []error{ErrBadResponse}}
		}
		u = next
	}
}

// next returns the URL of the page after cur, or nil on the last page.
// GitHub says it in the Link header (rel="next"); GitLab in X-Next-Page
// (offset pagination; empty on the last page), else in Link. The next
// page must be on the API itself: the token goes with the request.
func (f *Fetcher) next(cur *url.URL, h http.Header) (*url.URL, error) {
	if vs, ok := h["X-Next-Page"]; ok && f.kind == GitLab {
		v := strings.TrimSpace(strings.Join(vs, ""))
		if v == "" {
			return nil, nil
		}
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			return nil, badJSON(describe(cur), "unusable X-Next-Page header")
		}
		u := *cur
		q := u.Query()
		q.Set("page", v)
		u.RawQuery = q.Encode()
		return &u, nil
	}
	target, err := linkNext(h.Values("Link"))
	if err != nil {
		return nil, badJSON(describe(cur), err.Error())
	}
	if target == "" {
		return nil, nil
	}
	u, err := cur.Parse(target)
	if err != nil || !f.onAPI(u) {
		return nil, badJSON(describe(cur), "the next page is not on the API")
	}
	return u, nil
}

// onAPI tells whether u is below the API root: same scheme, host and port,
// and a path under the root's.
func (f *Fetcher) onAPI(u *url.URL) bool {
	if u.Scheme != f.api.Scheme || u.User != nil || !strings.EqualFold(u.Hostname(), f.api.Hostname()) || port(u) != port(f.api) {
		return false
	}
	root := strings.TrimRight(f.api.Path, "/") + "/"
	return strings.HasPrefix(path.Clean("/"+u.Path), root) || path.Clean("/"+u.Path)+"/" == root
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

var errLink = errors.New("unreadable Link header")

// linkNext returns the target of the link whose relation types include
// "next" in Link header values (RFC 8288 §3), or "" when there is none.
// An unreadable header is an error: whether more pages follow is then
// unknown.
func linkNext(values []string) (string, error) {
	for _, s := range values {
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] != '<' {
				return "", errLink
			}
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return "", errLink
			}
			target := s[1:end]
			if strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' }) {
				return "", errLink
			}
			s = s[end+1:]
			next := false
			for {
				s = strings.TrimLeft(s, " \t")
				if s == "" || s[0] == ',' {
					break
				}
				if s[0] != ';' {
					return "", errLink
				}
				s = strings.TrimLeft(s[1:], " \t")
				i := strings.IndexAny(s, "=;, \t")
				if i < 0 {
					i = len(s)
				}
				name := s[:i]
				if name == "" {
					return "", errLink
				}
				s = strings.TrimLeft(s[i:], " \t")
				var value string
				if strings.HasPrefix(s, "=") {
					s = strings.TrimLeft(s[1:], " \t")
					var ok bool
					if value, s, ok = paramValue(s); !ok {
						return "", errLink
					}
				}
				if strings.EqualFold(name, "rel") && slices.ContainsFunc(strings.Fields(value), func(r string) bool {
					return strings.EqualFold(r, "next")
				}) {
					next = true
				}
			}
			if next {
				return target, nil
			}
		}
	}
	return "", nil
}

// paramValue reads a link parameter's value: a token or a quoted string
// (backslash escapes). It returns the value and the rest of s.
func paramValue(s string) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		i := strings.IndexAny(s, ";, \t")
		if i < 0 {
			i = len(s)
		}
		return s[:i], s[i:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i++; i == len(s) {
				return "", "", false
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
