package session

import (
	"encoding/json"
	"time"
)

// Login is one login in progress: what the callback needs to finish it.
// It lives in a short-lived sealed cookie named after its state.
type Login struct {
	// State is the OAuth 2.0 state parameter sent to the provider.
	State string `json:"s"`
	// Nonce is the OpenID Connect nonce the ID token must carry.
	Nonce string `json:"n"`
	// Verifier is the PKCE code verifier (RFC 7636).
	Verifier string `json:"v"`
	// ReturnTo is where the user goes after the login. It is validated
	// again when used.
	ReturnTo string `json:"r,omitempty"`
	// Created is when the login started (Unix seconds).
	Created int64 `json:"t"`
}

func (l *Login) marshal() ([]byte, error) { return json.Marshal(l) }

func unmarshalLogin(b []byte) (*Login, error) {
	var l Login
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if l.State == "" || l.Nonce == "" || l.Verifier == "" {
		return nil, ErrNoLogin
	}
	return &l, nil
}

// fresh reports whether the login started within ttl before now (and not
// in the future beyond a minute of clock skew).
func (l *Login) fresh(now time.Time, ttl time.Duration) bool {
	created := time.Unix(l.Created, 0)
	return l.Created > 0 && !created.After(now.Add(time.Minute)) && now.Before(created.Add(ttl))
}
