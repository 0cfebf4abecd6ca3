//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestStepUpAtOIDCProvider: env.appStepUp serves /admin/* through a block
// with require_acr gold, the rest without, on one cookie (the README's
// step-up Caddyfile), in front of oidc-provider, which shows its login
// page again when asked for an acr the session lacks and gives gold to
// alice only. Bob's session opens the site, and his step-up ends in a 403
// that leaves it; alice steps up once and is served /admin with acr gold.
// What the upstream saw is checked by the request URI it was told.
func TestStepUpAtOIDCProvider(t *testing.T) {
	login := func(user, target string) *agent {
		t.Helper()
		a := newAgent(t)
		status, loc, body := a.get(env.appStepUp + target)
		if status != http.StatusFound || !strings.HasPrefix(loc, env.opURL+"/auth?") {
			t.Fatalf("%s: first visit %d %q %s", user, status, loc, body)
		}
		if q := mustQuery(t, loc); q.Has("acr_values") {
			t.Fatalf("%s: a login from an ordinary page asked for acr_values: %s", user, loc)
		}
		cb := a.signInAt(loc, env.opURL, user)
		if status, loc, _ = a.get(cb); status != http.StatusFound || loc != env.appStepUp+target {
			t.Fatalf("%s: callback %d to %q", user, status, loc)
		}
		return a
	}
	// seen is what the upstream was told for the request URI uri.
	seen := func(uri string) []http.Header {
		var out []http.Header
		for _, h := range env.upstream.headers() {
			if h.Get("X-Original-Uri") == uri {
				out = append(out, h)
			}
		}
		return out
	}
	stepUp := func(a *agent, user, target string) (int, string) {
		t.Helper()
		status, loc, body := a.get(env.appStepUp + target)
		if status != http.StatusFound || mustQuery(t, loc).Get("acr_values") != "gold" {
			t.Fatalf("%s at %s with acr 1: %d %q %s", user, target, status, loc, body)
		}
		cb := a.signInAt(loc, env.opURL, user)
		status, loc, _ = a.get(cb)
		return status, loc
	}

	bob := login("bob", "/reports?who=bob")
	if h := seen("/reports?who=bob"); len(h) != 0 {
		t.Fatalf("the upstream saw the login's own redirect target before the visit: %v", h)
	}
	if status, _, _ := bob.get(env.appStepUp + "/reports?who=bob"); status != http.StatusOK {
		t.Fatalf("bob at /reports: %d", status)
	}
	// (oidc-provider puts acr in an ID token only when it was asked for.)
	if h := seen("/reports?who=bob"); len(h) != 1 || h[0].Get("X-Forwarded-User") != "bob" || h[0].Get("X-Acr") == "gold" {
		t.Fatalf("the upstream saw for bob's /reports: %v", h)
	}
	if status, _ := stepUp(bob, "bob", "/admin/x?who=bob"); status != http.StatusForbidden {
		t.Fatalf("bob's step-up (oidc-provider gives him acr 1): %d, want 403", status)
	}
	if status, _, _ := bob.get(env.appStepUp + "/reports?who=bob-after"); status != http.StatusOK {
		t.Fatalf("bob's session after the refused step-up: %d", status)
	}
	if h := seen("/admin/x?who=bob"); len(h) != 0 {
		t.Fatalf("the upstream served bob /admin: %v", h)
	}

	alice := login("alice", "/reports?who=alice")
	status, loc := stepUp(alice, "alice", "/admin/x?who=alice")
	if status != http.StatusFound || loc != env.appStepUp+"/admin/x?who=alice" {
		t.Fatalf("alice's step-up callback: %d to %q", status, loc)
	}
	for _, path := range []string{"/admin/x?who=alice", "/reports?who=alice-after"} {
		if status, _, body := alice.get(env.appStepUp + path); status != http.StatusOK {
			t.Fatalf("alice at %s after the step-up: %d %s", path, status, body)
		}
		if h := seen(path); len(h) != 1 || h[0].Get("X-Forwarded-User") != "alice" || h[0].Get("X-Acr") != "gold" {
			t.Fatalf("the upstream saw for alice's %s: %v", path, h)
		}
	}
}
