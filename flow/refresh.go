package flow

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ErrRefreshRejected: the provider refused the refresh token (e.g.
// invalid_grant: revoked, expired or already used). The session is over.
var ErrRefreshRejected = errors.New("flow: the provider rejected the refresh token")

// ErrSessionExpired: the session's tokens expired and cannot be refreshed.
var ErrSessionExpired = errors.New("flow: the session's tokens expired")

// Refresh exchanges the session's refresh token for new tokens (RFC 6749
// §6). A new ID token, if the provider sends one, must match the session
// as OpenID Connect Core §12.2 asks (see checkIDToken); userinfo, when the
// provider has it, must name the same subject. The provider's refusal is
// ErrRefreshRejected; trouble reaching it is ErrProviderUnavailable.
func (c *Client) Refresh(ctx context.Context, s *session.Session) (*Result, error) {
	meta, v, err := c.ready(ctx)
	if err != nil {
		return nil, err
	}
	// An expired token makes the TokenSource refresh at once.
	src := c.oauth2Config(meta, "").TokenSource(c.withHTTPClient(ctx), &oauth2.Token{
		RefreshToken: s.RefreshToken,
		Expiry:       time.Unix(1, 0),
	})
	tok, err := src.Token()
	if err != nil {
		err = exchangeError(err)
	}
	c.p.observeToken(ctx, err)
	if err != nil {
		var ee *ExchangeError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%w (%d %s)", ErrRefreshRejected, ee.Status, ee.Code)
		}
		return nil, err
	}
	check := tokenCheck{refresh: true, subject: s.Subject}
	if s.IDToken != "" {
		// The ID token the session holds was verified when it came.
		check.previous, _ = verify.ClaimsOfVerified(s.IDToken)
	}
	return c.result(ctx, meta, v, tok, check)
}

// Defaults of RefresherOptions.
const (
	DefaultRefreshBefore = time.Minute
	// recentRefreshTTL is how long a refresh result serves requests that
	// still carry the cookie from before it — the browser sent them before
	// it stored the new cookie. They are served, but get no cookie: a
	// stolen pre-refresh cookie must not obtain the rotated refresh token,
	// and after this window its reuse reaches the provider, whose
	// reuse detection ends the session (RFC 9700 §4.14.2, review SA2-12).
	recentRefreshTTL  = 10 * time.Second
	recentRefreshSize = 10000
)

// TokenRefresher spends a refresh token for new tokens. *Client is one;
// a provider kind that refreshes differently brings its own.
type TokenRefresher interface {
	Refresh(ctx context.Context, s *session.Session) (*Result, error)
}

// RefreshLease coordinates the refreshes of one session across
// instances: a shared session store (session.RedisStore) is one. The
// instance that takes the lease refreshes and saves; the others wait for
// the saved result and reuse it, so a rotating refresh token is spent once.
type RefreshLease interface {
	// TryLease takes s's refresh lease for at most ttl; ok is false when another instance holds it. release gives it up after a failed refresh (saving the session ends it too).
	TryLease(ctx context.Context, s *session.Session, ttl time.Duration) (release func(), ok bool, err error)
	// AwaitRefresh waits, at most wait, until the lease holder saved s with new tokens, and returns that session.
	AwaitRefresh(ctx context.Context, s *session.Session, wait time.Duration) (*session.Session, error)
}

// refreshLeaseTTL bounds a refresh on one instance: longer than the
// provider's token endpoint may take (the HTTP client's timeout), short
// enough that an instance that died mid-refresh holds nobody up for long.
const refreshLeaseTTL = 15 * time.Second

// RefresherOptions configures a Refresher.
type RefresherOptions struct {
	// Client refreshes the tokens. Required.
	Client TokenRefresher
	// Before: tokens expiring within this are refreshed. Default 1m.
	Before time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Group coordinates refreshes; Refreshers that serve the same sessions
	// (several handlers sharing one cookie) must share one, or two of them
	// may spend the same rotating refresh token. Default: a new one.
	Group *RefreshGroup
	// Lease coordinates refreshes with other instances, when sessions are
	// shared between them (a shared store). Default nil: this process
	// alone refreshes the sessions it serves.
	Lease RefreshLease
}

// RefreshGroup is the state Refreshers of the same sessions share: the
// refresh in flight per session, and the recent results handed to
// requests that still carry the cookie from before.
type RefreshGroup struct {
	flights singleflight.Group
	recent  *lru.Cache[string, recentRefresh]
}

// NewRefreshGroup returns an empty RefreshGroup.
func NewRefreshGroup() *RefreshGroup {
	recent, _ := lru.New[string, recentRefresh](recentRefreshSize)
	return &RefreshGroup{recent: recent}
}

// Refresher keeps sessions' tokens fresh. A session whose access token
// expires within Before (at most a tenth of the token's lifetime) is
// refreshed before the request is served;
// concurrent requests of one session share one refresh (refresh tokens
// rotate: a second refresh with the old token would end the session), and
// requests that still carry the pre-refresh cookie for a little while get
// the same result.
type Refresher struct {
	opts RefresherOptions
	g    *RefreshGroup
}

