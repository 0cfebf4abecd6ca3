package session

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
)

func TestCookieStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := NewCookieStore(CookieStoreOptions{})
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"k": {"v"}}
	value, err := s.Save(ctx, sess, epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, value)
	if err != nil || !reflect.DeepEqual(got, sess) {
		t.Fatalf("Load(Save(s)) = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{", "null", `{"sub":"x","t":1}`, `{"id":"x","t":1}`} {
		if _, err := s.Load(ctx, []byte(bad)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("Load(%q) = %v, want ErrNoSession", bad, err)
		}
	}
}

func TestCookieStoreRevoke(t *testing.T) {
	ctx := context.Background()
	c := &clock{epoch}
	s := NewCookieStore(CookieStoreOptions{Now: c.now})
	revoked := func(id string) bool {
		t.Helper()
		ok, err := s.Revoked(ctx, &Session{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if revoked("a") {
		t.Fatal("revoked before Revoke")
	}
	if err := s.Revoke(ctx, "a", epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !revoked("a") || revoked("b") {
		t.Fatal("Revoke did not revoke exactly the session it named")
	}

	// Remembered until `until` by the injected clock, then forgotten.
	c.t = epoch.Add(time.Hour)
	if !revoked("a") {
		t.Fatal("forgotten before until")
	}
	c.t = epoch.Add(time.Hour + time.Second)
	if revoked("a") || s.revoked.Len() != 0 {
		t.Fatalf("not forgotten after until (%d entries)", s.revoked.Len())
	}
}

func TestCookieStoreRevokedIsBounded(t *testing.T) {
	ctx := context.Background()
	c := &clock{epoch}
	s := NewCookieStore(CookieStoreOptions{Now: c.now, MaxRevoked: 8})
	for i := range 50 {
		_ = s.Revoke(ctx, strconv.Itoa(i), epoch.Add(time.Hour))
	}
	if s.revoked.Len() != 8 {
		t.Fatalf("%d entries in a denylist of 8", s.revoked.Len())
	}
	if ok, _ := s.Revoked(ctx, &Session{ID: "49"}); !ok {
		t.Fatal("the newest revocation was dropped")
	}
	if ok, _ := s.Revoked(ctx, &Session{ID: "0"}); ok {
		t.Fatal("the oldest revocation was kept past the bound")
	}

	d := NewCookieStore(CookieStoreOptions{Now: c.now})
	for i := range DefaultMaxRevoked + 10 {
		_ = d.Revoke(ctx, strconv.Itoa(i), epoch.Add(time.Hour))
	}
	if d.revoked.Len() != DefaultMaxRevoked {
		t.Fatalf("%d entries, want the default bound %d", d.revoked.Len(), DefaultMaxRevoked)
	}
}

// TestCookieStoreProviderLogout: a back-channel logout ends, in this
// process, the sessions of the provider session (or of the user) that
// existed when it came, and no later one; the denylist forgets it once
// every session it could name has ended.
func TestCookieStoreProviderLogout(t *testing.T) {
	ctx := context.Background()
	c := &clock{epoch}
	s := NewCookieStore(CookieStoreOptions{Now: c.now})
	sess := func(sub, sid string, created time.Time) *Session {
		return &Session{ID: NewID(), Identity: identity.Identity{Subject: sub}, SID: sid, Created: created.Unix()}
	}
	revoked := func(x *Session) bool {
		t.Helper()
		ok, err := s.Revoked(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	a1, a2, b := sess("alice", "op-1", epoch), sess("alice", "op-2", epoch), sess("bob", "op-3", epoch)
	if err := s.EndProviderSession(ctx, ProviderLogout{SID: "op-1", Subject: "alice", At: epoch, Until: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if !revoked(a1) || revoked(a2) || revoked(b) {
		t.Fatal("a logout by sid ended the wrong sessions")
	}
	c.t = epoch.Add(time.Minute)
	if err := s.EndProviderSession(ctx, ProviderLogout{Subject: "alice", At: c.t, Until: c.t.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	later := sess("alice", "op-4", c.t.Add(time.Second))
	if !revoked(a2) || revoked(b) || revoked(later) {
		t.Fatal("a logout by sub ended the wrong sessions")
	}
	// A session with the same sid but no such logout: a sid only counts for its own provider session.
	if revoked(sess("carol", "", epoch)) {
		t.Fatal("an empty sid matched")
	}
	c.t = epoch.Add(2 * time.Hour)
	if revoked(a1) {
		t.Fatal("the logout outlived its until")
	}
}

// TestCookieStoreProviderLogoutPerProvider: two providers may both have a
// subject "123" and a sid "abc"; a logout from one ends its sessions only.
// The provider "" (one provider written flat) is a provider like another.
func TestCookieStoreProviderLogoutPerProvider(t *testing.T) {
	ctx := context.Background()
	s := NewCookieStore(CookieStoreOptions{Now: (&clock{epoch}).now})
	sess := func(provider string) *Session {
		return &Session{ID: NewID(), Provider: provider, Identity: identity.Identity{Subject: "123"}, SID: "abc", Created: epoch.Unix()}
	}
	revoked := func(x *Session) bool {
		t.Helper()
		ok, err := s.Revoked(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	flat, a, b := sess(""), sess("a"), sess("b")
	end := func(l ProviderLogout) {
		t.Helper()
		l.At, l.Until = epoch, epoch.Add(time.Hour)
		if err := s.EndProviderSession(ctx, l); err != nil {
			t.Fatal(err)
		}
	}

	end(ProviderLogout{Provider: "a", Subject: "123"})
	if !revoked(a) || revoked(b) || revoked(flat) {
		t.Fatal("a logout by sub from provider a ended the wrong sessions")
	}
	end(ProviderLogout{SID: "abc", Subject: "123"})
	if !revoked(flat) || revoked(b) {
		t.Fatal("a logout by sid from the flat provider ended the wrong sessions")
	}
	end(ProviderLogout{Provider: "b", SID: "abc"})
	if !revoked(b) {
		t.Fatal("a logout by sid from provider b did not end its session")
	}
	if revoked(sess("c")) {
		t.Fatal("a logout ended provider c's session")
	}
}

func TestCookieStoreFirstUse(t *testing.T) {
	ctx := context.Background()
	c := &clock{epoch}
	s := NewCookieStore(CookieStoreOptions{Now: c.now})
	for i, want := range []bool{true, false, false} {
		if got, err := s.FirstUse(ctx, "jti-1", epoch.Add(time.Minute)); err != nil || got != want {
			t.Fatalf("use %d: %v, %v", i, got, err)
		}
	}
	c.t = epoch.Add(2 * time.Minute)
	if got, _ := s.FirstUse(ctx, "jti-1", c.t.Add(time.Minute)); !got {
		t.Fatal("a key past its until is still remembered")
	}
}

// TestCookieStoreRevokedDoesNotAllocate: after a back-channel logout the
// denylist is asked on every request; the question costs no allocation.
func TestCookieStoreRevokedDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	s := NewCookieStore(CookieStoreOptions{Now: (&clock{epoch}).now})
	_ = s.EndProviderSession(ctx, ProviderLogout{SID: "op-1", At: epoch, Until: epoch.Add(time.Hour)})
	_ = s.EndProviderSession(ctx, ProviderLogout{Provider: "corporate-entra-id", Subject: "someone", At: epoch, Until: epoch.Add(time.Hour)})
	for _, provider := range []string{"", "corporate-entra-id"} {
		sess := &Session{ID: "x", Provider: provider, Identity: identity.Identity{Subject: "a-subject-of-forty-bytes-like-entra-ids"}, SID: "a-provider-session-id-longer-than-32-bytes", Created: epoch.Unix()}
		if n := testing.AllocsPerRun(100, func() { _, _ = s.Revoked(ctx, sess) }); n != 0 {
			t.Fatalf("Revoked (provider %q) allocates %.0f times per call", provider, n)
		}
	}
}
