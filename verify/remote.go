package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse-auth/gatehouse/internal/flight"
	"github.com/gatehouse-auth/gatehouse/internal/health"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// Defaults of RemoteOptions.
const (
	DefaultMinRefetchInterval = 15 * time.Second
	DefaultRefreshInterval    = 5 * time.Minute
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
	// RefreshInterval is the background refresh period. It is fixed: a
	// provider's Cache-Control max-age (a day, a year) is not honoured,
	// so a key the provider withdraws stops verifying within it (review
	// SA2-11). Default 5m.
	RefreshInterval time.Duration
	// Now is the clock for the rate limit. Default time.Now.
	Now func() time.Time
	// Logger receives fetch failures: a warning when fetches start
	// failing, an info line when one works again, debug lines between.
	// Default: discard.
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

	keys     atomic.Pointer[keyList]
	gate     flight.Gate
	fetches  atomic.Int64
	failures atomic.Int64
	health   health.Endpoint       // logs the changes of reachability
	onDemand atomic.Bool           // a fetch of ours (not the background refresh) runs
	lastErr  atomic.Pointer[error] // the latest fetch's error; nil after a success
	gen      atomic.Uint64         // counts changes of the keys (see generation)

	skippedMu sync.Mutex
	skipped   map[string]bool // keys left out of the JWKS, logged once each
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
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &RemoteKeySet{url: jwksURL, opts: opts, ctx: ctx, cancel: cancel}
	r.cache = jwk.NewCache(ctx, jwk.WithRefreshWindow(time.Minute), jwk.WithErrSink(errSink{r}))
	err := r.cache.Register(jwksURL,
		jwk.WithHTTPClient(getter{client: opts.HTTPClient, keys: r}),
		jwk.WithRefreshInterval(opts.RefreshInterval),
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

// FetchStats counts JWKS fetches by outcome.
type FetchStats struct {
	OK, Failed uint64
}

// FetchStats returns how many fetches of the document, on demand or in
// the background, succeeded and failed (metrics).
func (r *RemoteKeySet) FetchStats() FetchStats {
	return FetchStats{OK: uint64(r.fetches.Load()), Failed: uint64(r.failures.Load())}
}

// fetched records the outcome of a fetch, on demand or in the background:
// for Err, FetchStats and the log (a warning when fetches start failing,
// an info line when one works again, debug lines between). Failures
// after Close are not the provider's doing and are not counted.
func (r *RemoteKeySet) fetched(err error) {
	if err == nil {
		r.fetches.Add(1)
		r.lastErr.Store(nil)
	} else {
		r.lastErr.Store(&err)
		if r.ctx.Err() != nil {
			return
		}
		r.failures.Add(1)
	}
	if !r.health.Record(r.opts.Logger, err, "endpoint", "jwks", "jwks_uri", r.url) && err != nil {
		r.opts.Logger.Debug("fetching the provider's JWKS failed again; keeping the previous keys", "jwks_uri", r.url, "error", err.Error())
	}
}

// store is the jwk.Cache post-fetch hook: every successfully fetched and
// parsed JWKS becomes the new snapshot.
func (r *RemoteKeySet) store(_ string, set jwk.Set) (jwk.Set, error) {
	keys := keysFromSet(set)
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	if old := r.keys.Swap(&keys); old != nil && !sameKeys(*old, keys) {
		r.gen.Add(1)
	}
	r.fetched(nil)
	if !r.onDemand.Load() {
		// A background refresh succeeded: a key id it lacks is worth one
		// fetch at once (a rotation may have followed it).
		r.gate.Reset()
	}
	return set, nil
}

// generation changes whenever a fetch brings keys other than the last
// ones: verified tokens cached under an older generation are checked again.
func (r *RemoteKeySet) generation() uint64 { return r.gen.Load() }

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
	r.gate.Do(ctx, r.opts.Now(), r.fetchFirst)
	return r.snapshot()
}

// refresh fetches again for a key id the snapshot lacks (the provider may
// have rotated its keys), joining the fetch in progress, and waits for it
// (bounded by ctx); it then returns the latest snapshot. The first such
// fetch after a fetch that succeeded on its own (first use, background
// refresh) starts at once, however recent that was; after it, a flood of
// unknown key ids costs the provider at most one fetch per
// MinRefetchInterval.
func (r *RemoteKeySet) refresh(ctx context.Context) (keyList, error) {
	r.gate.Do(ctx, r.opts.Now(), r.fetchUnknownKey)
	return r.snapshot()
}

// fetchFirst is the fetch at first use: after a success the gate is open
// for an unknown key id at once; after a failure, retries are spaced.
func (r *RemoteKeySet) fetchFirst() time.Duration {
	if r.fetch() {
		return 0
	}
	return r.opts.MinRefetchInterval
}

// fetchUnknownKey is a fetch for an unknown key id: the next one waits.
func (r *RemoteKeySet) fetchUnknownKey() time.Duration {
	r.fetch()
	return r.opts.MinRefetchInterval
}

// fetch refreshes the document now and reports whether it succeeded.
func (r *RemoteKeySet) fetch() bool {
	r.onDemand.Store(true)
	defer r.onDemand.Store(false)
	if _, err := r.cache.Refresh(r.ctx, r.url); err != nil {
		r.fetched(err)
		return false
	}
	return true
}

// Err returns the error of the latest fetch of the document — on demand
// or in the background — or nil when it succeeded (or none ran yet). It
// tells whether the provider can be reached now, while verification keeps
// using the keys it has.
func (r *RemoteKeySet) Err() error {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Probe fetches the document again, unless a fetch is in progress (it is
// joined) or the refetch limit holds (then nothing is fetched), and returns
// Err. A caller that suspects the provider is down learns within one
// MinRefetchInterval that it is back.
func (r *RemoteKeySet) Probe(ctx context.Context) error {
	r.gate.Do(ctx, r.opts.Now(), r.fetchFirst)
	return r.Err()
}

// errSink receives the background refresh's failures.
type errSink struct{ r *RemoteKeySet }

func (s errSink) Error(err error) { s.r.fetched(err) }

// getter adapts an *http.Client to jwx's fetcher: it reads the (capped)
// body in full and closes the connection's body, which jwx does not do, and
// leaves out the keys jwx cannot parse (see usableKeys).
type getter struct {
	client *http.Client
	keys   *RemoteKeySet
}

func (g getter) Get(u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(httpx.WithEndpoint(g.keys.ctx, httpx.EndpointJWKS), http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := httpx.ReadAll(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		body = g.keys.usableKeys(body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// usableKeys returns the JWKS document body without the keys jwx cannot
// parse — a key type it does not know (a post-quantum kty, a made-up one),
// a malformed member: RFC 7517 §5 has a client ignore the keys it does not
// understand rather than the whole set. Each key left out is logged once.
// A body that is not a JWKS object is returned as it is, for jwx to refuse.
func (r *RemoteKeySet) usableKeys(body []byte) []byte {
	var doc map[string]json.RawMessage
	var keys []json.RawMessage
	if json.Unmarshal(body, &doc) != nil || json.Unmarshal(doc["keys"], &keys) != nil {
		return body
	}
	kept := keys[:0]
	for _, raw := range keys {
		if _, err := jwk.ParseKey(raw); err != nil {
			r.logSkipped(raw, err)
			continue
		}
		kept = append(kept, raw)
	}
	if len(kept) == len(keys) {
		return body
	}
	doc["keys"], _ = json.Marshal(kept)
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

func (r *RemoteKeySet) logSkipped(raw json.RawMessage, err error) {
	var id struct {
		Kid string `json:"kid"`
		Kty string `json:"kty"`
	}
	_ = json.Unmarshal(raw, &id)
	key := id.Kty + "\x00" + id.Kid
	r.skippedMu.Lock()
	defer r.skippedMu.Unlock()
	if r.skipped == nil {
		r.skipped = map[string]bool{}
	}
	if r.skipped[key] || len(r.skipped) >= maxKeys {
		return
	}
	r.skipped[key] = true
	r.opts.Logger.Warn("the provider's JWKS holds a key gatehouse cannot use; ignoring it",
		"jwks_uri", r.url, "kid", id.Kid, "kty", id.Kty, "error", err.Error())
}
