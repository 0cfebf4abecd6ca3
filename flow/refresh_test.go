package flow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse-auth/gatehouse/identity"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/session"
)

// rotatingTokens is a token endpoint with refresh-token rotation: each
// refresh token works once; the next one comes with the answer.
type rotatingTokens struct {
	p        *scripted
	mu       sync.Mutex
	live     map[string]bool
	n        int
	refresh  atomic.Int64
	groups   []string // groups in the refreshed ID token
	subject  string
	noIDTok  bool
	unavail  atomic.Bool
	accessIn time.Duration
	idExtra  map[string]any // claims added to (or replacing) the refreshed ID token's
}

func newRotating(p *scripted) *rotatingTokens {
	rt := &rotatingTokens{p: p, live: map[string]bool{"rt-0": true}, groups: []string{"staff"}, subject: "user-1", accessIn: 5 * time.Minute}
	p.set(func(p *scripted) { p.token = rt.serve })
	return rt
}

func (rt *rotatingTokens) serve(w http.ResponseWriter, r *http.Request) {
	if rt.unavail.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") != "refresh_token" {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	rt.refresh.Add(1)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	old := r.PostForm.Get("refresh_token")
	if !rt.live[old] {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token reused"}`))
		return
	}
	delete(rt.live, old)
	rt.n++
	next := fmt.Sprintf("rt-%d", rt.n)
	rt.live[next] = true
	access := fmt.Sprintf("at-%d", rt.n)
	resp := map[string]any{"access_token": access, "token_type": "Bearer", "refresh_token": next}
	if rt.accessIn > 0 {
		resp["expires_in"] = int(rt.accessIn / time.Second)
	}
	if !rt.noIDTok {
		sum := sha256.Sum256([]byte(access))
		claims := map[string]any{
			"iss": rt.p.URL, "sub": rt.subject, "aud": clientID, "exp": epoch.Add(time.Hour).Unix(), "iat": epoch.Unix(),
			"at_hash": base64.RawURLEncoding.EncodeToString(sum[:16]), "groups": rt.groups,
		}
		for k, v := range rt.idExtra {
			claims[k] = v
		}
		resp["id_token"] = rt.p.key.Sign(claims, nil)
	}
	json.NewEncoder(w).Encode(resp)
}

