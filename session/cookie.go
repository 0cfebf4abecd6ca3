package session

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults and limits of the cookie store.
const (
	DefaultName     = "_gatehouse"
	DefaultLifetime = 168 * time.Hour
	DefaultLoginTTL = 15 * time.Minute

	// chunkSize keeps name, value and attributes of each cookie under the
	// 4096 bytes browsers store per cookie.
	chunkSize = 3800
	// maxChunks bounds a session at about 37 KB of cookies; a larger one
	// is ErrTooLarge (and the Cookie header stays within server limits).
	maxChunks = 10
	// maxLogins bounds concurrent login cookies (one per tab mid-login).
	maxLogins = 8
	// loginMaxLen bounds a sealed login cookie.
	loginMaxLen = 2048
	// maxStateLen bounds the state parameter we look a login cookie up by.
	maxStateLen = 512
)

// Errors of the login cookie.
var (
	ErrNoLogin = errors.New("session: no login in progress for this state")
)

// Options configures a CookieStore. Zero values select the documented defaults.
type Options struct {
	// Name of the session cookie; chunks are Name_1, Name_2, …; login
	// cookies are Name_login_<id>. Default "_gatehouse".
	Name string
	// Domain of the session cookie. Default: host-only.
	Domain string
	// SameSite of the session cookie. Default http.SameSiteLaxMode.
	SameSite http.SameSite
	// Insecure drops the Secure attribute (plain-HTTP development only).
	Insecure bool
	// Lifetime is the absolute session lifetime since login. Default 168h.
	Lifetime time.Duration
	// LoginTTL is how long a started login may take. Default 15m.
	LoginTTL time.Duration
	// Secrets are the cookie secrets (each ≥ 32 bytes); the first seals,
	// all unseal. Required.
	Secrets [][]byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Binding ties every cookie to a context (for gatehouse: the issuer
	// and the client id): a cookie sealed under another binding does not
	// unseal, even with the same secrets and cookie name, so a session made
	// for one provider or client is never accepted by another. Default "".
	Binding string
	// CacheSize bounds the decoded-session cache: a cookie seen before is
	// not unsealed again (entries hold the sealed value, a few KB). 0
	// selects DefaultCacheSize; negative disables the cache.
	CacheSize int
}

// DefaultCacheSize is the default number of decoded sessions kept.
const DefaultCacheSize = 4096

// CookieStore keeps sessions in sealed, chunked cookies and logins in
// sealed per-login cookies. It holds no per-user state, so any number of
// instances with the same secrets serve the same users.
type CookieStore struct {
	opts         Options
	sessionCodec *Codec
	loginCodec   *Codec
	chunkPrefix  string // Name + "_"
	loginPrefix  string // Name + "_login_"

	cache *lru.Cache[uint64, decoded] // nil: no cache
	seed  maphash.Seed
}

// decoded is a cached Load result. sealed is kept to compare in full: only
// the very same cookie bytes hit, so a tampered cookie never does.
type decoded struct {
	sealed string
	sess   *Session
	rotate bool
	until  time.Time
}

// NewCookieStore checks opts and derives the cookie keys.
func NewCookieStore(opts Options) (*CookieStore, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.SameSite == 0 || opts.SameSite == http.SameSiteDefaultMode {
		opts.SameSite = http.SameSiteLaxMode
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.LoginTTL == 0 {
		opts.LoginTTL = DefaultLoginTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := CheckCookieName(opts.Name); err != nil {
		return nil, err
	}
	if err := CheckCookieDomain(opts.Domain); err != nil {
		return nil, err
	}
	if opts.Lifetime < time.Minute || opts.LoginTTL < time.Second {
		return nil, errors.New("session: lifetime must be at least a minute")
	}
	if opts.Insecure && opts.SameSite == http.SameSiteNoneMode {
		return nil, errors.New("session: SameSite=None requires Secure cookies")
	}
	if opts.Insecure && (strings.HasPrefix(opts.Name, "__Secure-") || strings.HasPrefix(opts.Name, "__Host-")) {
		return nil, fmt.Errorf("session: cookie name %q requires Secure cookies", opts.Name)
	}
	if opts.Domain != "" && strings.HasPrefix(opts.Name, "__Host-") {
		return nil, fmt.Errorf("session: cookie name %q forbids a cookie domain", opts.Name)
	}
	s := &CookieStore{
		opts:        opts,
		chunkPrefix: opts.Name + "_",
		loginPrefix: opts.Name + "_login_",
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.CacheSize > 0 {
		s.cache, _ = lru.New[uint64, decoded](opts.CacheSize)
		s.seed = maphash.MakeSeed()
	}
	s.opts = opts
	var err error
	if s.sessionCodec, err = NewCodec("session\x00"+opts.Binding, opts.Secrets, chunkSize*maxChunks); err != nil {
		return nil, err
	}
	if s.loginCodec, err = NewCodec("login\x00"+opts.Binding, opts.Secrets, loginMaxLen); err != nil {
		return nil, err
	}
	return s, nil
}

// Lifetime returns the absolute session lifetime.
func (s *CookieStore) Lifetime() time.Duration { return s.opts.Lifetime }

// Load reads, reassembles and unseals the session cookie(s) of r. Any
// reason the cookies are unusable is ErrNoSession (or an error wrapping
// it). rotate reports that the session was sealed with an older secret and
// should be saved again. A cookie decoded before is answered from the
// cache until the session's lifetime ends; the returned session may be
// shared, so callers must not modify it.
func (s *CookieStore) Load(r *http.Request) (sess *Session, rotate bool, err error) {
	var chunks [maxChunks]string
	var found [maxChunks]bool
	s.scan(r, func(name, value string) {
		if i := s.chunkIndex(name); i >= 0 && !found[i] {
			chunks[i], found[i] = value, true
		}
	})
	if !found[0] {
		return nil, false, ErrNoSession
	}
	// A chunked session says in its first cookie how many chunks it has
	// ("3.…"): stray chunk cookies (left over, or set by a sibling domain)
	// are ignored rather than spoiling a valid session.
	n := 1
	if i := strings.IndexByte(chunks[0], '.'); i >= 0 {
		count, err := strconv.Atoi(chunks[0][:i])
		if err != nil || count < 2 || count > maxChunks || i > 2 {
			return nil, false, ErrInvalid
		}
		for j := 1; j < count; j++ {
			if !found[j] {
				return nil, false, ErrInvalid
			}
		}
		chunks[0], n = chunks[0][i+1:], count
	}
	parts := chunks[:n]
	now := s.opts.Now()
	var key uint64
	if s.cache != nil {
		// Hash and compare the chunks in place: no join on a cache hit.
		var h maphash.Hash
		h.SetSeed(s.seed)
		for _, c := range parts {
			h.WriteString(c)
		}
		key = h.Sum64()
		if e, ok := s.cache.Get(key); ok && equalJoined(e.sealed, parts) {
			if now.Before(e.until) {
				return e.sess, e.rotate, nil
			}
			s.cache.Remove(key)
		}
	}
	sealed := joinChunks(parts)
	plain, keyIndex, err := s.sessionCodec.Unseal(s.opts.Name, sealed)
	if err != nil {
		return nil, false, err
	}
	sess, err = unmarshalSession(plain)
	if err != nil {
		return nil, false, err
	}
	if err := sess.CheckLifetime(now, s.opts.Lifetime); err != nil {
		return nil, false, err
	}
	if s.cache != nil {
		s.cache.Add(key, decoded{sealed: sealed, sess: sess, rotate: keyIndex > 0, until: sess.ExpiresAt(s.opts.Lifetime)})
	}
	return sess, keyIndex > 0, nil
}

// Save seals sess into the session cookie(s) on w, chunked as needed, and
// expires any further chunks r still carries.
func (s *CookieStore) Save(w http.ResponseWriter, r *http.Request, sess *Session) error {
	plain, err := sess.marshal()
	if err != nil {
		return fmt.Errorf("session: encoding: %w", err)
	}
	sealed, err := s.sessionCodec.Seal(s.opts.Name, plain)
	if err != nil {
		return err
	}
	maxAge := int(sess.ExpiresAt(s.opts.Lifetime).Sub(s.opts.Now()) / time.Second)
	if maxAge <= 0 {
		return ErrExpired
	}
	chunks := splitChunks(sealed, chunkSize)
	if len(chunks) > 1 {
		chunks[0] = strconv.Itoa(len(chunks)) + "." + chunks[0]
	}
	for i, c := range chunks {
		http.SetCookie(w, s.sessionCookie(s.chunkName(i), c, maxAge))
	}
	s.scan(r, func(name, _ string) {
		if i := s.chunkIndex(name); i >= len(chunks) {
			http.SetCookie(w, s.sessionCookie(name, "", -1))
		}
	})
	return nil
}

// ClearSession expires every session chunk r carries, leaving logins in
// progress (other tabs) alone.
func (s *CookieStore) ClearSession(w http.ResponseWriter, r *http.Request) {
	s.scan(r, func(name, _ string) {
		if s.chunkIndex(name) >= 0 {
			http.SetCookie(w, s.sessionCookie(name, "", -1))
		}
	})
}

// ClearAll expires every session chunk and login cookie r carries.
func (s *CookieStore) ClearAll(w http.ResponseWriter, r *http.Request) {
	s.ClearSession(w, r)
	s.scan(r, func(name, _ string) {
		if s.isLoginName(name) {
			http.SetCookie(w, s.loginCookie(name, "", -1))
		}
	})
}

// HasSession reports whether r carries a session cookie at all (valid or not).
func (s *CookieStore) HasSession(r *http.Request) bool {
	has := false
	s.scan(r, func(name, _ string) {
		if name == s.opts.Name {
			has = true
		}
	})
	return has
}

// IsOwnCookie reports whether a cookie of this name belongs to the store
// (a session chunk or a login cookie), so it can be kept from upstreams.
func (s *CookieStore) IsOwnCookie(name string) bool {
	return s.chunkIndex(name) >= 0 || s.isLoginName(name)
}

// StripCookies removes the store's cookies from r's Cookie header(s), so the
// upstream never sees them. Other cookies are passed through unchanged.
func (s *CookieStore) StripCookies(r *http.Request) {
	values := r.Header["Cookie"]
	if len(values) == 0 {
		return
	}
	var kept []string
	changed := false
	for _, line := range values {
		out, lineChanged := s.stripLine(line)
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

func (s *CookieStore) stripLine(line string) (string, bool) {
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
		if s.IsOwnCookie(strings.TrimSpace(name)) {
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

// SaveLogin seals login into its own short-lived cookie, named after its
// state, so logins in several tabs do not overwrite each other. When r
// already carries the maximum number of login cookies, the oldest are
// expired.
func (s *CookieStore) SaveLogin(w http.ResponseWriter, r *http.Request, login *Login) error {
	name, err := s.loginName(login.State)
	if err != nil {
		return err
	}
	plain, err := login.marshal()
	if err != nil {
		return fmt.Errorf("session: encoding login: %w", err)
	}
	sealed, err := s.loginCodec.Seal(name, plain)
	if err != nil {
		return err
	}
	s.expireOldLogins(w, r)
	http.SetCookie(w, s.loginCookie(name, sealed, int(s.opts.LoginTTL/time.Second)))
	return nil
}

// TakeLogin finds the login cookie for state, expires it (a login cookie is
// used once), and returns the unexpired login it holds. The caller must
// still compare login.State with state in constant time.
func (s *CookieStore) TakeLogin(w http.ResponseWriter, r *http.Request, state string) (*Login, error) {
	name, err := s.loginName(state)
	if err != nil {
		return nil, err
	}
	var value string
	found := false
	s.scan(r, func(n, v string) {
		if n == name && !found {
			value, found = v, true
		}
	})
	if !found {
		return nil, ErrNoLogin
	}
	http.SetCookie(w, s.loginCookie(name, "", -1))
	plain, _, err := s.loginCodec.Unseal(name, value)
	if err != nil {
		return nil, ErrNoLogin
	}
	login, err := unmarshalLogin(plain)
	if err != nil {
		return nil, ErrNoLogin
	}
	if !login.fresh(s.opts.Now(), s.opts.LoginTTL) {
		return nil, ErrNoLogin
	}
	return login, nil
}

// expireOldLogins keeps at most maxLogins-1 login cookies on r (so that one
// more fits), expiring undecodable ones first, then the oldest. Only the
// first few dozen are looked at; a request carrying more is not a browser.
func (s *CookieStore) expireOldLogins(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		name    string
		created int64
	}
	var logins []entry
	s.scan(r, func(name, value string) {
		if !s.isLoginName(name) || len(logins) >= 8*maxLogins {
			return
		}
		e := entry{name: name}
		if plain, _, err := s.loginCodec.Unseal(name, value); err == nil {
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
		http.SetCookie(w, s.loginCookie(e.name, "", -1))
	}
}

func (s *CookieStore) sessionCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   s.opts.Domain,
		MaxAge:   maxAge,
		Secure:   !s.opts.Insecure,
		HttpOnly: true,
		SameSite: s.opts.SameSite,
	}
}

// loginCookie is host-only and Lax whatever the session cookie's settings:
// the provider's redirect back is a cross-site top-level navigation that
// Strict would strip, and the callback always returns to the login's host.
func (s *CookieStore) loginCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   !s.opts.Insecure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func (s *CookieStore) chunkName(i int) string {
	if i == 0 {
		return s.opts.Name
	}
	return s.chunkPrefix + strconv.Itoa(i)
}

// chunkIndex returns i for Name (0) and Name_i (1 ≤ i < maxChunks, no
// leading zeros), else -1.
func (s *CookieStore) chunkIndex(name string) int {
	if name == s.opts.Name {
		return 0
	}
	rest, ok := strings.CutPrefix(name, s.chunkPrefix)
	if !ok || len(rest) == 0 || len(rest) > 2 || rest[0] == '0' {
		return -1
	}
	i := 0
	for _, c := range []byte(rest) {
		if c < '0' || c > '9' {
			return -1
		}
		i = i*10 + int(c-'0')
	}
	if i >= maxChunks {
		return -1
	}
	return i
}

func (s *CookieStore) isLoginName(name string) bool {
	return strings.HasPrefix(name, s.loginPrefix)
}

func (s *CookieStore) loginName(state string) (string, error) {
	if state == "" || len(state) > maxStateLen {
		return "", ErrNoLogin
	}
	sum := sha256.Sum256([]byte(state))
	return s.loginPrefix + hex.EncodeToString(sum[:8]), nil
}

// scan calls fn for every cookie in r's Cookie headers that could be one of
// ours, in order, without allocating.
func (s *CookieStore) scan(r *http.Request, fn func(name, value string)) {
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			name, value, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			name = strings.TrimSpace(name)
			if !strings.HasPrefix(name, s.opts.Name) {
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

// splitChunks cuts sealed into pieces of at most size bytes.
func splitChunks(sealed string, size int) []string {
	if len(sealed) <= size {
		return []string{sealed}
	}
	chunks := make([]string, 0, (len(sealed)+size-1)/size)
	for len(sealed) > size {
		chunks = append(chunks, sealed[:size])
		sealed = sealed[size:]
	}
	if sealed != "" {
		chunks = append(chunks, sealed)
	}
	return chunks
}

// equalJoined reports whether s equals the concatenation of parts.
func equalJoined(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
	}
	return s == ""
}

// joinChunks is the inverse of splitChunks.
func joinChunks(chunks []string) string {
	if len(chunks) == 1 {
		return chunks[0]
	}
	return strings.Join(chunks, "")
}

// CheckCookieName accepts an RFC 6265 token of at most 64 bytes.
func CheckCookieName(name string) error {
	bad := name == "" || len(name) > 64
	for _, c := range []byte(name) {
		bad = bad || c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0
	}
	if bad {
		return fmt.Errorf("session: invalid cookie name %q: want up to 64 letters, digits and -_.!#$%%&'*+^`|~", name)
	}
	return nil
}

// CheckCookieDomain accepts "" (host-only) or a DNS name, optionally with a
// leading dot.
func CheckCookieDomain(domain string) error {
	if domain == "" {
		return nil
	}
	d := strings.TrimPrefix(domain, ".")
	bad := d == "" || len(d) > 253 || !strings.Contains(d, ".") && d != "localhost"
	for label := range strings.SplitSeq(d, ".") {
		bad = bad || label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-'
		for _, c := range []byte(label) {
			bad = bad || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
		}
	}
	if bad {
		return fmt.Errorf("session: invalid cookie domain %q: want a DNS name like example.com", domain)
	}
	return nil
}
