package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newManager(t testing.TB, c *clock, secrets ...[]byte) *Manager {
	t.Helper()
	s, err := New(Options{Secrets: secrets, Now: c.now, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// save runs Save and returns the cookies it set, as a browser would store them.
func save(t testing.TB, s *Manager, r *http.Request, sess *Session) []*http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if err := s.Save(w, r, sess); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return w.Result().Cookies()
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"bad name", Options{Name: "a b", Secrets: [][]byte{secretA}}},
		{"name with semicolon", Options{Name: "a;b", Secrets: [][]byte{secretA}}},
		{"bad domain", Options{Domain: "exa mple.com", Secrets: [][]byte{secretA}}},
		{"domain with scheme", Options{Domain: "https://example.com", Secrets: [][]byte{secretA}}},
		{"SameSite=None without Secure", Options{SameSite: http.SameSiteNoneMode, Insecure: true, Secrets: [][]byte{secretA}}},
		{"__Host- without Secure", Options{Name: "__Host-gh", Insecure: true, Secrets: [][]byte{secretA}}},
		{"__Host- with domain", Options{Name: "__Host-gh", Domain: "example.com", Secrets: [][]byte{secretA}}},
		{"__Secure- without Secure", Options{Name: "__Secure-gh", Insecure: true, Secrets: [][]byte{secretA}}},
		{"no secret", Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestLoadSaveRoundTrip(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	sess := testSession(epoch)
	sess.EmailUnverified = true
	cookies := save(t, s, request(nil), sess)
	if len(cookies) != 1 || cookies[0].Name != "_gatehouse" {
		t.Fatalf("want one _gatehouse cookie, got %v", cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Fatalf("cookie attributes: %+v", ck)
	}
	if ck.MaxAge != 3600 {
		t.Fatalf("Max-Age = %d, want the remaining lifetime 3600", ck.MaxAge)
	}
	got, rotate, err := s.Load(request(cookies))
	if err != nil || rotate {
		t.Fatalf("Load: rotate=%v err=%v", rotate, err)
	}
	if got.ID != sess.ID || got.Subject != sess.Subject || got.AccessToken != "at-secret" ||
		strings.Join(got.Groups, ",") != "admins,staff" || !got.EmailUnverified {
		t.Fatalf("loaded %+v", got)
	}
}

func TestLoadNoSession(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	good := save(t, s, request(nil), testSession(epoch))[0].Value
	for _, tc := range []struct {
		name, cookie string
	}{
		{"no cookie", ""},
		{"empty value", "_gatehouse="},
		{"garbage", "_gatehouse=garbage"},
		{"not base64", "_gatehouse=!!!!"},
		{"truncated", "_gatehouse=" + good[:len(good)/2]},
		{"truncated by one", "_gatehouse=" + good[:len(good)-1]},
		{"extended", "_gatehouse=" + good + "A"},
		{"under another name", "other=" + good},
		{"huge", "_gatehouse=" + strings.Repeat("A", 200000)},
		{"only a chunk", "_gatehouse_1=" + good},
		{"quoted garbage", `_gatehouse="x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.cookie != "" {
				r.Header.Set("Cookie", tc.cookie)
			}
			sess, _, err := s.Load(r)
			if !errors.Is(err, ErrNoSession) || sess != nil {
				t.Fatalf("got %v, %v; want ErrNoSession", sess, err)
			}
		})
	}
}

// TestLoadTampered flips every byte of a sealed session, by position class:
// the timestamp at the start, the ciphertext in the middle, the MAC at the
// end, and (for a chunked session) the second chunk. Every flip must be "no
// session"; the only tolerated exception is a non-canonical base64 variant
// that decodes to the very same bytes (and so to the same session).
func TestLoadTampered(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	for _, tc := range []struct {
		name  string
		extra int // claim bytes added, to force chunking
	}{
		{"one chunk", 0},
		{"three chunks", 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := testSession(epoch)
			if tc.extra > 0 {
				sess.Claims = map[string][]string{"big": {noise(tc.extra)}}
			}
			cookies := save(t, s, request(nil), sess)
			var joined string
			for _, ck := range cookies {
				joined += ck.Value
			}
			classes := map[string]int{}
			accepted := 0
			for i := range len(joined) {
				class := "mac"
				switch {
				case i < 16:
					class = "timestamp"
				case i < len(joined)-60:
					class = "ciphertext"
				}
				if i >= chunkSize {
					class += " (later chunk)"
				}
				classes[class]++
				flipped := []byte(joined)
				flipped[i] = flipBase64(flipped[i])
				chunks := splitChunks(string(flipped), chunkSize)
				var cs []*http.Cookie
				for j, v := range chunks {
					cs = append(cs, &http.Cookie{Name: s.chunkName(j), Value: v})
				}
				got, _, err := s.Load(request(cs))
				if err == nil {
					if got.ID != sess.ID || got.AccessToken != sess.AccessToken {
						t.Fatalf("byte %d (%s) flipped: a different session was accepted", i, class)
					}
					accepted++
					continue
				}
				if !errors.Is(err, ErrNoSession) {
					t.Fatalf("byte %d (%s) flipped: %v", i, class, err)
				}
			}
			if accepted > 0 {
				t.Fatalf("%d flipped bytes still unsealed", accepted)
			}
			t.Logf("flipped %d bytes by class %v", len(joined), classes)
		})
	}
}

// TestModifiedCookieByteRefused (issue 10, defect 8): a change to any byte
// of a session cookie is refused, also one that only touches the base64
// padding bits (it used to decode to the same bytes and be accepted), a
// line break or a non-canonical chunk count.
func TestModifiedCookieByteRefused(t *testing.T) {
	c := &clock{epoch}
	s, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, extra := range []int{0, 1, 2, 5000} { // the sealed length varies the padding
		sess := testSession(epoch)
		sess.Name = strings.Repeat("n", extra)
		cookies := save(t, s, request(nil), sess)
		first := cookies[0].Value
		for i := range len(first) {
			k := strings.IndexByte(alphabet, first[i])
			var variants []byte
			if k >= 0 {
				variants = []byte{alphabet[k^1], alphabet[k^2], alphabet[k^3]}
			}
			variants = append(variants, '=')
			for _, v := range variants {
				if v == first[i] {
					continue
				}
				changed := []byte(first)
				changed[i] = v
				cs := append([]*http.Cookie{{Name: cookies[0].Name, Value: string(changed)}}, cookies[1:]...)
				if _, _, err := s.Load(request(cs)); err == nil {
					t.Fatalf("extra %d: byte %d changed from %q to %q: still accepted", extra, i, first[i], v)
				}
			}
		}
		if len(cookies) == 1 {
			// Go's lenient base64 skips line breaks; the codec must not.
			if _, _, err := s.sessionCodec.Unseal(s.opts.Name, first[:10]+"\r\n"+first[10:]); err == nil {
				t.Fatal("a sealed value with a line break inserted still unseals")
			}
		}
		if len(cookies) > 1 {
			for _, prefix := range []string{"+", "0", " "} {
				cs := append([]*http.Cookie{{Name: cookies[0].Name, Value: prefix + first}}, cookies[1:]...)
				if _, _, err := s.Load(request(cs)); err == nil {
					t.Fatalf("chunk count written as %q: still accepted", prefix+first[:2])
				}
			}
		}
	}
}

func flipBase64(b byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, b)
	if i < 0 {
		return 'A'
	}
	return alphabet[(i+1)%len(alphabet)]
}

func TestWrongKey(t *testing.T) {
	c := &clock{epoch}
	cookies := save(t, newManager(t, c, secretA), request(nil), testSession(epoch))
	if _, _, err := newManager(t, c, secretB).Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("foreign key accepted: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	c := &clock{epoch}
	old := newManager(t, c, secretB)
	cookies := save(t, old, request(nil), testSession(epoch))

	rotated := newManager(t, c, secretA, secretB)
	sess, rotate, err := rotated.Load(request(cookies))
	if err != nil || !rotate {
		t.Fatalf("old-key cookie after rotation: rotate=%v err=%v", rotate, err)
	}
	resealed := save(t, rotated, request(cookies), sess)
	if _, rotate, err := newManager(t, c, secretA).Load(request(resealed)); err != nil || rotate {
		t.Fatalf("re-sealed cookie not under the new key: rotate=%v err=%v", rotate, err)
	}

	removed := newManager(t, c, secretA)
	if _, _, err := removed.Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("cookie sealed with a removed secret accepted: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	cookies := save(t, s, request(nil), testSession(epoch))
	for _, tc := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"fresh", epoch, true},
		{"one second before the end", epoch.Add(time.Hour - time.Second), true},
		{"at the end", epoch.Add(time.Hour), false},
		{"long after", epoch.Add(1000 * time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = tc.at
			_, _, err := s.Load(request(cookies))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrExpired) {
				t.Fatalf("err = %v, want ErrExpired", err)
			}
		})
	}

	// A shorter configured lifetime applies to sessions sealed under a longer one.
	c.t = epoch.Add(30 * time.Minute)
	short, _ := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: 10 * time.Minute})
	if _, _, err := short.Load(request(cookies)); !errors.Is(err, ErrExpired) {
		t.Fatalf("lifetime not enforced from the login time: %v", err)
	}

	// A session claiming to be created in the future is refused.
	c.t = epoch
	future := save(t, s, request(nil), testSession(epoch.Add(time.Hour)))
	c.t = epoch
	if _, _, err := s.Load(request(future)); !errors.Is(err, ErrExpired) {
		t.Fatalf("future session accepted: %v", err)
	}
}

func TestSaveExpiredSession(t *testing.T) {
	c := &clock{epoch.Add(2 * time.Hour)}
	s := newManager(t, c, secretA)
	if err := s.Save(httptest.NewRecorder(), request(nil), testSession(epoch)); !errors.Is(err, ErrExpired) {
		t.Fatalf("saved a session past its lifetime: %v", err)
	}
}

func TestDecodedSessionCache(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	cookies := save(t, s, request(nil), testSession(epoch))
	first, _, err := s.Load(request(cookies))
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := s.Load(request(cookies))
	if err != nil || second != first {
		t.Fatalf("the second Load did not come from the cache: %v", err)
	}
	if s.cache.Len() != 1 {
		t.Fatalf("%d cache entries", s.cache.Len())
	}

	// A tampered cookie never hits, even right after the real one.
	v := []byte(cookies[0].Value)
	v[len(v)/2] = flipBase64(v[len(v)/2])
	if sess, _, err := s.Load(request([]*http.Cookie{{Name: "_gatehouse", Value: string(v)}})); err == nil && sess == first {
		t.Fatal("a tampered cookie was served from the cache")
	}

	// Never past the session's lifetime.
	c.t = epoch.Add(time.Hour)
	if _, _, err := s.Load(request(cookies)); !errors.Is(err, ErrExpired) {
		t.Fatalf("served from the cache after the lifetime: %v", err)
	}

	// The rotation flag comes back with a cached session too.
	c.t = epoch
	old := newManager(t, c, secretB)
	oldCookies := save(t, old, request(nil), testSession(epoch))
	rotated := newManager(t, c, secretA, secretB)
	for range 2 {
		if _, rotate, err := rotated.Load(request(oldCookies)); err != nil || !rotate {
			t.Fatalf("rotate = %v, err = %v", rotate, err)
		}
	}

	// Disabled.
	off, _ := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: -1})
	a, _, _ := off.Load(request(cookies))
	b, _, _ := off.Load(request(cookies))
	if a == b || off.cache != nil {
		t.Fatal("the cache is on although disabled")
	}
}

func TestDecodedSessionCacheIsBounded(t *testing.T) {
	c := &clock{epoch}
	s, _ := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: 8})
	for range 50 {
		if _, _, err := s.Load(request(save(t, s, request(nil), testSession(epoch)))); err != nil {
			t.Fatal(err)
		}
	}
	if s.cache.Len() != 8 {
		t.Fatalf("%d entries in a cache of 8", s.cache.Len())
	}
}

// TestBindingSeparatesSessions: a cookie made for one issuer and client is
// no session for another, even with the same secret and cookie name.
func TestBindingSeparatesSessions(t *testing.T) {
	c := &clock{epoch}
	mk := func(binding string) *Manager {
		s, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, Binding: binding})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := mk("https://customers.example\x00app"), mk("https://staff.example\x00app")
	cookies := save(t, a, request(nil), testSession(epoch))
	if _, _, err := a.Load(request(cookies)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a session of another issuer was accepted: %v", err)
	}
	w := httptest.NewRecorder()
	l := &Login{State: "s1", Nonce: "n", Verifier: "v", Created: epoch.Unix()}
	if err := a.SaveLogin(w, request(nil), l); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TakeLogin(httptest.NewRecorder(), request(w.Result().Cookies()), "s1"); !errors.Is(err, ErrNoLogin) {
		t.Fatalf("a login cookie of another issuer was accepted: %v", err)
	}
}

// TestRevoked: a revoked session is refused whether the Manager would
// answer from its decoded-session cache or unseal the cookie again.
func TestRevoked(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cacheSize int
	}{
		{"cache on", 0},
		{"cache off", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{epoch}
			m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: tc.cacheSize})
			if err != nil {
				t.Fatal(err)
			}
			cookies := save(t, m, request(nil), testSession(epoch))
			other := save(t, m, request(nil), testSession(epoch))
			sess, _, err := m.Load(request(cookies))
			if err != nil {
				t.Fatal(err)
			}
			again, _, err := m.Load(request(cookies))
			if err != nil || (tc.cacheSize == 0) != (again == sess) {
				t.Fatalf("second Load: cache hit %v, err %v", again == sess, err)
			}
			if err := m.Revoke(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				got, _, err := m.Load(request(cookies))
				if got != nil || !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrNoSession) {
					t.Fatalf("revoked session: %v, %v; want ErrRevoked, an ErrNoSession", got, err)
				}
			}
			if _, _, err := m.Load(request(other)); err != nil {
				t.Fatalf("another session was refused: %v", err)
			}
		})
	}
}

// TestRevokedSharedStore: Managers sharing a Store share revocations;
// each default CookieStore is the Manager's own.
func TestRevokedSharedStore(t *testing.T) {
	c := &clock{epoch}
	store := NewCookieStore(CookieStoreOptions{Now: c.now})
	mk := func(store Store) *Manager {
		m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b, own := mk(store), mk(store), mk(nil)
	cookies := save(t, a, request(nil), testSession(epoch))
	sess, _, err := a.Load(request(cookies))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(request(cookies)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a Manager sharing the Store accepted a revoked session: %v", err)
	}
	if _, _, err := own.Load(request(cookies)); err != nil {
		t.Fatalf("a Manager with its own CookieStore: %v", err)
	}
}

// mapStore keeps sessions in a map and puts only their ID in the cookie:
// the Manager works with a Store that is not a CookieStore.
type mapStore struct {
	sessions map[string]*Session
	fail     error // returned by Revoked when set
}

func (s *mapStore) Save(_ context.Context, sess *Session, _ time.Time) ([]byte, error) {
	s.sessions[sess.ID] = sess
	return []byte(sess.ID), nil
}

func (s *mapStore) Load(_ context.Context, value []byte) (*Session, error) {
	if sess, ok := s.sessions[string(value)]; ok {
		return sess, nil
	}
	return nil, ErrNoSession
}

func (s *mapStore) Revoke(_ context.Context, id string, _ time.Time) error {
	delete(s.sessions, id)
	return nil
}

func (s *mapStore) Revoked(context.Context, *Session) (bool, error) { return false, s.fail }

func (s *mapStore) EndProviderSession(context.Context, ProviderLogout) error { return nil }

func (s *mapStore) FirstUse(context.Context, string, time.Time) (bool, error) { return true, nil }

func TestManagerWithAnotherStore(t *testing.T) {
	c := &clock{epoch}
	store := &mapStore{sessions: map[string]*Session{}}
	m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: -1, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	sess := testSession(epoch)
	cookies := save(t, m, request(nil), sess)
	if strings.Contains(cookies[0].Value, "at-secret") {
		t.Fatal("token in the cookie")
	}
	got, _, err := m.Load(request(cookies))
	if err != nil || got != sess {
		t.Fatalf("Load = %v, %v", got, err)
	}

	// A Store that cannot answer is not "no session".
	store.fail = errors.New("store down")
	if _, _, err := m.Load(request(cookies)); err == nil || errors.Is(err, ErrNoSession) || !errors.Is(err, store.fail) {
		t.Fatalf("Load with a failing store: %v", err)
	}
	store.fail = nil

	if err := m.Revoke(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Load after Revoke: %v", err)
	}
}

// TestDecodedSessionCacheIsBoundedInBytes (review SA2-28): the cache holds
// at most CacheBytes, however large the sessions, and a session larger
// than an eighth of that is not cached at all.
func TestDecodedSessionCacheIsBoundedInBytes(t *testing.T) {
	c := &clock{epoch}
	const budget = 64 << 10
	m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		sess := testSession(epoch)
		sess.Claims = map[string][]string{"big": {noise(2000 + i)}}
		if _, _, err := m.Load(request(save(t, m, request(nil), sess))); err != nil {
			t.Fatal(err)
		}
		if n := m.cached.Load(); n > budget {
			t.Fatalf("after %d sessions the cache holds %d bytes, over its %d", i+1, n, budget)
		}
	}
	if m.cache.Len() >= 50 || m.cache.Len() == 0 {
		t.Fatalf("%d entries cached", m.cache.Len())
	}
	huge := testSession(epoch)
	huge.Claims = map[string][]string{"big": {noise(budget / 8)}}
	before := m.cache.Len()
	m.cache.Purge()
	if _, _, err := m.Load(request(save(t, m, request(nil), huge))); err != nil {
		t.Fatal(err)
	}
	if m.cache.Len() != 0 || m.cached.Load() != 0 {
		t.Fatalf("a session over an eighth of the budget was cached (%d entries before the purge)", before)
	}
}

// TestIdleTimeout (issue 11): a session unused for longer than the idle
// timeout is no session (ErrIdle); use is recorded in the cookie only now
// and then — a save is asked for once the record is a tenth of the
// timeout old, not on every request.
func TestIdleTimeout(t *testing.T) {
	c := &clock{epoch}
	m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: 24 * time.Hour, IdleTimeout: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cookies := save(t, m, request(nil), testSession(epoch))
	load := func() (bool, error) {
		_, rotate, err := m.Load(request(cookies))
		return rotate, err
	}
	c.t = epoch.Add(2 * time.Minute)
	if rotate, err := load(); err != nil || rotate {
		t.Fatalf("2 minutes in: rotate %v, err %v (no cookie write yet)", rotate, err)
	}
	c.t = epoch.Add(4 * time.Minute)
	rotate, err := load()
	if err != nil || !rotate {
		t.Fatalf("4 minutes in (past a tenth of 30m): rotate %v, err %v", rotate, err)
	}
	sess, _, _ := m.Load(request(cookies))
	cookies = save(t, m, request(nil), sess) // what the caller does when asked
	c.t = epoch.Add(33 * time.Minute)        // 29 minutes after that use
	if _, err := load(); err != nil {
		t.Fatalf("29 minutes after the recorded use: %v", err)
	}
	c.t = epoch.Add(35 * time.Minute) // 31 minutes after it
	if _, err := load(); !errors.Is(err, ErrIdle) || !errors.Is(err, ErrNoSession) {
		t.Fatalf("31 minutes idle: %v, want ErrIdle", err)
	}
}
