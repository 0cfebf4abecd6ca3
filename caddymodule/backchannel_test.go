package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testredis"
)

// postLogout POSTs a back-channel logout form to a, as a provider does.
func postLogout(t *testing.T, a *app, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(a.URL+"/oauth2/backchannel_logout", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(resp)
}

// signedIn reports whether b's session at a still lets it through.
func signedIn(t *testing.T, a *app, b *browser) bool {
	t.Helper()
	resp, body := b.get(a.URL + "/page")
	switch {
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "hello "):
		return true
	case resp.StatusCode == http.StatusFound && !strings.HasPrefix(resp.Header.Get("Location"), a.URL):
		return false // sent to the provider to log in
	}
	t.Fatalf("neither served nor sent to log in: %d %s", resp.StatusCode, body)
	return false
}

// TestBackchannelLogoutRefuses: every request that is not a valid, fresh
// logout token for this client is a 400 (or 405) JSON answer that ends
// nothing.
func TestBackchannelLogoutRefuses(t *testing.T) {
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	b := a.login(t, "alice")
	sess := a.session(t, b)
	if sess.SID == "" {
		t.Fatal("devidp gave no sid")
	}
	otherClient, err := idp.MintLogoutToken("another-client", "alice", sess.SID)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(a.URL + "/oauth2/backchannel_logout")
	if err != nil {
		t.Fatal(err)
	}
	if readBody(resp); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for name, form := range map[string]url.Values{
		"no token":           {},
		"empty token":        {"logout_token": {""}},
		"two tokens":         {"logout_token": {otherClient, otherClient}},
		"not a JWT":          {"logout_token": {"not-a-jwt"}},
		"another client's":   {"logout_token": {otherClient}},
		"the login ID token": {"logout_token": {sess.IDToken}},
		"an access token":    {"logout_token": {sess.AccessToken}},
	} {
		resp, body := postLogout(t, a, form)
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || e.Error != "invalid_request" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", name, resp.Header.Get("Cache-Control"))
		}
		if strings.Contains(body, "eyJ") {
			t.Errorf("%s: the answer echoes a token: %s", name, body)
		}
	}
	if !signedIn(t, a, b) {
		t.Fatal("a refused logout token ended the session")
	}
}

// TestBackchannelLogout: a valid logout token ends the sessions of its
// provider session (sid) or user (sub), and only those; it works once.
func TestBackchannelLogout(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	a := newApp(t, newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.now = clock.now }))
	alice1, alice2, bob := a.login(t, "alice"), a.login(t, "alice"), a.login(t, "bob")
	sid1 := a.session(t, alice1).SID

	token, err := idp.MintLogoutToken(testClientID, "", sid1)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := postLogout(t, a, url.Values{"logout_token": {token}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout by sid: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	if signedIn(t, a, alice1) || !signedIn(t, a, alice2) || !signedIn(t, a, bob) {
		t.Fatal("a logout by sid ended the wrong sessions")
	}
	if resp, body := postLogout(t, a, url.Values{"logout_token": {token}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "replayed") {
		t.Fatalf("a replayed logout token: %d %s", resp.StatusCode, body)
	}

	bySub, err := idp.MintLogoutToken(testClientID, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postLogout(t, a, url.Values{"logout_token": {bySub}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout by sub: %d %s", resp.StatusCode, body)
	}
	if signedIn(t, a, alice2) || !signedIn(t, a, bob) {
		t.Fatal("a logout by sub ended the wrong sessions")
	}
	// Sessions are timed in seconds: one that starts in the logout's
	// second ends with it. A login a moment later is a new session.
	clock.advance(time.Second)
	if again := a.login(t, "alice"); !signedIn(t, a, again) {
		t.Fatal("a login after the logout is refused")
	}
}

// TestBackchannelLogoutProviderDown: a logout token that cannot be checked
// (the provider's keys cannot be fetched) is a 503 the provider may retry,
// never a 400 and never a logout.
func TestBackchannelLogoutProviderDown(t *testing.T) {
	idp, down := newSwitchableIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), nil))
	token, err := idp.MintLogoutToken(testClientID, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	resp, body := postLogout(t, a, url.Values{"logout_token": {token}})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("provider down: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestRedisStoreThroughGatehouse: with `store redis` the cookie is a small
// handle; a back-channel logout deletes the session from Redis; a Redis
// that stops is 503 with Retry-After (the cookie kept, no login, no 500)
// and gatehouse recovers when it is back, without a restart.
func TestRedisStoreThroughGatehouse(t *testing.T) {
	srv := testredis.Start(t)
	idp := newIDP(t)
	a := newApp(t, newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.Store = &StoreConfig{Redis: &RedisConfig{Address: srv.Addr(), KeyPrefix: "t:"}}
	}))
	b := a.login(t, "alice")
	u, _ := url.Parse(a.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if n := len(c.Name) + 1 + len(c.Value); n >= 300 {
			t.Fatalf("cookie %s is %d bytes", c.Name, n)
		}
	}
	if !signedIn(t, a, b) {
		t.Fatal("not signed in")
	}
	keys, err := srv.DoList("KEYS", "t:*")
	if err != nil || len(keys) == 0 {
		t.Fatalf("nothing in Redis: %v %v", keys, err)
	}

	if _, err := srv.Dump(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var resp *http.Response
	var body string
	for range 100 { // until the client has seen its connection close
		if resp, body = b.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
			break
		}
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("Redis down: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for _, c := range resp.Cookies() {
		t.Fatalf("a cookie was set while Redis was down: %s", c)
	}
	r, _ := http.NewRequest("POST", a.URL+"/oauth2/sign_out", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp := b.do(r); resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 {
		t.Fatalf("sign-out with Redis down: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	ok := false
	for range 100 {
		if resp, _ := b.get(a.URL + "/page"); resp.StatusCode == http.StatusOK {
			ok = true
			break
		}
	}
	if !ok || !signedIn(t, a, b) {
		t.Fatal("no recovery after Redis came back")
	}

	token, err := idp.MintLogoutToken(testClientID, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postLogout(t, a, url.Values{"logout_token": {token}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	if signedIn(t, a, b) {
		t.Fatal("the session outlived the back-channel logout")
	}
}