type recentRefresh struct {
	sess *session.Session
	at   time.Time
}

// NewRefresher checks opts.
func NewRefresher(opts RefresherOptions) (*Refresher, error) {
	if opts.Client == nil {
		return nil, errors.New("flow: refresher: a client is required")
	}
	opts.Before = cmp.Or(opts.Before, DefaultRefreshBefore)
	if opts.Before < 0 {
		return nil, errors.New("flow: refresher: refresh_before must not be negative")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Group == nil {
		opts.Group = NewRefreshGroup()
	}
	return &Refresher{opts: opts, g: opts.Group}, nil
}

// Fresh returns s, or s with refreshed tokens (updated true: save it; a
// request that arrives just after the refresh with the old cookie is
// served with the new tokens but not given them), or an error:
//   - ErrSessionExpired: the access token expired and there is no refresh
//     token — the session is over;
//   - ErrRefreshRejected: the provider refused the refresh token — the
//     session is over;
//   - ErrProviderUnavailable: the tokens expired and the provider cannot
//     be reached — the session is kept, but cannot be served now;
//   - with a Lease, errors of the shared store (session.ErrUnavailable).
//
// With a Lease, the instance that takes it refreshes and returns updated
// true (the caller's save ends the lease); the others wait for its result
// and return it with updated false: it is saved already.
//
// While the access token is still valid, a provider that cannot be reached
// does not end or block the session: it is served, and the refresh is
// tried again on the next request.
func (r *Refresher) Fresh(ctx context.Context, s *session.Session) (fresh *session.Session, updated bool, err error) {
	if s.AccessExpiry == 0 {
		return s, false, nil // the provider gave no expiry: the session lifetime rules
	}
	now := r.opts.Now()
	exp := time.Unix(s.AccessExpiry, 0)
	if now.Before(exp.Add(-r.lead(s))) {
		return s, false, nil
	}
	valid := now.Before(exp)
	if s.RefreshToken == "" {
		if valid {
			return s, false, nil
		}
		return nil, false, ErrSessionExpired
	}
	key := refreshKey(s)
	if rec, ok := r.g.recent.Get(key); ok && now.Sub(rec.at) < recentRefreshTTL {
		return rec.sess, false, nil
	}
	v, err, _ := r.g.flights.Do(key, func() (any, error) {
		// Not bound to one request: a client that goes away must not
		// cancel the refresh the others wait for.
		ctx := context.WithoutCancel(ctx)
		next, updated, err := r.refresh(ctx, s)
		if err != nil {
			return nil, err
		}
		r.g.recent.Add(key, recentRefresh{sess: next, at: r.opts.Now()})
		return flightResult{next, updated}, nil
	})
	switch {
	case err == nil:
		res := v.(flightResult)
		return res.sess, res.updated, nil
	case errors.Is(err, ErrProviderUnavailable) && valid:
		return s, false, nil
	default:
		return nil, false, err
	}
}

type flightResult struct {
	sess    *session.Session
	updated bool
}

// refresh spends s's refresh token, or, when another instance holds the
// session's lease, waits for its result (updated false: saved already).
func (r *Refresher) refresh(ctx context.Context, s *session.Session) (next *session.Session, updated bool, err error) {
	if r.opts.Lease != nil {
		release, ok, err := r.opts.Lease.TryLease(ctx, s, refreshLeaseTTL)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			next, err := r.opts.Lease.AwaitRefresh(ctx, s, refreshLeaseTTL)
			if errors.Is(err, session.ErrLeaseLost) {
				// The other instance's refresh failed: as if this one had
				// not reached the provider; the next request tries again.
				err = fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
			}
			return next, false, err
		}
		defer func() {
			if err != nil {
				release()
			}
		}()
	}
	res, err := r.opts.Client.Refresh(ctx, s)
	if err != nil {
		return nil, false, err
	}
	return Refreshed(s, res, r.opts.Now()), true, nil
}

// maxLeadFraction: a token is refreshed at most this fraction of its
// lifetime before it expires, so short-lived tokens (30 s to 2 min are
// common) are used for most of their life and refreshed once each, not
// on every request.
const maxLeadFraction = 10

// lead is how long before its access token expires s is refreshed:
// Before, but at most a tenth of the token's lifetime when it is known.
func (r *Refresher) lead(s *session.Session) time.Duration {
	lead := r.opts.Before
	if s.AccessIssued > 0 {
		if life := time.Duration(s.AccessExpiry-s.AccessIssued) * time.Second; life > 0 {
			lead = min(lead, life/maxLeadFraction)
		}
	}
	return lead
}

// refreshKey identifies one refresh: the session and the refresh token it
// would spend.
func refreshKey(s *session.Session) string {
	sum := sha256.Sum256([]byte(s.RefreshToken))
	return s.ID + ":" + hex.EncodeToString(sum[:16])
}
