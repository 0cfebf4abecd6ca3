package caddymodule

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
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
//   - sessionGroups, by login (providers, cookie name, store): what the
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
// logger, client and now serve its key sets, if this call creates it.
func takeKeyRegistry(issuer string, logger *slog.Logger, client *http.Client, now func() time.Time) (*keyRegistry, error) {
	val, _, err := keyRegistries.LoadOrNew(issuer, func() (caddy.Destructor, error) {
		return &keyRegistry{verify.NewRemoteKeySets(context.Background(), verify.RemoteOptions{HTTPClient: client, Logger: logger, Now: now})}, nil
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
//     block at once), and, when it is shared with other instances (Redis),
//     lease: the refreshes coordinated with them.
//
// A reload keeps the group, so it keeps the store's connections.
type sessionGroup struct {
	refresh    *flow.RefreshGroup
	claims     *identity.ClaimSet
	store      session.Store
	lease      flow.RefreshLease // nil with cookie sessions
	closeStore func()
	// forwarders counts the blocks that forward the access token upstream
	// (pass_access_token, pass_authorization): only then do sessions keep it.
	forwarders atomic.Int32
	// sessionVar names the Caddy request variable in which the first block
	// of this login to check a request's session leaves it for the blocks
	// after it on the same request, which no longer see the cookie.
	sessionVar string
}

// sessionVars numbers the session groups' request variables.
var sessionVars atomic.Uint64

// stored is what of sess the store keeps: all of it but the access token
// — a JWT of a kilobyte or more that a cookie would carry on every request
// — unless a block of this login forwards it upstream.
func (g *sessionGroup) stored(sess *session.Session) *session.Session {
	if sess.AccessToken == "" || g.forwarders.Load() > 0 {
		return sess
	}
	s := *sess
	s.AccessToken = ""
	return &s
}

// Destruct closes the store's connections.
func (g *sessionGroup) Destruct() error {
	g.closeStore()
	return nil
}

// sessionGroupKey names the sessions of one login (the providers they are
// bound to, see Gatehouse.binding) and where they live.
func sessionGroupKey(binding, cookieName string, store *StoreConfig) string {
	return binding + "\x00" + cookieName + "\x00" + store.fingerprint()
}

// takeSessionGroup holds the group for key until releaseSessionGroup. If
// this call creates it, it makes the store (binding keeps its keys apart,
// now is its clock); unreachable reports a Redis that cannot be reached
// yet.
func takeSessionGroup(key string, store *StoreConfig, binding string, now func() time.Time) (g *sessionGroup, unreachable, err error) {
	val, _, err := sessionGroups.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, closeStore, down, err := store.newStore(binding, now)
		if err != nil {
			return nil, err
		}
		unreachable = down
		g := &sessionGroup{refresh: flow.NewRefreshGroup(), claims: &identity.ClaimSet{}, store: st, closeStore: closeStore,
			sessionVar: "gatehouse.session." + strconv.FormatUint(sessionVars.Add(1), 10)}
		g.lease, _ = st.(flow.RefreshLease)
		return g, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return val.(*sessionGroup), unreachable, nil
}

func releaseSessionGroup(key string) { _, _ = sessionGroups.Delete(key) }
