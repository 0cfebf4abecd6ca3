package session

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef-A")
	secretB = []byte("0123456789abcdef0123456789abcdef-B")
	epoch   = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newStore(t testing.TB, c *clock, secrets ...[]byte) *CookieStore {
	t.Helper()
	s, err := NewCookieStore(Options{Secrets: secrets, Now: c.now, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testSession(created time.Time) *Session {
	return &Session{
		ID:                NewID(),
		Subject:           "248289761001",
		User:              "alice",
		Email:             "alice@example.com",
		EmailVerified:     true,
		PreferredUsername: "alice",
		Groups:            []string{"admins", "staff"},
		AccessToken:       "at-secret",
		RefreshToken:      "rt-secret",
		AccessExpiry:      created.Add(5 * time.Minute).Unix(),
		Created:           created.Unix(),
	}
}

// save runs Save and returns the cookies it set, as a browser would store them.
func save(t testing.TB, s *CookieStore, r *http.Request, sess *Session) []*http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if err := s.Save(w, r, sess); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return w.Result().Cookies()
}

// request builds a request carrying the live (non-expired) cookies.
func request(cookies []*http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		if c.MaxAge >= 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return r
}

func TestNewCodecRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets [][]byte
	}{
		{"no secrets", nil},
		{"short secret", [][]byte{[]byte("too short")}},
		{"31 bytes", [][]byte{bytes.Repeat([]byte("x"), 31)}},
		{"second secret short", [][]byte{secretA, []byte("short")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewCodec("session", tc.secrets, 4096); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewCodec("session", [][]byte{bytes.Repeat([]byte("x"), 32)}, 4096); err != nil {
		t.Fatalf("32-byte secret refused: %v", err)
	}
}

func TestNewCookieStoreRejects(t *testing.T) {
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
			if _, err := NewCookieStore(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestSealUnsealRoundTrip(t *testing.T) {
	c, err := NewCodec("session", [][]byte{secretA}, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 15, 16, 17, 1000, 20000} {
		plain := bytes.Repeat([]byte{0xA5}, size)
		orig := append([]byte(nil), plain...)
		sealed, err := c.Seal("_gatehouse", plain)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(plain, orig) {
			t.Fatalf("size %d: Seal modified its input", size)
		}
		got, idx, err := c.Unseal("_gatehouse", sealed)
		if err != nil || idx != 0 || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: round trip failed: idx=%d err=%v", size, idx, err)
		}
		if _, _, err := c.Unseal("_other", sealed); !errors.Is(err, ErrInvalid) {
			t.Fatalf("size %d: unsealed under another name: %v", size, err)
		}
	}
}

func TestSealIsEncrypted(t *testing.T) {
	c, _ := NewCodec("session", [][]byte{secretA}, 1<<16)
	sealed, _ := c.Seal("n", []byte("at-secret-token-value"))
	if strings.Contains(sealed, "at-secret") {
		t.Fatal("plaintext visible in the sealed value")
	}
	again, _ := c.Seal("n", []byte("at-secret-token-value"))
	if sealed == again {
		t.Fatal("sealing is deterministic (IV reuse)")
	}
}

func TestPurposesAreSeparate(t *testing.T) {
	s, _ := NewCodec("session", [][]byte{secretA}, 1<<16)
	l, _ := NewCodec("login", [][]byte{secretA}, 1<<16)
	sealed, _ := s.Seal("n", []byte("x"))
	if _, _, err := l.Unseal("n", sealed); err == nil {
		t.Fatal("a session value unsealed with the login keys")
	}
}

func TestLoadSaveRoundTrip(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	sess := testSession(epoch)
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
		strings.Join(got.Groups, ",") != "admins,staff" || !got.EmailVerified {
		t.Fatalf("loaded %+v", got)
	}
}

func TestLoadNoSession(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
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
	s := newStore(t, c, secretA)
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
				sess.Claims = map[string][]string{"big": {strings.Repeat("x", tc.extra)}}
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
			if accepted > 2 {
				t.Fatalf("%d flipped bytes still unsealed", accepted)
			}
			t.Logf("flipped %d bytes by class %v; %d non-canonical base64 variants decoded to the same bytes", len(joined), classes, accepted)
		})
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
	cookies := save(t, newStore(t, c, secretA), request(nil), testSession(epoch))
	if _, _, err := newStore(t, c, secretB).Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("foreign key accepted: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	c := &clock{epoch}
	old := newStore(t, c, secretB)
	cookies := save(t, old, request(nil), testSession(epoch))

	rotated := newStore(t, c, secretA, secretB)
	sess, rotate, err := rotated.Load(request(cookies))
	if err != nil || !rotate {
		t.Fatalf("old-key cookie after rotation: rotate=%v err=%v", rotate, err)
	}
	resealed := save(t, rotated, request(cookies), sess)
	if _, rotate, err := newStore(t, c, secretA).Load(request(resealed)); err != nil || rotate {
		t.Fatalf("re-sealed cookie not under the new key: rotate=%v err=%v", rotate, err)
	}

	removed := newStore(t, c, secretA)
	if _, _, err := removed.Load(request(cookies)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("cookie sealed with a removed secret accepted: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
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
	short, _ := NewCookieStore(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: 10 * time.Minute})
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
	s := newStore(t, c, secretA)
	if err := s.Save(httptest.NewRecorder(), request(nil), testSession(epoch)); !errors.Is(err, ErrExpired) {
		t.Fatalf("saved a session past its lifetime: %v", err)
	}
}

func TestSplitJoinBoundaries(t *testing.T) {
	for _, n := range []int{1, chunkSize - 1, chunkSize, chunkSize + 1, 2*chunkSize - 1, 2 * chunkSize, 2*chunkSize + 1, 3 * chunkSize} {
		s := strings.Repeat("a", n-1) + "z"
		chunks := splitChunks(s, chunkSize)
		want := (n + chunkSize - 1) / chunkSize
		if len(chunks) != want {
			t.Fatalf("len %d: %d chunks, want %d", n, len(chunks), want)
		}
		for i, c := range chunks {
			if len(c) == 0 || len(c) > chunkSize {
				t.Fatalf("len %d: chunk %d has %d bytes", n, i, len(c))
			}
		}
		if joinChunks(chunks) != s {
			t.Fatalf("len %d: join(split) differs", n)
		}
	}
}

// sessionOfSealedSize returns a session whose sealed form is close to n bytes.
func sessionOfSealedSize(t *testing.T, s *CookieStore, n int) (*Session, int) {
	t.Helper()
	sess := testSession(epoch)
	lo, hi := 0, n
	for lo < hi {
		mid := (lo + hi + 1) / 2
		sess.Claims = map[string][]string{"pad": {strings.Repeat("p", mid)}}
		plain, _ := sess.marshal()
		sealed, err := s.sessionCodec.Seal(s.opts.Name, plain)
		if err != nil || len(sealed) > n {
			hi = mid - 1
		} else {
			lo = mid
		}
	}
	sess.Claims = map[string][]string{"pad": {strings.Repeat("p", lo)}}
	plain, _ := sess.marshal()
	sealed, _ := s.sessionCodec.Seal(s.opts.Name, plain)
	return sess, len(sealed)
}

func TestChunkedSessionAtBoundaries(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	for _, target := range []int{chunkSize, chunkSize + 4, 2 * chunkSize, 2*chunkSize + 4, 3 * chunkSize} {
		sess, size := sessionOfSealedSize(t, s, target)
		cookies := save(t, s, request(nil), sess)
		want := (size + chunkSize - 1) / chunkSize
		if len(cookies) != want {
			t.Fatalf("sealed %d bytes: %d cookies, want %d", size, len(cookies), want)
		}
		for i, ck := range cookies {
			if ck.Name != s.chunkName(i) {
				t.Fatalf("cookie %d named %q", i, ck.Name)
			}
			if len(ck.String()) > 4096 {
				t.Fatalf("Set-Cookie %d is %d bytes, over the browser limit", i, len(ck.String()))
			}
		}
		got, _, err := s.Load(request(cookies))
		if err != nil || got.Claims["pad"][0] != sess.Claims["pad"][0] {
			t.Fatalf("sealed %d bytes: reassembly failed: %v", size, err)
		}
	}
}

func TestChunkMissingOrReordered(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"big": {strings.Repeat("x", 5000)}}
	cookies := save(t, s, request(nil), sess)
	if len(cookies) != 3 {
		t.Fatalf("want 3 chunks, got %d", len(cookies))
	}
	for _, tc := range []struct {
		name   string
		values []string // values for _gatehouse, _gatehouse_1, _gatehouse_2
	}{
		{"first missing", []string{"", cookies[1].Value, cookies[2].Value}},
		{"middle missing", []string{cookies[0].Value, "", cookies[2].Value}},
		{"last missing", []string{cookies[0].Value, cookies[1].Value, ""}},
		{"swapped 1 and 2", []string{cookies[0].Value, cookies[2].Value, cookies[1].Value}},
		{"swapped 0 and 1", []string{cookies[1].Value, cookies[0].Value, cookies[2].Value}},
		{"duplicated chunk", []string{cookies[0].Value, cookies[1].Value, cookies[1].Value}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for i, v := range tc.values {
				if v != "" {
					r.AddCookie(&http.Cookie{Name: s.chunkName(i), Value: v})
				}
			}
			if _, _, err := s.Load(r); !errors.Is(err, ErrNoSession) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}

	// Cookies sent in another order by the browser still reassemble by name.
	r := httptest.NewRequest("GET", "/", nil)
	for _, i := range []int{2, 0, 1} {
		r.AddCookie(&http.Cookie{Name: cookies[i].Name, Value: cookies[i].Value})
	}
	if _, _, err := s.Load(r); err != nil {
		t.Fatalf("header order mattered: %v", err)
	}

	// A stale chunk past the end (left over from a bigger session) is harmless
	// to reading only if Save expired it; Save must do so.
	small := save(t, s, request(cookies), testSession(epoch))
	expired := map[string]bool{}
	for _, ck := range small {
		if ck.MaxAge < 0 {
			expired[ck.Name] = true
		}
	}
	if !expired["_gatehouse_1"] || !expired["_gatehouse_2"] {
		t.Fatalf("stale chunks not expired: %v", small)
	}
}

func TestTooLarge(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"huge": {strings.Repeat("x", chunkSize*maxChunks)}}
	if err := s.Save(httptest.NewRecorder(), request(nil), sess); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestManyChunkCookiesAreBounded(t *testing.T) {
	// CVE-2024-24814 (mod_auth_openidc): a crafted Cookie header with a huge
	// chunk count must not cost more than maxChunks pieces.
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	var b strings.Builder
	b.WriteString("_gatehouse=AAAA")
	for i := 1; i < 5000; i++ {
		b.WriteString("; _gatehouse_" + strconv.Itoa(i) + "=AAAA")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", b.String())
	if _, _, err := s.Load(r); !errors.Is(err, ErrNoSession) {
		t.Fatalf("got %v", err)
	}
}

func TestLoginCookies(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	newLogin := func(state string) *Login {
		return &Login{State: state, Nonce: "n-" + state, Verifier: "v-" + state, ReturnTo: "/x?y=1", Created: c.t.Unix()}
	}

	// Two tabs start a login; both finish.
	w := httptest.NewRecorder()
	if err := s.SaveLogin(w, request(nil), newLogin("state-one")); err != nil {
		t.Fatal(err)
	}
	w2 := httptest.NewRecorder()
	if err := s.SaveLogin(w2, request(nil), newLogin("state-two")); err != nil {
		t.Fatal(err)
	}
	jar := append(w.Result().Cookies(), w2.Result().Cookies()...)
	for _, ck := range jar {
		if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.MaxAge != 900 || ck.Domain != "" {
			t.Fatalf("login cookie attributes: %+v", ck)
		}
		if !strings.HasPrefix(ck.Name, "_gatehouse_login_") || strings.Contains(ck.Name, "state") {
			t.Fatalf("login cookie name %q", ck.Name)
		}
	}
	for _, state := range []string{"state-two", "state-one"} {
		w := httptest.NewRecorder()
		l, err := s.TakeLogin(w, request(jar), state)
		if err != nil || l.State != state || l.Nonce != "n-"+state || l.ReturnTo != "/x?y=1" {
			t.Fatalf("TakeLogin(%s) = %+v, %v", state, l, err)
		}
		del := w.Result().Cookies()
		if len(del) != 1 || del[0].MaxAge >= 0 {
			t.Fatalf("TakeLogin did not expire the login cookie: %v", del)
		}
	}

	// Unknown state, empty or oversized state: no login.
	for _, state := range []string{"state-three", "", strings.Repeat("s", maxStateLen+1)} {
		if _, err := s.TakeLogin(httptest.NewRecorder(), request(jar), state); !errors.Is(err, ErrNoLogin) {
			t.Fatalf("TakeLogin(%.20q): %v", state, err)
		}
	}

	// A login cookie moved under another state's name does not unseal.
	one, _ := s.loginName("state-one")
	two, _ := s.loginName("state-two")
	var moved []*http.Cookie
	for _, ck := range jar {
		if ck.Name == one {
			moved = append(moved, &http.Cookie{Name: two, Value: ck.Value})
		}
	}
	if _, err := s.TakeLogin(httptest.NewRecorder(), request(moved), "state-two"); !errors.Is(err, ErrNoLogin) {
		t.Fatalf("moved login cookie accepted: %v", err)
	}

	// Expired login.
	c.t = epoch.Add(16 * time.Minute)
	if _, err := s.TakeLogin(httptest.NewRecorder(), request(jar), "state-one"); !errors.Is(err, ErrNoLogin) {
		t.Fatalf("expired login accepted: %v", err)
	}

	// A session cookie is not a login cookie.
	c.t = epoch
	sessCookies := save(t, s, request(nil), testSession(epoch))
	if _, err := s.TakeLogin(httptest.NewRecorder(), request([]*http.Cookie{{Name: one, Value: sessCookies[0].Value}}), "state-one"); !errors.Is(err, ErrNoLogin) {
		t.Fatalf("session cookie accepted as login: %v", err)
	}
}

func TestLoginCookiesAreCapped(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	var jar []*http.Cookie
	for i := range 20 {
		c.t = epoch.Add(time.Duration(i) * time.Second)
		w := httptest.NewRecorder()
		l := &Login{State: "state-" + strconv.Itoa(i), Nonce: "n", Verifier: "v", Created: c.t.Unix()}
		if err := s.SaveLogin(w, request(jar), l); err != nil {
			t.Fatal(err)
		}
		// apply Set-Cookie like a browser
		for _, ck := range w.Result().Cookies() {
			jar = removeCookie(jar, ck.Name)
			if ck.MaxAge > 0 {
				jar = append(jar, ck)
			}
		}
	}
	if len(jar) != maxLogins {
		t.Fatalf("%d login cookies kept, want %d", len(jar), maxLogins)
	}
	// The newest logins survive.
	if _, err := s.TakeLogin(httptest.NewRecorder(), request(jar), "state-19"); err != nil {
		t.Fatalf("newest login dropped: %v", err)
	}
	if _, err := s.TakeLogin(httptest.NewRecorder(), request(jar), "state-0"); err == nil {
		t.Fatal("oldest login kept")
	}
}

func removeCookie(jar []*http.Cookie, name string) []*http.Cookie {
	out := jar[:0]
	for _, c := range jar {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

func TestClearAndStrip(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "a=1; _gatehouse=x; _gatehouse_1=y; b=2")
	r.Header.Add("Cookie", "_gatehouse_login_0123456789abcdef=z")
	r.Header.Add("Cookie", "_gatehouse_x=keep; _gatehouse_10=keep; _gatehouse_01=keep; _gatehousex=keep")

	w := httptest.NewRecorder()
	s.ClearAll(w, r)
	cleared := map[string]bool{}
	for _, ck := range w.Result().Cookies() {
		if ck.MaxAge >= 0 {
			t.Fatalf("Clear set a live cookie %v", ck)
		}
		cleared[ck.Name] = true
	}
	for _, name := range []string{"_gatehouse", "_gatehouse_1", "_gatehouse_login_0123456789abcdef"} {
		if !cleared[name] {
			t.Fatalf("Clear missed %s: %v", name, cleared)
		}
	}
	if len(cleared) != 3 {
		t.Fatalf("Clear expired foreign cookies: %v", cleared)
	}

	s.StripCookies(r)
	got := strings.Join(r.Header["Cookie"], " | ")
	want := "a=1; b=2 | _gatehouse_x=keep; _gatehouse_10=keep; _gatehouse_01=keep; _gatehousex=keep"
	if got != want {
		t.Fatalf("StripCookies:\n got %q\nwant %q", got, want)
	}

	only := httptest.NewRequest("GET", "/", nil)
	only.Header.Set("Cookie", "_gatehouse=x")
	s.StripCookies(only)
	if _, ok := only.Header["Cookie"]; ok {
		t.Fatalf("empty Cookie header left: %q", only.Header["Cookie"])
	}
}

func TestSessionLogValueRedacts(t *testing.T) {
	sess := testSession(epoch)
	for _, s := range []string{sess.String(), sess.LogValue().String()} {
		if strings.Contains(s, "at-secret") || strings.Contains(s, "rt-secret") {
			t.Fatalf("token in log form: %s", s)
		}
	}
}

func TestDecodedSessionCache(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
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
	old := newStore(t, c, secretB)
	oldCookies := save(t, old, request(nil), testSession(epoch))
	rotated := newStore(t, c, secretA, secretB)
	for range 2 {
		if _, rotate, err := rotated.Load(request(oldCookies)); err != nil || !rotate {
			t.Fatalf("rotate = %v, err = %v", rotate, err)
		}
	}

	// Disabled.
	off, _ := NewCookieStore(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: -1})
	a, _, _ := off.Load(request(cookies))
	b, _, _ := off.Load(request(cookies))
	if a == b || off.cache != nil {
		t.Fatal("the cache is on although disabled")
	}
}

func TestDecodedSessionCacheIsBounded(t *testing.T) {
	c := &clock{epoch}
	s, _ := NewCookieStore(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, CacheSize: 8})
	for range 50 {
		if _, _, err := s.Load(request(save(t, s, request(nil), testSession(epoch)))); err != nil {
			t.Fatal(err)
		}
	}
	if s.cache.Len() != 8 {
		t.Fatalf("%d entries in a cache of 8", s.cache.Len())
	}
}

// TestStrayChunkIgnored: a chunk cookie that is not part of the session (a
// leftover, or one a sibling domain set) does not spoil a valid session.
func TestStrayChunkIgnored(t *testing.T) {
	c := &clock{epoch}
	s := newStore(t, c, secretA)
	one := save(t, s, request(nil), testSession(epoch))
	if _, _, err := s.Load(request(append(one, &http.Cookie{Name: "_gatehouse_1", Value: "stray"}))); err != nil {
		t.Fatalf("a stray chunk spoiled a one-chunk session: %v", err)
	}
	big := testSession(epoch)
	big.Claims = map[string][]string{"big": {strings.Repeat("x", 5000)}}
	three := save(t, s, request(nil), big)
	if !strings.HasPrefix(three[0].Value, "3.") {
		t.Fatalf("the first chunk does not say how many there are: %.10s", three[0].Value)
	}
	if _, _, err := s.Load(request(append(three, &http.Cookie{Name: "_gatehouse_3", Value: "stray"}))); err != nil {
		t.Fatalf("a stray fourth chunk spoiled a three-chunk session: %v", err)
	}
	for _, bad := range []string{"9." + three[0].Value[2:], "1." + three[0].Value[2:], "x." + three[0].Value[2:], "123." + three[0].Value[2:]} {
		cs := []*http.Cookie{{Name: "_gatehouse", Value: bad}, three[1], three[2]}
		if _, _, err := s.Load(request(cs)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("chunk count %.4s accepted", bad)
		}
	}
}

// TestBindingSeparatesSessions: a cookie made for one issuer and client is
// no session for another, even with the same secret and cookie name.
func TestBindingSeparatesSessions(t *testing.T) {
	c := &clock{epoch}
	mk := func(binding string) *CookieStore {
		s, err := NewCookieStore(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, Binding: binding})
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
