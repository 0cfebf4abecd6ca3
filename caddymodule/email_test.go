package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/jwttest"
)

// keyServer serves a JWKS of its own key, for bearer tokens with claims a
// test chooses: a gatehouse whose bearer block names it as issuer and
// jwks_uri accepts what key signs.
type keyServer struct {
	*httptest.Server
	key *jwttest.Key
}

func newKeyServer(t *testing.T) *keyServer {
	k := &keyServer{key: jwttest.NewKey("test-1", "RS256")}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwttest.JWKS(k.key))
	}))
	t.Cleanup(k.Close)
	return k
}

// sign signs an access token for apiAudience with claims on top.
func (k *keyServer) sign(claims map[string]any) string {
	base := map[string]any{
		"iss": k.URL, "sub": "u1", "aud": apiAudience, "scope": "orders:read",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	for name, v := range claims {
		base[name] = v
	}
	return k.key.Sign(base, nil)
}

// bearer is a bearer block trusting k.
func (k *keyServer) bearer() *BearerConfig {
	return &BearerConfig{Audiences: []string{apiAudience}, Issuer: k.URL, JWKSURI: k.URL + "/jwks", Algorithms: []string{"RS256"}}
}

// TestUnverifiedEmailIsNotForwarded (issue 10, defect 6; review SA2-04):
// an e-mail the provider did not vouch for never reaches the upstream — not
// as X-Forwarded-Email, not as {http.auth.user.email} — and matches no
// e-mail rule; the string "false" counts as unverified (it used to pass).
func TestUnverifiedEmailIsNotForwarded(t *testing.T) {
	g := newHandler(t, "https://idp.example", nil)
	sess := aliceSession()
	sess.EmailUnverified = true
	r := httptest.NewRequest("GET", "/app", nil)
	for _, c := range sessionCookies(t, g, sess) {
		r.AddCookie(c)
	}
	resp, up, err := serve(t, g, r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	if v, ok := up.req.Header["X-Forwarded-Email"]; ok {
		t.Errorf("X-Forwarded-Email = %q for an unverified e-mail", v)
	}
	if got, _ := up.repl.GetString("http.auth.user.email"); got != "" {
		t.Errorf("{http.auth.user.email} = %q for an unverified e-mail", got)
	}

	keys := newKeyServer(t)
	api := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = keys.bearer()
		g.AllowDomains = []string{"corp.example"}
	})
	for _, tc := range []struct {
		name     string
		verified any // nil: absent
		status   int
	}{
		{"verified", true, http.StatusOK},
		{"false", false, http.StatusForbidden},
		{`the string "false"`, "false", http.StatusForbidden},
		{"absent", nil, http.StatusForbidden},
	} {
		claims := map[string]any{"email": "ceo@corp.example"}
		if tc.verified != nil {
			claims["email_verified"] = tc.verified
		}
		resp, up, _ := serve(t, api, apiRequest("Bearer "+keys.sign(claims)))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if up.called && tc.status != http.StatusOK {
			t.Errorf("%s: the upstream was called", tc.name)
		}
	}
	// With assume_email_verified an absent claim vouches; false still does not.
	assume := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = keys.bearer()
		g.AssumeEmailVerified = true
	})
	for verified, want := range map[any]string{nil: "ceo@corp.example", false: ""} {
		claims := map[string]any{"email": "ceo@corp.example"}
		if verified != nil {
			claims["email_verified"] = verified
		}
		_, up, _ := serve(t, assume, apiRequest("Bearer "+keys.sign(claims)))
		if got := up.req.Header.Get("X-Forwarded-Email"); got != want {
			t.Errorf("assume_email_verified, email_verified %v: X-Forwarded-Email %q, want %q", verified, got, want)
		}
	}
	// A user named by an unverified e-mail is refused.
	byEmail := newHandler(t, "https://idp.example", func(g *Gatehouse) {
		g.Bearer = keys.bearer()
		g.UserClaim = "email"
	})
	if resp, up, _ := serve(t, byEmail, apiRequest("Bearer "+keys.sign(map[string]any{"email": "ceo@corp.example", "email_verified": false}))); resp.StatusCode != http.StatusUnauthorized || up.called {
		t.Errorf("user_claim email with an unverified e-mail: %d", resp.StatusCode)
	}
}

// TestBearerJWKSFile (issue 13, bearer { jwks_file }): pinned keys from a
// file verify tokens with nothing fetched — the provider need not be
// reachable — and a token of another key is refused.
func TestBearerJWKSFile(t *testing.T) {
	keys := newKeyServer(t)
	stranger := newKeyServer(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwttest.JWKS(keys.key), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newHandler(t, closedURL(t), func(g *Gatehouse) {
		g.Bearer = &BearerConfig{Audiences: []string{apiAudience}, Issuer: keys.URL, JWKSFile: file, Only: true}
	})
	keys.Close() // nothing may be fetched from it
	if resp, up, _ := serve(t, g, apiRequest("Bearer "+keys.sign(nil))); resp.StatusCode != http.StatusOK || !up.called {
		t.Fatalf("a token of the pinned key: %d", resp.StatusCode)
	}
	forged := stranger.key.Sign(map[string]any{"iss": keys.URL, "aud": apiAudience, "sub": "u1", "scope": "orders:read",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}, nil)
	if resp, up, _ := serve(t, g, apiRequest("Bearer "+forged)); resp.StatusCode != http.StatusUnauthorized || up.called {
		t.Fatalf("a token of another key: %d", resp.StatusCode)
	}
}
