package session

import (
	"net/http"
	"strconv"
)

// Cookies is the cookie transport of a Manager: it seals the value a Store
// gives into the session cookie (split into numbered chunks when large),
// keeps logins in progress in login cookies, expires both, and keeps them
// from upstreams. It holds no per-user state, so any number of instances
// with the same secrets read each other's cookies. A Manager embeds it.
type Cookies struct {
	opts         Options // checked and completed by New
	sessionCodec *Codec
	loginCodec   *Codec
	chunkPrefix  string // Name + "_"
	loginPrefix  string // Name + "_login_"
}

// newCookies derives the cookie keys for opts, already checked by New.
func newCookies(opts Options) (*Cookies, error) {
	c := &Cookies{
		opts:        opts,
		chunkPrefix: opts.Name + "_",
		loginPrefix: opts.Name + "_login_",
	}
	var err error
	if c.sessionCodec, err = NewCodec("session\x00"+opts.Binding, opts.Secrets, chunkSize*maxChunks); err != nil {
		return nil, err
	}
	if c.loginCodec, err = NewCodec("login\x00"+opts.Binding, opts.Secrets, loginMaxLen); err != nil {
		return nil, err
	}
	return c, nil
}

// ClearSession expires every session chunk r carries, leaving logins in
// progress (other tabs) alone.
func (c *Cookies) ClearSession(w http.ResponseWriter, r *http.Request) {
	c.scan(r, func(name, _ string) {
		if c.chunkIndex(name) >= 0 {
			http.SetCookie(w, c.sessionCookie(name, "", -1))
		}
	})
}

// ClearAll expires every session chunk and login cookie r carries.
func (c *Cookies) ClearAll(w http.ResponseWriter, r *http.Request) {
	c.ClearSession(w, r)
	c.scan(r, func(name, _ string) {
		if c.isLoginName(name) {
			http.SetCookie(w, c.loginCookie(name, "", -1))
		}
	})
}

// HasSession reports whether r carries a session cookie at all (valid or not).
func (c *Cookies) HasSession(r *http.Request) bool {
	has := false
	c.scan(r, func(name, _ string) {
		if name == c.opts.Name {
			has = true
		}
	})
	return has
}

// readSealed collects the chunks of the session cookie r carries into buf
// and returns those that make up the session, in order. No session cookie
// is ErrNoSession; a chunk count that does not match the chunks is
// ErrInvalid. The result is a slice of buf, so a caller's buf can stay on
// its stack.
func (c *Cookies) readSealed(r *http.Request, buf *[maxChunks]string) ([]string, error) {
	var found [maxChunks]bool
	c.scan(r, func(name, value string) {
		if i := c.chunkIndex(name); i >= 0 && !found[i] {
			buf[i], found[i] = value, true
		}
	})
	if !found[0] {
		return nil, ErrNoSession
	}
	n, first, err := parseChunks(buf[0], found[:])
	if err != nil {
		return nil, err
	}
	buf[0] = first
	return buf[:n], nil
}

// unseal authenticates and decrypts a sealed session value (the chunks
// joined). rotate reports that an older secret sealed it. Any failure is
// ErrInvalid.
func (c *Cookies) unseal(sealed string) (plain []byte, rotate bool, err error) {
	plain, keyIndex, err := c.sessionCodec.Unseal(c.opts.Name, sealed)
	if err != nil {
		return nil, false, err
	}
	return plain, keyIndex > 0, nil
}

// writeSealed seals plain into the session cookie(s) on w with maxAge
// seconds to live, chunked as needed, and expires any further chunks r
// still carries. A sealed value over maxChunks cookies is ErrTooLarge.
func (c *Cookies) writeSealed(w http.ResponseWriter, r *http.Request, plain []byte, maxAge int) error {
	sealed, err := c.sessionCodec.Seal(c.opts.Name, plain)
	if err != nil {
		return err
	}
	chunks := splitChunks(sealed, chunkSize)
	if len(chunks) > 1 {
		chunks[0] = strconv.Itoa(len(chunks)) + "." + chunks[0]
	}
	for i, ch := range chunks {
		http.SetCookie(w, c.sessionCookie(c.chunkName(i), ch, maxAge))
	}
	c.scan(r, func(name, _ string) {
		if i := c.chunkIndex(name); i >= len(chunks) {
			http.SetCookie(w, c.sessionCookie(name, "", -1))
		}
	})
	return nil
}

func (c *Cookies) sessionCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   c.opts.Domain,
		MaxAge:   maxAge,
		Secure:   !c.opts.Insecure,
		HttpOnly: true,
		SameSite: c.opts.SameSite,
	}
}

// chunkName is the name of chunk i: Name, then Name_1, Name_2, ….
func (c *Cookies) chunkName(i int) string {
	if i == 0 {
		return c.opts.Name
	}
	return c.chunkPrefix + strconv.Itoa(i)
}
