package userapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// serveUserinfo serves body (or h) at /userinfo and returns the config for it.
func serveUserinfo(t *testing.T, cfg Config, h http.HandlerFunc) (*fake, Config) {
	t.Helper()
	f := newFake(t)
	f.handle("/userinfo", h)
	cfg.Kind = OAuth2
	cfg.UserinfoURL = f.srv.URL + "/userinfo"
	return f, cfg
}

// A user-info object shaped like many plain OAuth 2.0 providers' (the
// subject a number, the profile nested).
const nestedUserinfo = `{
  "data": {
    "id": 12345678901234567890123,
    "attributes": {"handle": "jdoe", "display_name": "Jane Doe", "mail": "jane@example.com", "mail_confirmed": true},
    "roles": ["staff", "ops"]
  },
  "sub": "not-the-subject", "email_verified": true, "name": "not the name"
}`

func nestedConfig() Config {
	return Config{
		SubjectPath:       "data.id",
		EmailVerifiedPath: "data.attributes.mail_confirmed",
		UsernamePath:      "data.attributes.handle",
		NamePath:          "data.attributes.display_name",
		Mapper:            &identity.Mapper{EmailClaim: "data.attributes.mail", GroupsClaim: "data.roles"},
	}
}

func TestOAuth2Refuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     http.HandlerFunc
		token string
		want  []error
	}{
		{name: "token refused", h: object(`{"sub":"1"}`), token: "wrong", want: []error{ErrInvalidToken}},
		{name: "500", h: status(500, `{}`), want: []error{ErrProviderUnavailable}},
		{name: "404", h: status(404, `{}`), want: []error{ErrBadResponse}},
		{name: "an array", h: object(`[{"sub":"1"}]`), want: []error{ErrBadResponse}},
		{name: "a string", h: object(`"1"`), want: []error{ErrBadResponse}},
		{name: "a JWT (signed userinfo)", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/jwt")
			fmt.Fprint(w, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
		}, want: []error{ErrBadResponse}},
		{name: "no subject", h: object(`{"preferred_username":"jdoe"}`), want: []error{identity.ErrIncomplete}},
		{name: "subject an object", h: object(`{"sub":{"id":1}}`), want: []error{identity.ErrIncomplete}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg := serveUserinfo(t, Config{}, tc.h)
			tok := token
			if tc.token != "" {
				tok = tc.token
			}
			_, err := mustNew(t, cfg).Identity(context.Background(), tok)
			t.Log(err)
			assertIs(t, err, tc.want, nil)
		})
	}
}

func TestOAuth2Identity(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		body string
		want identity.Identity
		err  error
	}{
		{name: "OpenID Connect names by default", body: `{"sub":"248289761001","name":"Jane Doe","preferred_username":"j.doe",
			"email":"janedoe@example.com","email_verified":true,"groups":["staff"],"picture":"http://example.com/janedoe/me.jpg"}`,
			want: identity.Identity{Subject: "248289761001", User: "248289761001", Email: "janedoe@example.com",
				PreferredUsername: "j.doe", Name: "Jane Doe", Groups: []string{"staff"}}},
		{name: "nested paths", cfg: nestedConfig(), body: nestedUserinfo,
			want: identity.Identity{Subject: "12345678901234567890123", User: "12345678901234567890123", Email: "jane@example.com",
				PreferredUsername: "jdoe", Name: "Jane Doe", Groups: []string{"staff", "ops"}}},
		{name: "a path that finds nothing removes the name", cfg: Config{EmailVerifiedPath: "mail_confirmed", NamePath: "display_name"},
			body: `{"sub":"1","email":"a@example.com","email_verified":true,"name":"stand-in"}`,
			want: identity.Identity{Subject: "1", User: "1", Email: "a@example.com", EmailUnverified: true}},
		{name: "email_verified the string true", body: `{"sub":"1","email":"a@example.com","email_verified":"true"}`,
			want: identity.Identity{Subject: "1", User: "1", Email: "a@example.com", EmailUnverified: true}},
		{name: "email_verified absent", body: `{"sub":"1","email":"a@example.com"}`,
			want: identity.Identity{Subject: "1", User: "1", Email: "a@example.com", EmailUnverified: true}},
		{name: "email_verified absent, assumed", cfg: Config{Mapper: &identity.Mapper{AssumeEmailVerified: true}},
			body: `{"sub":"1","email":"a@example.com"}`,
			want: identity.Identity{Subject: "1", User: "1", Email: "a@example.com"}},
		{name: "email_verified false, not assumed", cfg: Config{Mapper: &identity.Mapper{AssumeEmailVerified: true}},
			body: `{"sub":"1","email":"a@example.com","email_verified":false}`,
			want: identity.Identity{Subject: "1", User: "1", Email: "a@example.com", EmailUnverified: true}},
		{name: "the user is an unverified e-mail", cfg: Config{Mapper: &identity.Mapper{UserClaim: "email"}},
			body: `{"sub":"1","email":"a@example.com","email_verified":false}`,
			want: identity.Identity{Subject: "1", Email: "a@example.com", EmailUnverified: true}, err: identity.ErrUnverifiedEmail},
		{name: "control characters dropped", body: `{"sub":"1","name":"Jane\r\nX-Evil: 1"}`,
			want: identity.Identity{Subject: "1", User: "1", Name: "JaneX-Evil: 1", EmailUnverified: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, cfg := serveUserinfo(t, tc.cfg, object(tc.body))
			fe := mustNew(t, cfg)
			id, err := fe.Identity(context.Background(), token)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if fmt.Sprint(id) != fmt.Sprint(tc.want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, tc.want)
			}
			if f.count("/userinfo") != 1 || f.total() != 1 {
				t.Errorf("requests: /userinfo %d, all %d", f.count("/userinfo"), f.total())
			}
			if h := f.headers()[0]; h.Get("Authorization") != "Bearer "+token || h.Get("Accept") != "application/json" {
				t.Errorf("request headers %v", h)
			}
			if fe.Scopes() != nil {
				t.Errorf("Scopes() = %q", fe.Scopes())
			}
		})
	}
}
