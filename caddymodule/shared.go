package caddymodule

import (
	"context"
	"log/slog"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// Everything gatehouse shares between handler instances — the blocks of
// one config, and the old and new config during a reload (Caddy
// provisions the new one while the old one still serves) — lives here, in
// two Caddy usage pools, each entry released by the last handler holding it:
//
//   - keyRegistries, by issuer: the provider's JWKS caches, so a reload
//     keeps the keys and their background refresh;
//   - sessionGroups, by login (issuer, client, cookie name): what the
//     blocks serving the same sessions must agree on.
var (
	keyRegistries = caddy.NewUsagePool()
	sessionGroups = caddy.NewUsagePool()
)

// keyRegistry holds the key sets of one issuer, one per jwks_uri. Their
// background refresh runs on context.Background() on purpose: the sets
// outlive any one config (a reload hands them over) and are stopped by
// Destruct when the last handler lets go.
type keyRegistry struct{ *verify.RemoteKeySets }

// takeKeyRegistry holds the issuer's registry until releaseKeyRegistry;
// logger and now serve its key sets, if this call creates it.
func takeKeyRegistry(issuer string, logger *slog.Logger, now func() time.Time) (*keyRegistry, error) {
	val, _, err := keyRegistries.LoadOrNew(issuer, func() (caddy.Destructor, error) {
		return &keyRegistry{verify.NewRemoteKeySets(context.Background(), verify.RemoteOptions{Logger: logger, Now: now})}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*keyRegistry), nil
}

func releaseKeyRegistry(issuer string) { _, _ = keyRegistries.Delete(issuer) }

// Destruct stops every key set's background refresh.
func (k *keyRegistry) Destruct() error {
	k.Close()
	return nil
}

// sessionGroup is what the blocks serving one login's sessions (e.g.
// per-path blocks with the same issuer, client and cookie) share:
//
//   - refresh: one refresh per session at a time, and the recent results
//     for requests still carrying the pre-refresh cookie — two blocks
//     never spend the same rotating refresh token;
//   - claims: the claims any of the blocks maps (`header`) or checks
//     (`allow_claim`), kept in every session whichever block finishes
//     the login;
//   - store: where sessions live and are revoked (sign-out holds in every
//     block at once).
type sessionGroup struct {
	refresh *flow.RefreshGroup
	claims  *identity.ClaimSet
	store   session.Store
}

// Destruct has nothing to stop: the group holds no goroutines.
func (*sessionGroup) Destruct() error { return nil }

// sessionGroupKey names the sessions of one login.
func sessionGroupKey(pc *ProviderConfig, cookieName string) string {
	return pc.binding() + "\x00" + cookieName
}

// takeSessionGroup holds the group for key until releaseSessionGroup; now
// is the clock of the store, if this call creates the group.
func takeSessionGroup(key string, now func() time.Time) (*sessionGroup, error) {
	val, _, err := sessionGroups.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &sessionGroup{
			refresh: flow.NewRefreshGroup(),
			claims:  &identity.ClaimSet{},
			store:   session.NewCookieStore(session.CookieStoreOptions{Now: now}),
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*sessionGroup), nil
}

func releaseSessionGroup(key string) { _, _ = sessionGroups.Delete(key) }
