package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse-auth/gatehouse/internal/flight"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// Defaults of RemoteOptions.
const (
	DefaultMinRefetchInterval = 15 * time.Second
	DefaultMinRefreshInterval = 5 * time.Minute
)

// RemoteOptions configures a RemoteKeySet.
type RemoteOptions struct {
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout
	// and a 1 MiB response cap.
	HTTPClient *http.Client
	// MinRefetchInterval is the least time between two fetches made on
	// demand (first use, unknown key id, after a failure): a flood of
	// tokens with random key ids costs the provider at most one fetch per
	// interval. Default 15s.
	MinRefetchInterval time.Duration
	// MinRefreshInterval is the floor of the background refresh period;
	// the provider's Cache-Control max-age is honoured above it. Default 5m.
	MinRefreshInterval time.Duration
	// Now is the clock for the rate limit. Default time.Now.
	Now func() time.Time
	// Logger receives fetch failures. Default: discard.
	Logger *slog.Logger
}

// RemoteKeySet keeps a provider's JWKS, fetched from its jwks_uri by jwx's
// jwk.Cache, which refreshes it in the background. Verification reads the
// latest good snapshot without locking or I/O; a fetch failure keeps the
// previous keys, so a provider outage does not break tokens whose keys are
// already known. Close stops the background refresh.
type RemoteKeySet struct {
	url    string
	opts   RemoteOptions
	cache  *jwk.Cache
	cancel context.CancelFunc
	ctx    context.Context

	keys    atomic.Pointer[keyList]
	gate    flight.Gate
	fetches atomic.Int64
}

// NewRemoteKeySet prepares a key set for jwksURL. It does not fetch: the
// first verification does, so it never blocks startup. The background
// refresh stops when ctx ends or Close is called.
func NewRemoteKeySet(ctx context.Context, jwksURL string, opts RemoteOptions) (*RemoteKeySet, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = httpx.NewClient(nil, 0, 0)
	}
	if opts.MinRefetchInterval <= 0 {
		opts.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &RemoteKeySet{url: jwksURL, opts: opts, ctx: ctx, cancel: cancel}
	r.cache = jwk.NewCache(ctx, jwk.WithRefreshWindow(time.Minute))
	err := r.cache.Register(jwksURL,
		jwk.WithHTTPClient(getter{opts.HTTPClient}),
		jwk.WithMinRefreshInterval(opts.MinRefreshInterval),
		jwk.WithPostFetcher(jwk.PostFetchFunc(r.store)),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("verify: registering JWKS URL: %w", err)
	}
	return r, nil
}

// Close stops the background refresh.
func (r *RemoteKeySet) Close() { r.cancel() }

// Fetches returns how many JWKS documents were fetched and loaded, on
// demand or in the background (metrics, tests).
func (r *RemoteKeySet) Fetches() int64 { return r.fetches.Load() }

// store is the jwk.Cache post-fetch hook: every successfully fetched and
// parsed JWKS becomes the new snapshot.
func (r *RemoteKeySet) store(_ string, set jwk.Set) (jwk.Set, error) {
	keys := keysFromSet(set)
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	r.keys.Store(&keys)
	r.fetches.Add(1)
	return set, nil
}

func (r *RemoteKeySet) snapshot() (keyList, error) {
	if p := r.keys.Load(); p != nil {
		return *p, nil
	}
	return nil, ErrKeysUnavailable
}

func (r *RemoteKeySet) current(ctx context.Context) (keyList, error) {
	if p := r.keys.Load(); p != nil {
		return *p, nil
	}
	return r.refresh(ctx)
}

// refresh joins the fetch in progress, or starts one if the rate limit
// allows, and waits for it (bounded by ctx); it then returns the latest
// snapshot.
func (r *RemoteKeySet) refresh(ctx context.Context) (keyList, error) {
	r.gate.Do(ctx, r.opts.Now(), r.fetch)
	return r.snapshot()
}

func (r *RemoteKeySet) fetch() time.Duration {
	if _, err := r.cache.Refresh(r.ctx, r.url); err != nil && r.ctx.Err() == nil {
		r.opts.Logger.Warn("fetching the provider's JWKS failed; keeping the previous keys", "jwks_uri", r.url, "error", err)
	}
	return r.opts.MinRefetchInterval
}

// getter adapts an *http.Client to jwx's fetcher: it reads the (capped)
// body in full and closes the connection's body, which jwx does not do.
type getter struct{ client *http.Client }

func (g getter) Get(u string) (*http.Response, error) {
	resp, err := g.client.Get(u)
	if err != nil {
		return nil, err
	}
	body, err := httpx.ReadAll(resp)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
