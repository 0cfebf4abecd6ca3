package session

import (
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// FuzzUnseal feeds arbitrary bytes to the codec and the Manager: the
// answer is always an error (ErrNoSession for the Manager), never a panic.
func FuzzUnseal(f *testing.F) {
	c := &clock{epoch}
	s := newManager(f, c, secretA)
	w := httptest.NewRecorder()
	_ = s.Save(w, request(nil), testSession(epoch))
	good := w.Result().Cookies()[0].Value
	for _, seed := range []string{"", "A", good, good[:len(good)/2], strings.ToUpper(good), "|||", "MTIz", strings.Repeat("=", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if _, _, err := s.sessionCodec.Unseal("_gatehouse", value); err == nil && value != good {
			// A different string may only unseal if it is a non-canonical
			// encoding of the same sealed bytes; the store check below
			// still requires a well-formed session.
			t.Logf("non-canonical variant unsealed")
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "_gatehouse="+value+"; _gatehouse_1="+value)
		sess, _, err := s.Load(r)
		if err != nil && !errors.Is(err, ErrNoSession) {
			t.Fatalf("Load error is not ErrNoSession: %v", err)
		}
		if err == nil && sess == nil {
			t.Fatal("nil session without error")
		}
	})
}

// FuzzCookieHeader throws arbitrary Cookie headers at every reader of the
// cookies (THREATS: CVE-2023-28625, CVE-2024-24814 in mod_auth_openidc).
func FuzzCookieHeader(f *testing.F) {
	c := &clock{epoch}
	s := newManager(f, c, secretA)
	for _, seed := range []string{"", ";", "=;=", "_gatehouse", "_gatehouse=", "_gatehouse_1=a; _gatehouse=b", "_gatehouse_login_x=1", `_gatehouse="`, "a=b; _gatehouse_99=c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", header)
		if _, _, err := s.Load(r); err != nil && !errors.Is(err, ErrNoSession) {
			t.Fatalf("Load: %v", err)
		}
		w := httptest.NewRecorder()
		if _, err := s.TakeLogin(w, r, "state"); err == nil {
			t.Fatal("login from arbitrary header")
		}
		s.ClearAll(w, r)
		s.StripCookies(r)
		for _, line := range r.Header["Cookie"] {
			for part := range strings.SplitSeq(line, ";") {
				name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
				if s.isOwnCookie(strings.TrimSpace(name)) {
					t.Fatalf("StripCookies left %q in %q", name, line)
				}
			}
		}
	})
}

// FuzzUnmarshalSession feeds arbitrary bytes to the session decoder (what
// a store hands it after unsealing): never a panic, never a huge
// allocation, and whatever decodes encodes back to a session that decodes
// the same.
func FuzzUnmarshalSession(f *testing.F) {
	s := testSession(epoch)
	s.IDToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	s.Claims = map[string][]string{"k": {"v1", "v2"}}
	s.Groups = []string{"department-001-engineering", "department-002-engineering", "department-003-engineering", "department-004-engineering",
		"department-005-engineering", "department-006-engineering", "department-007-engineering", "department-008-engineering", "department-009-engineering"}
	withProvider := testSession(epoch)
	withProvider.Provider = "corp"
	for _, seed := range []*Session{testSession(epoch), s, withProvider} {
		b, err := seed.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","sub":"b","t":1}`))
	f.Add([]byte{formatBinary, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{formatDeflated, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		sess, err := unmarshalSession(b)
		if err != nil {
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("error is not ErrNoSession: %v", err)
			}
			return
		}
		again, err := sess.marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := unmarshalSession(again)
		if err != nil || !reflect.DeepEqual(back, sess) {
			t.Fatalf("re-encoded session decodes as %+v, %v; want %+v", back, err, sess)
		}
	})
}
