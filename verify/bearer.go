package verify

import (
	"errors"
	"net/http"
	"strings"
)

// Errors of BearerToken.
var (
	// ErrNoToken: the request carries no bearer token (no Authorization
	// header, or another scheme such as Basic).
	ErrNoToken = errors.New("verify: no bearer token")
	// ErrMalformedAuthorization: an Authorization header names the Bearer
	// scheme but is not `Bearer <token68>` (RFC 6750 §2.1), or the request
	// has several Authorization headers.
	ErrMalformedAuthorization = errors.New("verify: malformed Authorization header")
)

// maxAuthorization bounds the Authorization header looked at: a token
// longer than any Verifier accepts is refused before anything parses it.
const maxAuthorization = 64 << 10

// BearerToken extracts the token from an `Authorization: Bearer` header
// (the scheme case-insensitive). Tokens are taken from this header only,
// never from the query string or a form (RFC 6750 §2.3: they end up in
// logs). An oversized header is ErrTooLarge.
//
// Only the canonical form is a token: one header, `Bearer`, spaces, a
// token68. Any other value that names the Bearer scheme — a second header
// line, a list ("Basic x, Bearer y"), a tab for the space, "XBearer y" — is
// ErrMalformedAuthorization, not ErrNoToken: a request gatehouse did not
// check must not carry a token a lenient upstream would find (Python's
// split(), PHP's /Bearer\s(\S+)/, Laravel's bearerToken()).
func BearerToken(h http.Header) (string, error) {
	values := h["Authorization"]
	if len(values) == 0 {
		return "", ErrNoToken
	}
	if len(values) == 1 {
		if scheme, rest, _ := strings.Cut(values[0], " "); strings.EqualFold(scheme, "Bearer") {
			if len(values[0]) > maxAuthorization {
				return "", ErrTooLarge
			}
			if token := strings.TrimLeft(rest, " "); isToken68(token) {
				return token, nil
			}
			return "", ErrMalformedAuthorization
		}
	}
	for _, v := range values {
		if namesScheme(v, "bearer") {
			return "", ErrMalformedAuthorization
		}
	}
	return "", ErrNoToken
}

// AccessToken is BearerToken for an API that also takes DPoP-bound tokens
// (RFC 9449 §7.1): `Authorization: DPoP <token68>` gives the token and
// dpop true, and any other value that names the DPoP scheme is
// ErrMalformedAuthorization, as for Bearer.
func AccessToken(h http.Header) (token string, dpop bool, err error) {
	token, err = BearerToken(h)
	if !errors.Is(err, ErrNoToken) {
		return token, false, err
	}
	values := h["Authorization"]
	if len(values) == 1 {
		if scheme, rest, _ := strings.Cut(values[0], " "); strings.EqualFold(scheme, "DPoP") {
			if len(values[0]) > maxAuthorization {
				return "", false, ErrTooLarge
			}
			if token := strings.TrimLeft(rest, " "); isToken68(token) {
				return token, true, nil
			}
			return "", false, ErrMalformedAuthorization
		}
	}
	for _, v := range values {
		if namesScheme(v, "dpop") {
			return "", false, ErrMalformedAuthorization
		}
	}
	return "", false, ErrNoToken
}

// namesScheme reports whether v holds word (lower case; matched in any
// case) followed by whitespace, a comma or the end: where a lenient parser
// finds a token.
func namesScheme(v, word string) bool {
	for i := 0; i+len(word) <= len(v); i++ {
		if !strings.EqualFold(v[i:i+len(word)], word) {
			continue
		}
		if j := i + len(word); j == len(v) || v[j] == ' ' || v[j] == '\t' || v[j] == ',' || v[j] == '\r' || v[j] == '\n' || v[j] == '\v' || v[j] == '\f' {
			return true
		}
	}
	return false
}

// token68Chars marks the bytes of RFC 7235's token68 before its padding.
var token68Chars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		t[c] = true
	}
	return t
}()

// isToken68 checks RFC 7235's token68: 1*( ALPHA / DIGIT / "-" / "." / "_"
// / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for ; i < len(s) && token68Chars[s[i]]; i++ {
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
