package session

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
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
	sess.Provider = "corp-idp"
	for _, s := range []string{sess.String(), sess.LogValue().String()} {
		if strings.Contains(s, "at-secret") || strings.Contains(s, "rt-secret") {
			t.Fatalf("token in log form: %s", s)
		}
	}
	if !strings.Contains(sess.LogValue().String(), "corp-idp") {
		t.Fatalf("no provider in the log form: %s", sess.LogValue())
	}
}

// goldenSession is encoded as goldenHex by the encoding of before
// providers had names (captured from that code): a session of the flat
// provider must encode, and decode, exactly so.
func goldenSession() *Session {
	return &Session{
		ID: "abc",
		Identity: identity.Identity{
			Subject: "248289761001", User: "alice", Email: "alice@example.com", EmailUnverified: true,
			PreferredUsername: "alice", Name: "Alice", Groups: []string{"admins", "staff"},
			Claims: map[string][]string{"k": {"v"}},
		},
		SID: "s1", AccessToken: "at-secret", RefreshToken: "rt-secret", IDToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
		AccessExpiry: epoch.Add(5 * time.Minute).Unix(), AccessIssued: epoch.Unix(), LastSeen: epoch.Add(time.Minute).Unix(), Created: epoch.Unix(),
	}
}

const goldenHex = "02036162630c32343832383937363130303105616c69636511616c696365406578616d706c652e636f6d0105616c69636505416c696365" +
	"020661646d696e7305737461666601016b010176027331000961742d736563726574000972742d736563726574010f7b22616c67223a2252" +
	"53323536227d0b7b22737562223a2261227d03736967d8a38cb00d809f8cb00df89f8cb00d809f8cb00d"

// TestSessionEncodingProvider: the provider's name survives the binary
// encoding and JSON; a session without one encodes byte for byte as
// before, and sessions encoded before still decode (provider "").
func TestSessionEncodingProvider(t *testing.T) {
	golden, _ := hex.DecodeString(goldenHex)
	b, err := goldenSession().marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, golden) {
		t.Fatalf("a flat provider's session encodes as\n%x\nwant\n%x", b, golden)
	}
	if got, err := unmarshalSession(golden); err != nil || !reflect.DeepEqual(got, goldenSession()) || got.Provider != "" {
		t.Fatalf("the old encoding decodes as %+v, %v", got, err)
	}
	// A minimal one, flags byte 0.
	old, _ := hex.DecodeString("02017801790000000000000000000000000000000000809f8cb00d")
	if got, err := unmarshalSession(old); err != nil || got.ID != "x" || got.Subject != "y" || got.Provider != "" || got.Created != epoch.Unix() {
		t.Fatalf("the old minimal encoding decodes as %+v, %v", got, err)
	}

	for _, provider := range []string{"", "corp", strings.Repeat("p", 300)} {
		want := goldenSession()
		want.Provider = provider
		b, err := want.marshal()
		if err != nil {
			t.Fatal(err)
		}
		plain := b[1:]
		if b[0] == formatDeflated {
			if plain, err = inflate(plain); err != nil {
				t.Fatal(err)
			}
		}
		flags := plain[1+len("abc")+1+len("248289761001")+1+len("alice")+1+len("alice@example.com")]
		wantFlags := byte(flagEmailUnverified)
		if provider != "" {
			wantFlags |= flagProvider
		}
		if flags != wantFlags {
			t.Fatalf("provider %.10q: flags %#x, want %#x", provider, flags, wantFlags)
		}
		if got, err := unmarshalSession(b); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("provider %.10q: binary round trip %+v, %v", provider, got, err)
		}
		j, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(j), `"pv"`) != (provider != "") {
			t.Fatalf("JSON %s", j)
		}
		if got, err := unmarshalSession(j); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("provider %.10q: JSON round trip %+v, %v", provider, got, err)
		}
	}

	// The provider flag with no name, or an unknown flag, is malformed;
	// so is a name left over without the flag.
	bad := func(mutate func(b []byte) []byte) {
		t.Helper()
		b := mutate(slices.Clone(old))
		if _, err := unmarshalSession(b); !errors.Is(err, ErrInvalid) {
			t.Fatalf("% x decodes: %v", b, err)
		}
	}
	const flagsAt = 1 + 2 + 2 + 1 + 1
	bad(func(b []byte) []byte { b[flagsAt] = flagProvider; return append(b, 0) })
	bad(func(b []byte) []byte { b[flagsAt] = flagProvider; return b })
	bad(func(b []byte) []byte { b[flagsAt] = 4; return append(b, 1, 'p') })
	bad(func(b []byte) []byte { return append(b, 1, 'p') })
	ok := append(slices.Clone(old), 1, 'p')
	ok[flagsAt] = flagProvider
	if got, err := unmarshalSession(ok); err != nil || got.Provider != "p" {
		t.Fatalf("a provider name after the flag: %+v, %v", got, err)
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
