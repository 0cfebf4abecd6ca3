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
func BearerToken(h http.Header) (string, error) {
	values := h["Authorization"]
	if len(values) == 0 {
		return "", ErrNoToken
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if len(values) > 1 && hasBearer(values[1:]) {
			return "", ErrMalformedAuthorization
		}
		return "", ErrNoToken
	}
	if len(values) > 1 {
		return "", ErrMalformedAuthorization
	}
	if len(values[0]) > maxAuthorization {
		return "", ErrTooLarge
	}
	token := strings.TrimLeft(rest, " ")
	if !isToken68(token) {
		return "", ErrMalformedAuthorization
	}
	return token, nil
}

func hasBearer(values []string) bool {
	for _, v := range values {
		if scheme, _, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
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
