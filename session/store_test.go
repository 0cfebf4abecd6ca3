package session

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestCookieStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := NewCookieStore(CookieStoreOptions{})
	sess := testSession(epoch)
	sess.Claims = map[string][]string{"k": {"v"}}
	value, err := s.Save(ctx, sess)
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
		ok, err := s.Revoked(ctx, id)
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
	if ok, _ := s.Revoked(ctx, "49"); !ok {
		t.Fatal("the newest revocation was dropped")
	}
	if ok, _ := s.Revoked(ctx, "0"); ok {
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