// refreshFixture is a Refresher over a scripted provider whose userinfo
// answers for the refreshed access tokens too.
func refreshFixture(t *testing.T, clock *testClock) (*Refresher, *rotatingTokens, *scripted) {
	p := newScripted(t)
	p.set(func(p *scripted) {
		p.userinfo = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"user-1","email":"user1@example.com"}`))
		}
	})
	rt := newRotating(p)
	c := newClient(t, p, func(po *ProviderOptions, o *ClientOptions) { po.Now, o.Now = clock.now, clock.now })
	r, err := NewRefresher(RefresherOptions{
		Client: c,
		Now:    clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, rt, p
}

func expiringSession(clock *testClock, in time.Duration) *session.Session {
	return &session.Session{
		ID: "sess-1", Identity: identity.Identity{Subject: "user-1", User: "user-1", Groups: []string{"admins"}},
		AccessToken: "at-0", RefreshToken: "rt-0",
		AccessExpiry: clock.now().Add(in).Unix(), Created: clock.now().Unix(),
	}
}

func TestRefreshAheadOfExpiry(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)

	far := expiringSession(clock, 10*time.Minute)
	if s, updated, err := r.Fresh(context.Background(), far); err != nil || updated || s != far {
		t.Fatalf("a token with 10 minutes left was refreshed: %v %v", updated, err)
	}
	if rt.refresh.Load() != 0 {
		t.Fatal("token endpoint called")
	}

	soon := expiringSession(clock, 30*time.Second) // within the default 1m
	s, updated, err := r.Fresh(context.Background(), soon)
	if err != nil || !updated {
		t.Fatalf("refresh: %v %v", updated, err)
	}
	if s.RefreshToken != "rt-1" || s.AccessToken != "at-1" || s.AccessExpiry != epoch.Add(5*time.Minute).Unix() {
		t.Fatalf("rotated tokens not stored: %+v", s)
	}
	if strings.Join(s.Groups, ",") != "staff" {
		t.Fatalf("claims not updated from the refreshed ID token: %v", s.Groups)
	}
	if s.ID != soon.ID || s.Created != soon.Created {
		t.Fatal("refresh changed the session's identity or login time")
	}
	if soon.RefreshToken != "rt-0" {
		t.Fatal("the old session was modified")
	}
}

// TestShortLivedTokensRefreshOncePerToken (issue 10, defect 2): with
// 30-second access tokens (below refresh_before's 1m) a session browsing
// for five minutes, a request a second, refreshes about once per token
// lifetime — it used to refresh on every request.
func TestShortLivedTokensRefreshOncePerToken(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.accessIn = 30 * time.Second
	s := expiringSession(clock, 30*time.Second)
	s.AccessIssued = clock.now().Unix()
	const browse = 300
	for i := range browse {
		clock.advance(time.Second)
		next, _, err := r.Fresh(context.Background(), s)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if next.AccessToken != s.AccessToken && i < 20 {
			t.Fatalf("request %d (%ds into a 30s token) refreshed", i, i+1)
		}
		s = next
	}
	if n := rt.refresh.Load(); n < browse/30-1 || n > browse/30+1 {
		t.Fatalf("%d refresh grants in %ds of 30-second tokens, want about %d", n, browse, browse/30)
	}
}

// TestRefreshWithoutExpiryDoesNotLoop (review SA2-14): a refresh answer
// with neither expires_in nor an ID token leaves the expiry unknown, not
// the old (past) one, so the next requests do not refresh again.
func TestRefreshWithoutExpiryDoesNotLoop(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.accessIn, rt.noIDTok = 0, true
	s := expiringSession(clock, 10*time.Second)
	for range 3 {
		clock.advance(20 * time.Second)
		next, _, err := r.Fresh(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		s = next
	}
	if n := rt.refresh.Load(); n != 1 {
		t.Fatalf("%d refresh grants after the first refresh left no expiry, want 1", n)
	}
	if s.AccessExpiry != 0 || s.AccessToken != "at-1" {
		t.Fatalf("refreshed session: expiry %d, access token %q", s.AccessExpiry, s.AccessToken)
	}
}

// TestRefreshConcurrentRequestsShareOne: 50 requests of one expiring
// session cause exactly one token-endpoint call and all succeed — and the
// same old cookie arriving a moment later is answered without a refresh.
func TestRefreshConcurrentRequestsShareOne(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	old := expiringSession(clock, 10*time.Second)
	var wg sync.WaitGroup
	var okCount atomic.Int64
	tokens := sync.Map{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp := *old // each request decoded its own copy of the cookie
			s, _, err := r.Fresh(context.Background(), &cp)
			if err == nil {
				okCount.Add(1)
				tokens.Store(s.RefreshToken, true)
			}
		}()
	}
	wg.Wait()
	if okCount.Load() != 50 {
		t.Fatalf("%d of 50 requests succeeded", okCount.Load())
	}
	if n := rt.refresh.Load(); n != 1 {
		t.Fatalf("%d token-endpoint calls for 50 concurrent requests, want 1", n)
	}
	distinct := 0
	tokens.Range(func(any, any) bool { distinct++; return true })
	if distinct != 1 {
		t.Fatalf("%d different refresh tokens handed out", distinct)
	}
	// A request that was in flight with the old cookie is served with the
	// new tokens, but not given them (review SA2-12): no cookie, so a
	// stolen pre-refresh cookie cannot obtain the rotated refresh token.
	clock.advance(5 * time.Second)
	cp := *old
	if s, updated, err := r.Fresh(context.Background(), &cp); err != nil || updated || s.AccessToken != "at-1" {
		t.Fatalf("a late request with the old cookie: %v %v %v", s, updated, err)
	}
	if n := rt.refresh.Load(); n != 1 {
		t.Fatalf("the old refresh token was spent again (%d calls)", n)
	}
	// Past the window the old cookie's refresh token goes to the provider,
	// whose reuse detection refuses it: that session is over.
	clock.advance(30 * time.Second)
	cp = *old
	if _, _, err := r.Fresh(context.Background(), &cp); !errors.Is(err, ErrRefreshRejected) {
		t.Fatalf("the old cookie 35s after the refresh: %v", err)
	}
}

func TestRefreshRejectedEndsTheSession(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.mu.Lock()
	rt.live = map[string]bool{} // revoked at the provider
	rt.mu.Unlock()
	s, _, err := r.Fresh(context.Background(), expiringSession(clock, 30*time.Second))
	if !errors.Is(err, ErrRefreshRejected) || s != nil {
		t.Fatalf("got %v, %v; want ErrRefreshRejected", s, err)
	}
}

func TestRefreshProviderDown(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.unavail.Store(true)
	valid := expiringSession(clock, 30*time.Second)
	if s, updated, err := r.Fresh(context.Background(), valid); err != nil || updated || s != valid {
		t.Fatalf("provider down, access token still valid: %v %v %v", s, updated, err)
	}
	expired := expiringSession(clock, -time.Second)
	if s, _, err := r.Fresh(context.Background(), expired); !errors.Is(err, ErrProviderUnavailable) || s != nil {
		t.Fatalf("provider down, access token expired: %v %v", s, err)
	}
	rt.unavail.Store(false)
	if _, updated, err := r.Fresh(context.Background(), valid); err != nil || !updated {
		t.Fatalf("provider back: %v %v", updated, err)
	}
}

func TestRefreshWithoutRefreshToken(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	s := expiringSession(clock, 30*time.Second)
	s.RefreshToken = ""
	if got, _, err := r.Fresh(context.Background(), s); err != nil || got != s {
		t.Fatalf("still valid: %v", err)
	}
	clock.advance(31 * time.Second)
	if _, _, err := r.Fresh(context.Background(), s); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("expired without a refresh token: %v", err)
	}
	if rt.refresh.Load() != 0 {
		t.Fatal("refresh attempted without a refresh token")
	}
}

func TestRefreshedIDTokenForAnotherSubject(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.subject = "someone-else"
	if _, _, err := r.Fresh(context.Background(), expiringSession(clock, 30*time.Second)); !errors.Is(err, ErrIDToken) {
		t.Fatalf("refreshed ID token with another sub: %v", err)
	}
}

func TestRefreshWithoutIDToken(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, _ := refreshFixture(t, clock)
	rt.noIDTok = true
	s, updated, err := r.Fresh(context.Background(), expiringSession(clock, 30*time.Second))
	if err != nil || !updated || s.RefreshToken != "rt-1" {
		t.Fatalf("refresh without an ID token: %v %v", s, err)
	}
}

func TestEndSessionURL(t *testing.T) {
	p := newScripted(t)
	p.set(func(p *scripted) { p.doc["end_session_endpoint"] = p.URL + "/logout?tenant=x" })
	c := newClient(t, p)
	u, ok := c.EndSessionURL(context.Background(), "the.id.token", "https://app.example/bye")
	if !ok {
		t.Fatal("no end-session URL")
	}
	parsed, _ := url.Parse(u)
	q := parsed.Query()
	if parsed.Path != "/logout" || q.Get("tenant") != "x" || q.Get("id_token_hint") != "the.id.token" ||
		q.Get("post_logout_redirect_uri") != "https://app.example/bye" || q.Get("client_id") != clientID || len(q.Get("state")) < 20 {
		t.Fatalf("end-session URL %s", u)
	}
	u, _ = c.EndSessionURL(context.Background(), "", "")
	if q, _ := url.ParseQuery(strings.SplitN(u, "?", 2)[1]); q.Get("client_id") != clientID || q.Has("id_token_hint") {
		t.Fatalf("without an ID token: %s", u)
	}
	p2 := newScripted(t)
	if _, ok := newClient(t, p2).EndSessionURL(context.Background(), "x", "/"); ok {
		t.Fatal("an end-session URL for a provider without the endpoint")
	}
}

func TestRevoke(t *testing.T) {
	p := newScripted(t)
	var got url.Values
	var auth string
	p.Config.Handler.(*http.ServeMux).HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got, auth = r.PostForm, r.Header.Get("Authorization")
	})
	p.set(func(p *scripted) { p.doc["revocation_endpoint"] = p.URL + "/revoke" })
	c := newClient(t, p)
	if err := c.Revoke(context.Background(), "rt-9", "refresh_token"); err != nil {
		t.Fatal(err)
	}
	if got.Get("token") != "rt-9" || got.Get("token_type_hint") != "refresh_token" || !strings.HasPrefix(auth, "Basic ") {
		t.Fatalf("revocation request: %v %q", got, auth)
	}
}

// TestRefreshKeepsNewTokensWhenUserinfoFails: the refresh token is spent
// once the exchange succeeds, so a failing userinfo call must not lose the
// new tokens (the next refresh would replay a dead one). The identity is
// kept as it was.
func TestRefreshKeepsNewTokensWhenUserinfoFails(t *testing.T) {
	clock := &testClock{t: epoch}
	r, _, p := refreshFixture(t, clock)
	p.set(func(p *scripted) {
		p.userinfo = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }
	})
	old := expiringSession(clock, 30*time.Second)
	s, updated, err := r.Fresh(context.Background(), old)
	if err != nil || !updated || s.RefreshToken != "rt-1" {
		t.Fatalf("userinfo down during a refresh: %v %v %v", s, updated, err)
	}
	if strings.Join(s.Groups, ",") != "admins" {
		t.Fatalf("identity changed without verified claims: %v", s.Groups)
	}
}

// TestRefreshedIDTokenMatchesTheLogin (review SA2-24; OpenID Connect Core
// §12.2): a refreshed ID token must be newly issued, keep the login's
// auth_time, and carry no nonce but the login's.
func TestRefreshedIDTokenMatchesTheLogin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		ok    bool
	}{
		{"same auth_time and nonce", map[string]any{"auth_time": 1000, "nonce": "login-nonce"}, true},
		{"no nonce", map[string]any{"auth_time": 1000}, true},
		{"another auth_time", map[string]any{"auth_time": 2000, "nonce": "login-nonce"}, false},
		{"another nonce", map[string]any{"auth_time": 1000, "nonce": "other"}, false},
		{"issued an hour ago", map[string]any{"iat": epoch.Add(-time.Hour).Unix()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &testClock{t: epoch}
			r, rt, p := refreshFixture(t, clock)
			rt.idExtra = tc.extra
			s := expiringSession(clock, 30*time.Second)
			s.IDToken = p.key.Sign(map[string]any{
				"iss": p.URL, "sub": "user-1", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(), "iat": epoch.Unix(),
				"auth_time": 1000, "nonce": "login-nonce",
			}, nil)
			_, _, err := r.Fresh(context.Background(), s)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrIDToken) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestRefreshWithoutIDTokenReadsUserinfo (review SA2-13): a provider that
// sends no ID token on refresh still gets its group changes into the
// session, through userinfo — whose sub must be the session's.
func TestRefreshWithoutIDTokenReadsUserinfo(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, p := refreshFixture(t, clock)
	rt.noIDTok = true
	p.set(func(p *scripted) {
		p.userinfo = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"user-1","groups":["staff"]}`))
		}
	})
	s, updated, err := r.Fresh(context.Background(), expiringSession(clock, 30*time.Second))
	if err != nil || !updated || strings.Join(s.Groups, ",") != "staff" {
		t.Fatalf("groups after a refresh without an ID token: %v %v %v", s, updated, err)
	}
	p.set(func(p *scripted) {
		p.userinfo = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"someone-else","groups":["admins"]}`))
		}
	})
	clock.advance(5 * time.Minute) // the refreshed token is due
	if _, _, err := r.Fresh(context.Background(), s); !errors.Is(err, ErrUserinfo) {
		t.Fatalf("userinfo for another subject after a refresh: %v", err)
	}
}

// TestRefreshKeepsNewTokensWhenKeysAreUnavailable: the same when the new
// ID token cannot be checked because the JWKS cannot be fetched.
func TestRefreshKeepsNewTokensWhenKeysAreUnavailable(t *testing.T) {
	clock := &testClock{t: epoch}
	r, rt, p := refreshFixture(t, clock)
	p.set(func(p *scripted) { p.jwksDown = true })
	_ = rt
	s, updated, err := r.Fresh(context.Background(), expiringSession(clock, 30*time.Second))
	if err != nil || !updated || s.RefreshToken != "rt-1" || strings.Join(s.Groups, ",") != "admins" {
		t.Fatalf("JWKS down during a refresh: %v %v %v", s, updated, err)
	}
}
