package session

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Limits of the login cookies.
const (
	// maxLogins bounds concurrent login cookies (one per tab mid-login).
	maxLogins = 8
	// loginMaxLen bounds a sealed login cookie: one cookie, like a chunk.
	loginMaxLen = chunkSize
	// maxStateLen bounds the state parameter we look a login cookie up by.
	maxStateLen = 512
)

// Errors of the login cookie.
var (
	ErrNoLogin = errors.New("session: no login in progress for this state")
)

// Login is one login in progress: what the callback needs to finish it.
// It lives in a short-lived sealed cookie named after its state.
type Login struct {
	// State is the OAuth 2.0 state parameter sent to the provider.
	State string `json:"s"`
	// Nonce is the OpenID Connect nonce the ID token must carry.
	Nonce string `json:"n"`
	// Verifier is the PKCE code verifier (RFC 7636).
	Verifier string `json:"v"`
	// Provider is the name of the provider the login was started at ("" for
	// a gateway with one provider written flat). The callback finishes the
	// login there: it comes from this sealed cookie, never from the
	// callback's URL.
	Provider string `json:"p,omitempty"`
	// ReturnTo is where the user goes after the login. It is validated
	// again when used.
	ReturnTo string `json:"r,omitempty"`
	// ACRValues, when set, were asked for as acr_values: the ID token's
	// acr must be one of them (OpenID Connect Core §3.1.3.7 item 12).
	ACRValues []string `json:"a,omitempty"`
	// Created is when the login started (Unix seconds).
	Created int64 `json:"t"`
}

func (l *Login) marshal() ([]byte, error) { return json.Marshal(l) }

func unmarshalLogin(b []byte) (*Login, error) {
	var l Login
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if l.State == "" || l.Nonce == "" || l.Verifier == "" {
		return nil, ErrNoLogin
	}
	return &l, nil
}

// fresh reports whether the login started within ttl before now (and not
// in the future beyond a minute of clock skew).
func (l *Login) fresh(now time.Time, ttl time.Duration) bool {
	created := time.Unix(l.Created, 0)
	return l.Created > 0 && !created.After(now.Add(time.Minute)) && now.Before(created.Add(ttl))
}

// SaveLogin seals login into its own short-lived cookie, named after its
// state, so logins in several tabs do not overwrite each other. When r
// already carries the maximum number of login cookies, the oldest are
// expired. A ReturnTo too long for the cookie is shortened (see below), so
// any URL a browser can send starts a login.
func (c *Cookies) SaveLogin(w http.ResponseWriter, r *http.Request, login *Login) error {
	name, err := c.loginName(login.State)
	if err != nil {
		return err
	}
	sealed, err := c.sealLogin(name, login)
	if errors.Is(err, ErrTooLarge) {
		// A return-to too long for a cookie (long report and search URLs)
		// is cut to its path, then to "/": the login still works, landing
		// on less than the whole URL.
		path, _, _ := strings.Cut(login.ReturnTo, "?")
		for _, shorter := range []string{path, "/"} {
			login.ReturnTo = shorter
			if sealed, err = c.sealLogin(name, login); !errors.Is(err, ErrTooLarge) {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	c.expireOldLogins(w, r)
	http.SetCookie(w, c.loginCookie(name, sealed, int(c.opts.LoginTTL/time.Second)))
	return nil
}

func (c *Cookies) sealLogin(name string, login *Login) (string, error) {
	plain, err := login.marshal()
	if err != nil {
		return "", fmt.Errorf("session: encoding login: %w", err)
	}
	return c.loginCodec.Seal(name, plain)
}

// TakeLogin finds the login cookie for state, expires it (a login cookie is
// used once), and returns the unexpired login it holds. The caller must
// still compare login.State with state in constant time.
func (c *Cookies) TakeLogin(w http.ResponseWriter, r *http.Request, state string) (*Login, error) {
	name, err := c.loginName(state)
	if err != nil {
		return nil, err
	}
	var value string
	found := false
	c.scan(r, func(n, v string) {
		if n == name && !found {
			value, found = v, true
		}
	})
	if !found {
		return nil, ErrNoLogin
	}
	http.SetCookie(w, c.loginCookie(name, "", -1))
	plain, _, err := c.loginCodec.Unseal(name, value)
	if err != nil {
		return nil, ErrNoLogin
	}
	login, err := unmarshalLogin(plain)
	if err != nil {
		return nil, ErrNoLogin
	}
	if !login.fresh(c.opts.Now(), c.opts.LoginTTL) {
		return nil, ErrNoLogin
	}
	return login, nil
}

// expireOldLogins keeps at most maxLogins-1 login cookies on r (so that one
// more fits), expiring undecodable ones first, then the oldest. Only the
// first few dozen are looked at; a request carrying more is not a browser.
func (c *Cookies) expireOldLogins(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		name    string
		created int64
	}
	var logins []entry
	c.scan(r, func(name, value string) {
		if !c.isLoginName(name) || len(logins) >= 8*maxLogins {
			return
		}
		e := entry{name: name}
		if plain, _, err := c.loginCodec.Unseal(name, value); err == nil {
			if l, err := unmarshalLogin(plain); err == nil {
				e.created = l.Created
			}
		}
		logins = append(logins, e)
	})
	excess := len(logins) - (maxLogins - 1)
	if excess <= 0 {
		return
	}
	slices.SortFunc(logins, func(a, b entry) int { return int(a.created - b.created) })
	for _, e := range logins[:excess] {
		http.SetCookie(w, c.loginCookie(e.name, "", -1))
	}
}

// loginCookie is host-only and Lax whatever the session cookie's settings:
// the provider's redirect back is a cross-site top-level navigation that
// Strict would strip, and the callback always returns to the login's host.
func (c *Cookies) loginCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   !c.opts.Insecure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// loginName is the login cookie's name for state: Name_login_ and 16 hex
// digits of the state's SHA-256, a valid cookie name whatever the state.
func (c *Cookies) loginName(state string) (string, error) {
	if state == "" || len(state) > maxStateLen {
		return "", ErrNoLogin
	}
	sum := sha256.Sum256([]byte(state))
	var buf [64]byte
	name := append(buf[:0], c.loginPrefix...)
	return string(hex.AppendEncode(name, sum[:8])), nil
}

func (c *Cookies) isLoginName(name string) bool {
	return strings.HasPrefix(name, c.loginPrefix)
}
