// Package httpx builds the HTTP client gatehouse uses to talk to an OpenID
// provider: every call has a deadline, every response body is capped, and
// redirects are limited, so a slow or hostile provider can neither hang a
// login nor exhaust memory.
package httpx

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Defaults for NewClient.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20 // 1 MiB: far above any discovery document, JWKS or token response
	maxRedirects        = 3
)

// ErrBodyTooLarge is returned while reading a response body that exceeds the cap.
var ErrBodyTooLarge = errors.New("httpx: response body exceeds the size limit")

// NewClient returns an *http.Client whose requests time out after timeout and
// whose response bodies fail with ErrBodyTooLarge after maxBody bytes. A zero
// timeout or maxBody selects the default. base may be nil (http.DefaultTransport).
func NewClient(base http.RoundTripper, timeout time.Duration, maxBody int64) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     &capTransport{base: base, max: maxBody},
		CheckRedirect: checkRedirect,
	}
}

// ErrRedirect is a redirect the provider client does not follow.
var ErrRedirect = errors.New("httpx: redirect not followed")

// checkRedirect follows a provider's redirects only where nothing secret
// can leak (review SA2-10): GET requests only — a token or revocation POST
// carries codes, verifiers, refresh tokens and maybe the client secret,
// which a 307/308 would re-send — on the same host, never from https to
// http, and at most maxRedirects of them.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0]
	switch {
	case len(via) >= maxRedirects:
		return fmt.Errorf("%w: more than %d", ErrRedirect, maxRedirects)
	case first.Method != http.MethodGet || req.Method != http.MethodGet:
		return fmt.Errorf("%w: a %s request is never redirected", ErrRedirect, first.Method)
	case first.URL.Scheme == "https" && req.URL.Scheme != "https":
		return fmt.Errorf("%w: from https to %s", ErrRedirect, req.URL.Scheme)
	case !strings.EqualFold(req.URL.Host, first.URL.Host):
		return fmt.Errorf("%w: to another host", ErrRedirect)
	}
	return nil
}

// capTransport wraps every response body in a reader that fails past max bytes.
type capTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, ErrBodyTooLarge
	}
	resp.Body = &capReader{rc: resp.Body, left: t.max}
	return resp, nil
}

type capReader struct {
	rc   io.ReadCloser
	left int64
}

func (r *capReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		// One more byte tells a body of exactly max bytes from a longer one.
		var one [1]byte
		n, err := r.rc.Read(one[:])
		if n > 0 {
			return 0, ErrBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *capReader) Close() error { return r.rc.Close() }

// ReadAll reads resp's body (already capped by the client) and closes it.
func ReadAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
