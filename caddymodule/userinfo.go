package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/session"
)

// userinfo is the body of path_prefix/userinfo: who is signed in, for a
// front-end. Never a token (Pomerium CVE-2024-39315: tokens served to
// same-origin scripts).
type userinfo struct {
	User              string   `json:"user"`
	Email             string   `json:"email,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Name              string   `json:"name,omitempty"`
	Groups            []string `json:"groups"`
	ExpiresAt         int64    `json:"expires_at"`         // Unix seconds: when the session's lifetime ends
	Provider          string   `json:"provider,omitempty"` // with several providers: whose user
}

// serveUserinfo answers GET path_prefix/userinfo with the signed-in user as
// JSON, or 401 JSON without a session. The session is refreshed like any
// request's; the rules are not applied (the user may ask who they are).
func (g *Gatehouse) serveUserinfo(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Ask with GET."}, errors.New("gatehouse: userinfo method"))
	}
	sess, _, err := g.freshSession(w, r)
	if err != nil {
		return g.refuseUserinfo(w, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, userinfo{
		User:              sess.User,
		Email:             sess.VerifiedEmail(),
		PreferredUsername: sess.PreferredUsername,
		Name:              sess.Name,
		Groups:            nonNil(sess.Groups),
		ExpiresAt:         sess.ExpiresAt(time.Duration(g.SessionLifetime)).Unix(),
		Provider:          sess.Provider,
	})
	return nil
}

// refuseUserinfo answers a userinfo request without a usable session, as
// JSON whoever asks (a front-end's script): 503 while its refresh cannot
// happen, else 401 — never a login redirect.
func (g *Gatehouse) refuseUserinfo(w http.ResponseWriter, err error) error {
	w.Header().Set("Cache-Control", "no-store")
	if errors.Is(err, flow.ErrProviderUnavailable) {
		w.Header().Set("Retry-After", "5")
		writeProblemJSON(w, http.StatusServiceUnavailable, "provider_unavailable",
			"The session needs to be renewed, but the identity provider cannot be reached right now.")
		return nil
	}
	if errors.Is(err, session.ErrUnavailable) {
		w.Header().Set("Retry-After", "5")
		writeProblemJSON(w, storeUnavailable.status, storeUnavailable.code, storeUnavailable.message)
		return nil
	}
	writeProblemJSON(w, http.StatusUnauthorized, "unauthenticated", "Nobody is signed in.")
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
