package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/flow"
)

// signedOut remembers the sessions signed out on this instance until
// their lifetime ends, so a copy of a signed-out cookie stops working at
// once (caddy-security #272: logout must invalidate the stateless token).
// It is shared by every gatehouse handler of the process. Other instances
// learn of a sign-out when the session next refreshes and the provider,
// which revoked its refresh token, refuses.
var signedOut = newDenylist(100000)

type denylist struct {
	ids *lru.Cache[string, time.Time] // golang-lru locks itself
}

func newDenylist(size int) *denylist {
	c, _ := lru.New[string, time.Time](size)
	return &denylist{ids: c}
}

func (d *denylist) add(id string, until time.Time) { d.ids.Add(id, until) }

func (d *denylist) has(id string) bool {
	until, ok := d.ids.Get(id)
	if ok && time.Now().After(until) {
		d.ids.Remove(id)
		return false
	}
	return ok
}

// maxSignOutForm bounds the body of a POST to the sign-out endpoint.
const maxSignOutForm = 8 << 10

// serveSignOut signs the user out (GET or POST at path_prefix/sign_out):
// every gatehouse cookie is expired, the session is denied on this
// instance and its refresh token revoked at the provider (when it has a
// revocation endpoint), and the browser goes to the provider's
// end_session_endpoint (RP-initiated logout), or straight to the target:
// `rd` when it passes the return-to validator, else post_logout_redirect.
func (g *Gatehouse) serveSignOut(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "Sign out with GET or POST."}, errors.New("gatehouse: sign-out method"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignOutForm)
	_ = r.ParseForm()
	target := g.PostLogoutRedirect
	if rd := r.Form.Get("rd"); rd != "" && flow.ValidateReturnTo(rd, r.Host, g.trusted) == nil {
		target = rd
	}

	var idToken string
	if sess, _, err := g.store.Load(r); err == nil && !signedOut.has(sess.ID) {
		idToken = sess.IDToken
		signedOut.add(sess.ID, sess.ExpiresAt(time.Duration(g.SessionLifetime)))
		if sess.RefreshToken != "" {
			refresh := sess.RefreshToken
			go func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 15*time.Second)
				defer cancel()
				if err := g.client.Revoke(ctx, refresh, "refresh_token"); err != nil {
					g.logger.Warn("revoking the refresh token at sign-out failed", zap.Error(err))
				}
			}()
		}
		g.logger.Info("signed out", zap.String("sub", sess.Subject), zap.String("user", sess.User))
	}
	g.store.ClearAll(w, r)
	w.Header().Set("Cache-Control", "no-store")

	if endSession, ok := g.client.EndSessionURL(r.Context(), idToken, g.absolute(r, target)); ok {
		http.Redirect(w, r, endSession, http.StatusFound)
		return nil
	}
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// absolute makes a path on this site an absolute URL, for the provider.
func (g *Gatehouse) absolute(r *http.Request, target string) string {
	if !strings.HasPrefix(target, "/") {
		return target
	}
	return origin(r) + target
}
