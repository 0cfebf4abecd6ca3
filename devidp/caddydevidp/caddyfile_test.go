package caddydevidp

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const exampleBlock = `gatehouse_devidp {
	issuer http://localhost:9000
	client demo demo-secret-0123456789 {
		redirect_uri http://localhost:8080/oauth2/callback
		audience api://demo
	}
	user alice {
		email alice@example.com
		name "Alice Example"
		preferred_username alice
		groups admins staff
	}
	user bob {
		email bob@example.com
		groups staff
	}
	access_token_ttl 1h
	algorithm RS256
}`

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    *Handler
		wantErr string
	}{
		{"inline argument", `gatehouse_devidp http://localhost:9000`, nil, "wrong argument count"},
		{"unknown subdirective", `gatehouse_devidp {
			issuer http://localhost:9000
			clients demo secret
		}`, nil, "unrecognized subdirective"},
		{"unknown client subdirective", `gatehouse_devidp {
			client demo secret {
				redirect_uris http://localhost/cb
			}
		}`, nil, "unrecognized subdirective"},
		{"unknown user subdirective", `gatehouse_devidp {
			user alice {
				mail alice@example.com
			}
		}`, nil, "unrecognized subdirective"},
		{"issuer without argument", `gatehouse_devidp {
			issuer
		}`, nil, "wrong argument count"},
		{"issuer with two arguments", `gatehouse_devidp {
			issuer http://a http://b
		}`, nil, "wrong argument count"},
		{"client with one argument", `gatehouse_devidp {
			client demo
		}`, nil, "wrong argument count"},
		{"client with three arguments", `gatehouse_devidp {
			client demo secret extra
		}`, nil, "wrong argument count"},
		{"user without subject", `gatehouse_devidp {
			user
		}`, nil, "wrong argument count"},
		{"user with two subjects", `gatehouse_devidp {
			user alice bob
		}`, nil, "wrong argument count"},
		{"redirect_uri without argument", `gatehouse_devidp {
			client demo secret {
				redirect_uri
			}
		}`, nil, "wrong argument count"},
		{"audience with two arguments", `gatehouse_devidp {
			client demo secret {
				audience a b
			}
		}`, nil, "wrong argument count"},
		{"groups without argument", `gatehouse_devidp {
			user alice {
				groups
			}
		}`, nil, "wrong argument count"},
		{"email with two arguments", `gatehouse_devidp {
			user alice {
				email a@example.com b@example.com
			}
		}`, nil, "wrong argument count"},
		{"access_token_ttl without argument", `gatehouse_devidp {
			access_token_ttl
		}`, nil, "wrong argument count"},
		{"bad duration", `gatehouse_devidp {
			access_token_ttl forever
		}`, nil, "access_token_ttl"},
		{"algorithm with two arguments", `gatehouse_devidp {
			algorithm RS256 ES256
		}`, nil, "wrong argument count"},
		{"duplicate issuer", `gatehouse_devidp {
			issuer http://a
			issuer http://b
		}`, nil, "duplicate subdirective"},
		{"duplicate algorithm", `gatehouse_devidp {
			algorithm RS256
			algorithm ES256
		}`, nil, "duplicate subdirective"},
		{"realistic_access_tokens with an argument", `gatehouse_devidp {
			realistic_access_tokens on
		}`, nil, "wrong argument count"},
		{"duplicate realistic_access_tokens", `gatehouse_devidp {
			realistic_access_tokens
			realistic_access_tokens
		}`, nil, "duplicate subdirective"},
		{"realistic_access_tokens", `gatehouse_devidp {
			realistic_access_tokens
		}`, &Handler{RealisticAccessTokens: true}, ""},
		{"duplicate client", `gatehouse_devidp {
			client demo a
			client demo b
		}`, nil, "duplicate client"},
		{"duplicate user", `gatehouse_devidp {
			user alice
			user alice
		}`, nil, "duplicate user"},
		{"duplicate audience", `gatehouse_devidp {
			client demo secret {
				audience a
				audience b
			}
		}`, nil, "duplicate subdirective"},
		{"duplicate email", `gatehouse_devidp {
			user alice {
				email a@example.com
				email b@example.com
			}
		}`, nil, "duplicate subdirective"},
		{"empty block", `gatehouse_devidp`, &Handler{}, ""},
		{"example", exampleBlock, &Handler{
			Issuer: "http://localhost:9000",
			Clients: []Client{{
				ID:           "demo",
				Secret:       "demo-secret-0123456789",
				RedirectURIs: []string{"http://localhost:8080/oauth2/callback"},
				Audience:     "api://demo",
			}},
			Users: []User{
				{Subject: "alice", Email: "alice@example.com", Name: "Alice Example", PreferredUsername: "alice", Groups: []string{"admins", "staff"}},
				{Subject: "bob", Email: "bob@example.com", Groups: []string{"staff"}},
			},
			AccessTokenTTL: caddy.Duration(time.Hour),
			Algorithm:      "RS256",
		}, ""},
		{"placeholders and several clients", `gatehouse_devidp {
			issuer {env.DEVIDP_ISSUER}
			client a {env.A_SECRET}
			client b b-secret {
				redirect_uri http://localhost/cb http://127.0.0.1/cb
			}
			user carol
		}`, &Handler{
			Issuer: "{env.DEVIDP_ISSUER}",
			Clients: []Client{
				{ID: "a", Secret: "{env.A_SECRET}"},
				{ID: "b", Secret: "b-secret", RedirectURIs: []string{"http://localhost/cb", "http://127.0.0.1/cb"}},
			},
			Users: []User{{Subject: "carol"}},
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(&h, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", h, *tc.want)
			}
		})
	}
}

// TestCaddyfileAdapt adapts a whole Caddyfile: the directive needs no
// global order line, sorts before respond, and yields the JSON fields.
func TestCaddyfileAdapt(t *testing.T) {
	input := "{\n\tadmin off\n}\n\nlocalhost:9000 {\n\trespond /health 200\n\t" +
		strings.ReplaceAll(exampleBlock, "\n", "\n\t") + "\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	js := string(out)
	idp, respond := strings.Index(js, `"handler":"gatehouse_devidp"`), strings.Index(js, `"handler":"static_response"`)
	if idp < 0 || respond < 0 || idp > respond {
		t.Fatalf("want gatehouse_devidp before static_response in %s", js)
	}

	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(findHandler(cfg, "gatehouse_devidp"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want Handler
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("handler JSON %s: %v", raw, err)
	}
	if err := want.UnmarshalCaddyfile(caddyfile.NewTestDispenser(exampleBlock)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("adapted handler %s\nwant %+v", raw, want)
	}
}

// findHandler returns the first JSON object in v whose "handler" is name.
func findHandler(v any, name string) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			return v
		}
		for _, x := range v {
			if m := findHandler(x, name); m != nil {
				return m
			}
		}
	case []any:
		for _, x := range v {
			if m := findHandler(x, name); m != nil {
				return m
			}
		}
	}
	return nil
}

func TestJSONRoundTrip(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(exampleBlock)); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Handler
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, back) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", h, back)
	}
}

func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add(exampleBlock)
	f.Add("gatehouse_devidp {\n\tuser a {\n\t\tgroups\n\t}\n}")
	f.Add("gatehouse_devidp {\n\tclient a b {\n\t\tredirect_uri {\n\t}\n}")
	f.Add("gatehouse_devidp {\n\tissuer {\n}")
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		_ = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}
