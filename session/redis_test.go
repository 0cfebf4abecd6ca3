package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-auth/gatehouse/internal/testredis"
)

// instance is one gatehouse instance's view of a shared Redis: its own
// client (its own client-side cache) and Manager.
type instance struct {
	store *RedisStore
	m     *Manager
}

func newInstance(t *testing.T, srv *testredis.Server, c *clock) *instance {
	t.Helper()
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{srv.Addr()}, ForceSingleClient: true, DisableRetry: true,
		ConnWriteTimeout: 2 * time.Second, PipelineMultiplex: -1, Dialer: net.Dialer{Timeout: 2 * time.Second},
	})
	if client == nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	store, err := NewRedisStore(RedisStoreOptions{Client: client, Namespace: "issuer\x00client", Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: time.Hour, Store: store, Name: DefaultHostName})
	if err != nil {
		t.Fatal(err)
	}
	return &instance{store, m}
}

// eventually retries check until it passes or a second has gone: another
// instance sees a change when Redis's invalidation message reaches it,
// a moment after the writer's command returned.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	for range 100 {
		if err = check(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func TestRedisStoreHandleCookie(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a := newInstance(t, srv, c)
	sess := testSession(c.t)
	sess.SID = "op-session-1"
	sess.AccessToken = strings.Repeat("A", 1200) // a 1 KB JWT access token
	sess.IDToken = strings.Repeat("I", 1500)
	cookies := save(t, a.m, request(nil), sess)
	if len(cookies) != 1 {
		t.Fatalf("%d cookies: the handle fits one", len(cookies))
	}
	if n := len(cookies[0].String()); n >= 300 {
		t.Fatalf("the Set-Cookie header is %d bytes, want < 300: %s", n, cookies[0])
	}
	for _, secret := range []string{"at-", "AAAA", "alice", sess.Subject} {
		if strings.Contains(cookies[0].Value, secret) {
			t.Fatalf("the cookie carries %q", secret)
		}
	}
	got, _, err := a.m.Load(request(cookies))
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != sess.AccessToken || got.Email != sess.Email || got.SID != sess.SID {
		t.Fatalf("loaded %v", got)
	}

	// The same session saved again (a refresh) keeps its handle: requests
	// that still carry the cookie see the new tokens.
	next := *got
	next.AccessToken = "at-2"
	again := save(t, a.m, request(cookies), &next)
	if h1, h2 := unsealed(t, a.m, cookies), unsealed(t, a.m, again); !bytes.Equal(h1, h2) {
		t.Fatal("a saved session changed its handle")
	}
	if got, _, err := a.m.Load(request(cookies)); err != nil || got.AccessToken != "at-2" {
		t.Fatalf("the old cookie after a save: %v, %v", got, err)
	}
}

func unsealed(t *testing.T, m *Manager, cookies []*http.Cookie) []byte {
	t.Helper()
	var buf [maxChunks]string
	parts, err := m.readSealed(request(cookies), &buf)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := m.unseal(joinChunks(parts))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRedisStoreRefusesForgedHandles(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a := newInstance(t, srv, c)
	sess := testSession(c.t)
	value, err := a.store.Save(t.Context(), sess, c.t.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := bytes.Clone(value)
	wrongKey[5] ^= 1
	for name, v := range map[string][]byte{
		"empty":         nil,
		"short":         value[:20],
		"wrong version": append([]byte{9}, value[1:]...),
		"wrong key":     wrongKey,
		"unknown id":    append(bytes.Clone(value[:1+recordKeyLen]), "NOSUCHSESSION"...),
		"long id":       append(bytes.Clone(value[:1+recordKeyLen]), strings.Repeat("x", 65)...),
	} {
		if _, err := a.store.Load(t.Context(), v); !errors.Is(err, ErrNoSession) {
			t.Errorf("%s: %v, want ErrNoSession", name, err)
		}
	}
	// A record another session's key sealed does not open with this one's
	// (records are bound to their names).
	other := testSession(c.t)
	if _, err := a.store.Save(t.Context(), other, c.t.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	swapped := append(bytes.Clone(value[:1+recordKeyLen]), other.ID...)
	if _, err := a.store.Load(t.Context(), swapped); !errors.Is(err, ErrInvalid) {
		t.Fatalf("another session's ID under this key: %v", err)
	}
}

// TestRedisStoreAcrossInstances: what one instance does, the others see —
// a refresh, a sign-out, a provider's logout, a used jti.
func TestRedisStoreAcrossInstances(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a, b := newInstance(t, srv, c), newInstance(t, srv, c)
	sess := testSession(c.t)
	cookies := save(t, a.m, request(nil), sess)
	got, _, err := b.m.Load(request(cookies)) // b caches it now
	if err != nil || got.AccessToken != "at-secret" {
		t.Fatalf("b: %v, %v", got, err)
	}

	next := *got
	next.AccessToken = "at-refreshed"
	save(t, a.m, request(cookies), &next)
	eventually(t, "b sees a's refresh", func() error {
		got, _, err := b.m.Load(request(cookies))
		if err == nil && got.AccessToken != "at-refreshed" {
			err = errors.New("still " + got.AccessToken)
		}
		return err
	})

	if err := a.m.Revoke(t.Context(), &next); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b refuses a signed-out session", func() error {
		if _, _, err := b.m.Load(request(cookies)); !errors.Is(err, ErrNoSession) {
			return errors.New("still loads")
		}
		return nil
	})

	first, err := a.m.FirstUse(t.Context(), "jti-1", c.t.Add(time.Minute))
	if err != nil || !first {
		t.Fatalf("first use: %v, %v", first, err)
	}
	if again, err := b.m.FirstUse(t.Context(), "jti-1", c.t.Add(time.Minute)); err != nil || again {
		t.Fatalf("second use on another instance: %v, %v", again, err)
	}
}

func TestRedisStoreProviderLogout(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a, b := newInstance(t, srv, c), newInstance(t, srv, c)
	login := func(sub, sid string) []*http.Cookie {
		s := testSession(c.t)
		s.Subject, s.SID = sub, sid
		return save(t, a.m, request(nil), s)
	}
	alice1, alice2, bob := login("alice", "op-1"), login("alice", "op-2"), login("bob", "op-3")
	for _, ck := range [][]*http.Cookie{alice1, alice2, bob} {
		if _, _, err := b.m.Load(request(ck)); err != nil {
			t.Fatal(err)
		}
	}
	alive := func(ck []*http.Cookie) bool { _, _, err := b.m.Load(request(ck)); return err == nil }

	// By sid: only that provider session ends, on every instance.
	if err := a.m.EndProviderSession(t.Context(), "", "op-1", "alice", c.t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sid's session ends", func() error {
		if alive(alice1) {
			return errors.New("alive")
		}
		return nil
	})
	if !alive(alice2) || !alive(bob) {
		t.Fatal("a logout by sid ended other sessions")
	}

	// By sub: every session of the user created until then; a login after
	// it is a new session.
	c.t = c.t.Add(2 * time.Second)
	if err := b.m.EndProviderSession(t.Context(), "", "", "alice", c.t); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Second)
	later := login("alice", "op-4")
	eventually(t, "the sub's sessions end", func() error {
		if alive(alice2) {
			return errors.New("alive")
		}
		return nil
	})
	if !alive(bob) || !alive(later) {
		t.Fatal("a logout by sub ended another user's session, or a later one")
	}
}

