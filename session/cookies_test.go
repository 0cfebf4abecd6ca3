package session

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClearAndStrip(t *testing.T) {
	c := &clock{epoch}
	s := newManager(t, c, secretA)
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
