package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

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
func sessionOfSealedSize(t *testing.T, s *Manager, n int) (*Session, int) {
	t.Helper()
	sess := testSession(epoch)
	lo, hi := 0, n
	for lo < hi {
		mid := (lo + hi + 1) / 2
		sess.Claims = map[string][]string{"pad": {noise(mid)}}
		plain, _ := sess.marshal()
		sealed, err := s.sessionCodec.Seal(s.opts.Name, plain)
		if err != nil || len(sealed) > n {
			hi = mid - 1
		} else {
			lo = mid
		}
	}
	sess.Claims = map[string][]string{"pad": {noise(lo)}}
	plain, _ := sess.marshal()
	sealed, _ := s.sessionCodec.Seal(s.opts.Name, plain)
	return sess, len(sealed)
}

func TestChunkedSessionAtBoundaries(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
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
	s := newManager(t, c, secretA)
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"big": {noise(5000)}}
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
	s := newManager(t, c, secretA)
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"huge": {noise(chunkSize * maxChunks)}}
	if err := s.Save(httptest.NewRecorder(), request(nil), sess); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestManyChunkCookiesAreBounded(t *testing.T) {
	// CVE-2024-24814 (mod_auth_openidc): a crafted Cookie header with a huge
	// chunk count must not cost more than maxChunks pieces.
	c := &clock{epoch}
	s := newManager(t, c, secretA)
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

// TestStrayChunkIgnored: a chunk cookie that is not part of the session (a
// leftover, or one a sibling domain set) does not spoil a valid session.
func TestStrayChunkIgnored(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	one := save(t, s, request(nil), testSession(epoch))
	if _, _, err := s.Load(request(append(one, &http.Cookie{Name: "_gatehouse_1", Value: "stray"}))); err != nil {
		t.Fatalf("a stray chunk spoiled a one-chunk session: %v", err)
	}
	big := testSession(epoch)
	big.Claims = map[string][]string{"big": {noise(5000)}}
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

func TestParseChunks(t *testing.T) {
	found := func(n int) []bool {
		f := make([]bool, maxChunks)
		for i := range n {
			f[i] = true
		}
		return f
	}
	for _, tc := range []struct {
		first string
		found []bool
		n     int
		rest  string // "" with n == 0: ErrInvalid
	}{
		{"abc", found(1), 1, "abc"},
		{"abc", found(3), 1, "abc"}, // stray chunks ignored
		{"3.abc", found(3), 3, "abc"},
		{"3.abc", found(4), 3, "abc"},
		{"10.abc", found(10), 10, "abc"},
		{"3.abc", found(2), 0, ""},
		{"1.abc", found(1), 0, ""},
		{"0.abc", found(1), 0, ""},
		{"11.abc", found(10), 0, ""},
		{"x.abc", found(3), 0, ""},
		{"003.abc", found(3), 0, ""},
		{".abc", found(3), 0, ""},
	} {
		n, rest, err := parseChunks(tc.first, tc.found)
		if n != tc.n || rest != tc.rest || (tc.n == 0) != errors.Is(err, ErrInvalid) {
			t.Fatalf("parseChunks(%q) = %d, %q, %v; want %d, %q", tc.first, n, rest, err, tc.n, tc.rest)
		}
	}
}
