package session

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef-A")
	secretB = []byte("0123456789abcdef0123456789abcdef-B")
	epoch   = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testSession(created time.Time) *Session {
	return &Session{
		ID: NewID(),
		Identity: identity.Identity{
			Subject:           "248289761001",
			User:              "alice",
			Email:             "alice@example.com",
			PreferredUsername: "alice",
			Groups:            []string{"admins", "staff"},
		},
		AccessToken:  "at-secret",
		RefreshToken: "rt-secret",
		AccessExpiry: created.Add(5 * time.Minute).Unix(),
		Created:      created.Unix(),
	}
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

func TestSessionLogValueRedacts(t *testing.T) {
	sess := testSession(epoch)
	for _, s := range []string{sess.String(), sess.LogValue().String()} {
		if strings.Contains(s, "at-secret") || strings.Contains(s, "rt-secret") {
			t.Fatalf("token in log form: %s", s)
		}
	}
}

// oldSessionJSON is a session as sealed before Session embedded
// identity.Identity, with the dropped field "ev" (EmailVerified).
const oldSessionJSON = `{"id":"abc","sub":"248289761001","u":"alice","em":"alice@example.com","ev":true,"eu":true,` +
	`"pu":"alice","n":"Alice","g":["admins","staff"],"c":{"k":["v"]},"sid":"s1","at":"at-secret","rt":"rt-secret",` +
	`"it":"it-secret","ax":1795262700,"t":1795262400}`

// TestSessionJSON: a cookie sealed as JSON, before the binary encoding,
// still loads, and the binary encoding gives the same session back.
func TestSessionJSON(t *testing.T) {
	want := &Session{
		ID: "abc",
		Identity: identity.Identity{
			Subject: "248289761001", User: "alice", Email: "alice@example.com", EmailUnverified: true,
			PreferredUsername: "alice", Name: "Alice", Groups: []string{"admins", "staff"},
			Claims: map[string][]string{"k": {"v"}},
		},
		SID: "s1", AccessToken: "at-secret", RefreshToken: "rt-secret", IDToken: "it-secret",
		AccessExpiry: epoch.Add(5 * time.Minute).Unix(), Created: epoch.Unix(),
	}
	b, err := want.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unmarshalSession(b); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("binary round trip: %+v, %v", got, err)
	}
	if len(b) >= len(oldSessionJSON)*3/4 {
		t.Fatalf("the binary encoding (%d bytes) is not much smaller than the JSON (%d)", len(b), len(oldSessionJSON))
	}

	c := &clock{epoch}
	m := newManager(t, c, secretA)
	sealed, err := m.sessionCodec.Seal("_gatehouse", []byte(oldSessionJSON))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := m.Load(request([]*http.Cookie{{Name: "_gatehouse", Value: sealed}}))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("old cookie loaded as %+v, %v", got, err)
	}
}

// noise is n random bytes: claim padding no compression shrinks.
func noise(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}
