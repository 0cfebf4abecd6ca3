package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoginCookies(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
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
	s := newManager(t, c, secretA)
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

// TestLoginProvider: the provider a login was started at comes back from
// its sealed cookie; a login of the flat provider has none.
func TestLoginProvider(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
	for _, provider := range []string{"", "corp"} {
		state := "state-" + provider
		w := httptest.NewRecorder()
		if err := s.SaveLogin(w, request(nil), &Login{State: state, Nonce: "n", Verifier: "v", Provider: provider, Created: c.t.Unix()}); err != nil {
			t.Fatal(err)
		}
		l, err := s.TakeLogin(httptest.NewRecorder(), request(w.Result().Cookies()), state)
		if err != nil || l.Provider != provider {
			t.Fatalf("TakeLogin = %+v, %v; want provider %q", l, err, provider)
		}
	}
	if b, _ := (&Login{State: "s", Nonce: "n", Verifier: "v"}).marshal(); strings.Contains(string(b), `"p"`) {
		t.Fatalf("a flat provider's login names a provider: %s", b)
	}
}