// TestRedisDumpHoldsNoSecret: whoever reads Redis (a dump, a replica, a
// compromised server) finds no token, e-mail or subject.
func TestRedisDumpHoldsNoSecret(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a := newInstance(t, srv, c)
	sess := testSession(c.t)
	sess.Subject = "subject-7e1f0c"
	sess.SID = "provider-session-93a1"
	sess.Email = "carol.secret@example.com"
	sess.AccessToken, sess.RefreshToken, sess.IDToken = "eyJhbGciOiJSUzI1NiJ9.access-4f1d", "refresh-8c2b", "eyJ.id-token-55aa"
	save(t, a.m, request(nil), sess)
	if _, err := a.m.FirstUse(t.Context(), "jti-c0ffee", c.t.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dump, err := srv.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if len(dump) < 100 {
		t.Fatalf("a %d-byte dump: nothing saved?", len(dump))
	}
	for _, secret := range []string{"access-4f1d", "refresh-8c2b", "id-token-55aa", "carol.secret", "subject-7e1f0c", "provider-session-93a1", "jti-c0ffee", "alice"} {
		if bytes.Contains(dump, []byte(secret)) {
			t.Errorf("the Redis dump holds %q", secret)
		}
	}
}

// TestRedisStoreUnavailable: a Redis that stops answering is "cannot
// tell" (ErrUnavailable), never "no session" or a session; when it is back
// the same client recovers without a restart.
func TestRedisStoreUnavailable(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a := newInstance(t, srv, c)
	cookies := save(t, a.m, request(nil), testSession(c.t))
	if _, _, err := a.m.Load(request(cookies)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Dump(); err != nil { // persist, so the restarted server has the session
		t.Fatal(err)
	}
	srv.Stop()
	// The cache may answer until the client has seen its connection close.
	eventually(t, "the client sees Redis go", func() error {
		if _, _, err := a.m.Load(request(cookies)); err == nil {
			return errors.New("still answered from the cache")
		}
		return nil
	})
	for i := range 3 {
		sess, _, err := a.m.Load(request(cookies))
		if sess != nil || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoSession) {
			t.Fatalf("load %d with Redis down: %v, %v", i, sess, err)
		}
	}
	w := httptest.NewRecorder()
	if err := a.m.Save(w, request(nil), testSession(c.t)); !errors.Is(err, ErrUnavailable) || len(w.Result().Cookies()) != 0 {
		t.Fatalf("save with Redis down: %v, cookies %v", err, w.Result().Cookies())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery", func() error { _, _, err := a.m.Load(request(cookies)); return err })
}

// TestRedisRefreshLease: one instance takes a session's refresh lease, the
// others wait for its saved result; a failed refresh gives the lease up.
func TestRedisRefreshLease(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a, b := newInstance(t, srv, c), newInstance(t, srv, c)
	cookies := save(t, a.m, request(nil), testSession(c.t))
	sa, _, err := a.m.Load(request(cookies))
	if err != nil {
		t.Fatal(err)
	}
	sb, _, err := b.m.Load(request(cookies))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	release, ok, err := a.store.TryLease(ctx, sa, 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("a's lease: %v, %v", ok, err)
	}
	if _, ok, err := b.store.TryLease(ctx, sb, 10*time.Second); err != nil || ok {
		t.Fatalf("b took a held lease: %v, %v", ok, err)
	}
	var wg sync.WaitGroup
	var waited *Session
	var waitErr error
	wg.Go(func() { waited, waitErr = b.store.AwaitRefresh(ctx, sb, 10*time.Second) })
	next := *sa
	next.AccessToken, next.RefreshToken = "at-2", "rt-2"
	save(t, a.m, request(cookies), &next) // ends the lease
	wg.Wait()
	if waitErr != nil || waited.RefreshToken != "rt-2" {
		t.Fatalf("b waited for %v, %v", waited, waitErr)
	}
	_ = release

	// A lease given up without new tokens: the waiter hears so.
	release, ok, err = a.store.TryLease(ctx, &next, 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("lease after the save: %v, %v", ok, err)
	}
	wg.Go(func() { waited, waitErr = b.store.AwaitRefresh(ctx, &next, 10*time.Second) })
	time.Sleep(50 * time.Millisecond)
	release()
	wg.Wait()
	if !errors.Is(waitErr, ErrLeaseLost) {
		t.Fatalf("after a released lease: %v, %v", waited, waitErr)
	}
}

// TestRedisStoreProviderLogoutPerProvider: two providers may both have a
// subject "123" and a sid "abc"; a logout from one ends its sessions only,
// on every instance. The provider "" (one provider written flat) keeps the
// index keys it had before providers had names.
func TestRedisStoreProviderLogoutPerProvider(t *testing.T) {
	srv := testredis.Start(t)
	c := &clock{time.Now()}
	a, b := newInstance(t, srv, c), newInstance(t, srv, c)
	login := func(provider string) []*http.Cookie {
		s := testSession(c.t)
		s.Provider, s.Subject, s.SID = provider, "123", "abc"
		return save(t, a.m, request(nil), s)
	}
	flat, pa, pb := login(""), login("a"), login("b")
	alive := func(ck []*http.Cookie) bool { _, _, err := b.m.Load(request(ck)); return err == nil }
	for _, ck := range [][]*http.Cookie{flat, pa, pb} {
		if !alive(ck) {
			t.Fatal("a session does not load")
		}
	}
	if sess, _, err := b.m.Load(request(pa)); err != nil || sess.Provider != "a" {
		t.Fatalf("provider not kept: %v, %v", sess, err)
	}

	// The flat provider's index keys are those written before providers
	// had names: Redis data of earlier versions still ends on logout.
	hash := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return base64.RawURLEncoding.EncodeToString(sum[:18])
	}
	for _, key := range []string{"sid:" + hash("abc"), "sub:" + hash("123")} {
		if n, err := srv.Do("EXISTS", a.store.prefix+key); err != nil || n != "1" {
			t.Fatalf("the flat provider's index %s: %q, %v", key, n, err)
		}
	}

	// By sub, from provider a: only a's session ends.
	if err := a.m.EndProviderSession(t.Context(), "a", "", "123", c.t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's session ends", func() error {
		if alive(pa) {
			return errors.New("alive")
		}
		return nil
	})
	if !alive(pb) || !alive(flat) {
		t.Fatal("a logout from provider a ended another provider's session")
	}

	// By sid, from the flat provider: only its session ends.
	if err := b.m.EndProviderSession(t.Context(), "", "abc", "123", c.t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flat provider's session ends", func() error {
		if alive(flat) {
			return errors.New("alive")
		}
		return nil
	})
	if !alive(pb) {
		t.Fatal("a logout from the flat provider ended provider b's session")
	}

	// By sid, from provider b.
	if err := a.m.EndProviderSession(t.Context(), "b", "abc", "", c.t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's session ends", func() error {
		if alive(pb) {
			return errors.New("alive")
		}
		return nil
	})
}

// TestRedisIndexKeysPerProvider: a provider's name and the indexed value
// cannot run into each other's, nor into the flat provider's.
func TestRedisIndexKeysPerProvider(t *testing.T) {
	s := &RedisStore{prefix: "p:"}
	seen := map[string]string{}
	for _, c := range [][3]string{
		{"", "sub", "ab"}, {"a", "sub", "b"}, {"ab", "sub", ""}, {"", "sid", "ab"}, {"a", "sid", "b"},
		{"1:a", "sub", "b"}, {"1", "sub", ":ab"},
	} {
		k := s.providerIndexKey(c[0], c[1], c[2])
		if prev, ok := seen[k]; ok {
			t.Fatalf("%v and %s share the key %s", c, prev, k)
		}
		seen[k] = strings.Join(c[:], "|")
	}
	if s.providerIndexKey("", "sub", "123") != s.indexKey("sub", "123") {
		t.Fatal("the flat provider's key changed")
	}
}
