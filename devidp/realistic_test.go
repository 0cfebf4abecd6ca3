package devidp_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// seen is what gatehouse makes of an access token: the claims its verifier
// and its identity mapping read. The issuer is left out (each provider
// under test has its own); azp and sid, which verify parses too, matter
// for ID tokens only.
type seen struct {
	Subject            string
	Audience, Scopes   []string
	Expiry, IssuedAt   time.Time
	NotBefore          time.Time
	Nonce, AtHash, Typ string
	Identity           identity.Identity
	IdentityErr        error
}

func gatehouseView(t *testing.T, e *env, token string) seen {
	t.Helper()
	e.parseJWT(token, appAudience) // signature, iss, exp, aud
	c, err := verify.ClaimsOfVerified(token)
	if err != nil {
		t.Fatalf("verify.ClaimsOfVerified: %v", err)
	}
	if c.Issuer != e.p.Issuer() {
		t.Errorf("iss = %q, want %q", c.Issuer, e.p.Issuer())
	}
	id, idErr := (&identity.Mapper{}).Map(c.Map())
	return seen{c.Subject, c.Audience, c.Scopes, c.Expiry, c.IssuedAt, c.NotBefore,
		c.Nonce, c.AccessTokenHash, c.Type, id, idErr}
}

// TestRealisticAccessTokens checks that Config.RealisticAccessTokens makes
// access tokens about 1 KB (RS256, a user with two groups), as Keycloak,
// Entra ID and Auth0 issue them, without changing anything gatehouse reads.
func TestRealisticAccessTokens(t *testing.T) {
	plain := newEnv(t, "", nil)
	real := newEnv(t, "", func(c *devidp.Config) { c.RealisticAccessTokens = true })

	type tokens struct{ minted, issued, idToken string }
	get := func(e *env) tokens {
		t.Helper()
		minted, err := e.p.MintAccessToken("alice", []string{appAudience, appID}, []string{"openid", "email"}, 0)
		if err != nil {
			t.Fatalf("MintAccessToken: %v", err)
		}
		verifier, challenge := pkce("real")
		body := e.token(codeForm(e.code(authzParams(challenge), "alice"), verifier)).json(t)
		at, _ := body["access_token"].(string)
		idt, _ := body["id_token"].(string)
		return tokens{minted, at, idt}
	}
	p, r := get(plain), get(real)

	for _, tc := range []struct{ name, plain, real string }{
		{"minted", p.minted, r.minted},
		{"token endpoint", p.issued, r.issued},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Logf("access token: %d bytes by default, %d realistic", len(tc.plain), len(tc.real))
			if n := len(tc.real); n < 900 || n > 1400 {
				t.Errorf("realistic access token is %d bytes, want 900–1400", n)
			}
			if len(tc.plain) >= len(tc.real)-300 {
				t.Errorf("plain token %d bytes, realistic %d: not much larger", len(tc.plain), len(tc.real))
			}
			if _, ok := claims(t, tc.plain)["realm_access"]; ok {
				t.Errorf("default token carries the realistic claims: %v", claims(t, tc.plain))
			}
			rc := claims(t, tc.real)
			for _, k := range []string{"typ", "azp", "sid", "acr", "allowed-origins", "realm_access", "resource_access"} {
				if _, ok := rc[k]; !ok {
					t.Errorf("realistic token lacks %q", k)
				}
			}
			if got, want := header(t, tc.real)["typ"], "at+jwt"; got != want {
				t.Errorf("header typ = %v, want %v", got, want)
			}
			gp, gr := gatehouseView(t, plain, tc.plain), gatehouseView(t, real, tc.real)
			if !reflect.DeepEqual(gp, gr) {
				t.Errorf("gatehouse sees the tokens differently:\nplain     %+v\nrealistic %+v", gp, gr)
			}
		})
	}
	if got, want := claims(t, r.issued)["sid"], claims(t, r.idToken)["sid"]; got != want {
		t.Errorf("access token sid %v, ID token sid %v: not the login's", got, want)
	}
	if !strings.Contains(claims(t, r.issued)["allowed-origins"].([]any)[0].(string), "127.0.0.1") {
		t.Errorf("allowed-origins = %v, want the issuer's origin", claims(t, r.issued)["allowed-origins"])
	}
}
