package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`gatehouse {
		issuer https://login.example.com
		client_id app
		client_secret {env.SECRET}
		client_auth post
		scopes openid email
		cookie_secret one-0123456789abcdef0123456789abcdef two-0123456789abcdef0123456789abcdef
		cookie_insecure
		session_lifetime 2h
		groups_claim realm_access.roles
		trusted_redirect_hosts a.example.com *.b.example.com
		unauthenticated allow
		metrics off
	}`)
	var g Gatehouse
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if g.Issuer != "https://login.example.com" || g.ClientID != "app" || g.ClientSecret != "{env.SECRET}" ||
		g.ClientAuth != "post" || strings.Join(g.Scopes, " ") != "openid email" || len(g.CookieSecrets) != 2 ||
		!g.CookieInsecure || g.SessionLifetime != caddy.Duration(2*time.Hour) || g.GroupsClaim != "realm_access.roles" ||
		len(g.TrustedRedirectHosts) != 2 || g.Unauthenticated != "allow" || !g.DisableMetrics {
		t.Fatalf("parsed %+v", g)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ input, want string }{
		{`gatehouse arg`, "wrong argument count"},
		{`gatehouse { nope }`, `unrecognized subdirective "nope"`},
		{"gatehouse {\n issuer\n}", "issuer: missing value"},
		{`gatehouse { issuer a b }`, "issuer: takes exactly one value"},
		{"gatehouse {\n scopes\n}", "scopes: missing value"},
		{`gatehouse { cookie_insecure true }`, "wrong argument count"},
		{"gatehouse {\n issuer a\n issuer b\n}", "issuer: given more than once"},
		{`gatehouse { session_lifetime 3 }`, "session_lifetime"},
		{"gatehouse {\n client_id x {\n a b\n }\n}", "client_id: takes no block"},
		{"gatehouse {\n metrics maybe\n}", `metrics takes on or off, not "maybe"`},
	} {
		t.Run(tc.input, func(t *testing.T) {
			var g Gatehouse
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzUnmarshalCaddyfile: any token stream is parsed or refused, never a panic.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"gatehouse {\n issuer https://x\n client_id a\n}",
		"gatehouse { cookie_secret a b c }",
		"gatehouse {\n session_lifetime 1h\n unauthenticated 401\n}",
		"gatehouse {\n{\n}",
		"gatehouse",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var g Gatehouse
		_ = g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	})
}
