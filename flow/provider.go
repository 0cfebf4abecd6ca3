package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/flight"
	"github.com/gatehouse-auth/gatehouse/internal/health"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ProviderOptions configures a Provider.
type ProviderOptions struct {
	// Issuer is the provider's issuer URL, exactly as it appears in its
	// tokens. Required.
	Issuer string
	// Endpoints override discovery field by field. When Authorization,
	// Token and JWKS are all set, discovery is skipped.
	Endpoints Endpoints
	// Plain marks a plain OAuth 2.0 provider (GitHub, GitLab's OAuth
	// API): no discovery, no keys, no ID tokens. Endpoints.Authorization
	// and Token are required; Issuer only names it (and is what an RFC
	// 9207 `iss` parameter must say, if it sends one).
	Plain bool
	// HTTPClient talks to the provider. Default: 10s timeout, 1 MiB cap.
	HTTPClient *http.Client
	// KeySet returns the key set for a jwks_uri; use it to share key
	// caches between providers. Default: a verify.RemoteKeySet per URL,
	// owned (and closed) by the Provider.
	KeySet func(jwksURI string) (verify.KeySet, error)
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives provider trouble: a warning when discovery, the
	// JWKS or the token endpoint becomes unreachable, an info line when
	// it is back (see health.go). Default: discard.
	Logger *slog.Logger
}

// Provider is an OpenID provider as gatehouse sees it: its metadata,
// discovered on first use and retried with backoff while the provider is
// unreachable, and its signing keys. It is a value the login Client and
// the Bearer verifier receive, never package state.
type Provider struct {
	opts   ProviderOptions
	ctx    context.Context
	cancel context.CancelFunc
	gate   flight.Gate
	meta   atomic.Pointer[Metadata]

	mu      sync.Mutex // guards fails, lastErr
	fails   int
	lastErr error
	owned   *verify.RemoteKeySets // without ProviderOptions.KeySet

	suspect atomic.Bool // a recent call found the provider unreachable (health.go)
	// discovery and token log their reachability changes (health.go).
	discovery, token health.Endpoint
	// discoveries and discoveryFailures count discovery fetches (Stats).
	discoveries, discoveryFailures atomic.Uint64
}

// NewProvider checks opts and returns a Provider. It makes no network
// call. ctx bounds background work (JWKS refresh); Close ends it too.
func NewProvider(ctx context.Context, opts ProviderOptions) (*Provider, error) {
	if err := CheckEndpointURL(opts.Issuer); err != nil {
		return nil, fmt.Errorf("flow: issuer: %w", err)
	}
	for _, u := range []string{opts.Endpoints.Authorization, opts.Endpoints.Token, opts.Endpoints.Userinfo, opts.Endpoints.JWKS, opts.Endpoints.EndSession} {
		if u != "" {
			if err := CheckEndpointURL(u); err != nil {
				return nil, fmt.Errorf("flow: endpoint: %w", err)
			}
		}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = httpx.NewClient(nil, 0, 0)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{opts: opts}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.owned = verify.NewRemoteKeySets(p.ctx, verify.RemoteOptions{HTTPClient: opts.HTTPClient, Logger: opts.Logger})
	return p, nil
}

// Close stops background work of the key sets the Provider owns.
func (p *Provider) Close() {
	p.cancel()
	p.owned.Close()
}

// Issuer returns the configured issuer.
func (p *Provider) Issuer() string { return p.opts.Issuer }

// ProviderStats counts a Provider's discovery fetches by outcome.
type ProviderStats struct {
	Discoveries, DiscoveryFailures uint64
}

// Stats returns the discovery counts (metrics). With every needed
// endpoint configured nothing is fetched, and nothing counted.
func (p *Provider) Stats() ProviderStats {
	return ProviderStats{Discoveries: p.discoveries.Load(), DiscoveryFailures: p.discoveryFailures.Load()}
}

// countDiscovery counts a discovery that fetched the document.
func (p *Provider) countDiscovery(err error) {
	switch {
	case p.opts.Plain || p.opts.Endpoints.complete():
	case err == nil:
		p.discoveries.Add(1)
	default:
		p.discoveryFailures.Add(1)
	}
}

// Metadata returns the provider's metadata, discovering it first if
// needed. Concurrent callers share one discovery. While the provider is
// unreachable it fails fast with ErrProviderUnavailable, retrying with
// backoff (1s doubling to 1m).
func (p *Provider) Metadata(ctx context.Context) (*Metadata, error) {
	if m := p.meta.Load(); m != nil {
		return m, nil
	}
	p.gate.Do(ctx, p.opts.Now(), p.discover)
	if m := p.meta.Load(); m != nil {
		return m, nil
	}
	p.mu.Lock()
	lastErr := p.lastErr
	p.mu.Unlock()
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, lastErr)
}

// discover runs once at a time (flight.Gate); it returns the backoff
// before the next attempt.
func (p *Provider) discover() time.Duration {
	meta, err := p.fetchMetadata()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.fails++
		p.lastErr = err
		wait := backoff(p.fails)
		if p.ctx.Err() == nil {
			p.countDiscovery(err)
			if !p.discovery.Record(p.opts.Logger, err, "issuer", p.opts.Issuer, "endpoint", "discovery", "retry_in", wait.String()) {
				p.opts.Logger.Debug("OpenID provider discovery failed again; retrying later",
					"issuer", p.opts.Issuer, "retry_in", wait.String(), "error", err.Error())
			}
		}
		return wait
	}
	p.fails, p.lastErr = 0, nil
	p.meta.Store(meta)
	p.countDiscovery(nil)
	if !p.discovery.Record(p.opts.Logger, nil, "issuer", p.opts.Issuer, "endpoint", "discovery") {
		p.opts.Logger.Info("OpenID provider ready", "issuer", p.opts.Issuer)
	}
	return 0
}

func (p *Provider) fetchMetadata() (*Metadata, error) {
	meta := &Metadata{Issuer: p.opts.Issuer, Endpoints: p.opts.Endpoints}
	if p.opts.Plain {
		if err := checkEndpoints(meta.Issuer, meta.Endpoints, false); err != nil {
			return nil, err
		}
		return meta, nil
	}
	if !p.opts.Endpoints.complete() {
		// Not cancelled by Close: requests still in flight on a config
		// that is being replaced need the metadata too (a reload cleans
		// the old config up without waiting for them); the timeout bounds it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), p.opts.HTTPClient.Timeout+time.Second)
		defer cancel()
		found, err := discover(ctx, p.opts.HTTPClient, p.opts.Issuer)
		if err != nil {
			return nil, err
		}
		found.Endpoints = found.Endpoints.overlay(p.opts.Endpoints)
		meta = found
	}
	if err := checkEndpoints(meta.Issuer, meta.Endpoints, true); err != nil {
		return nil, err
	}
	return meta, nil
}

// KeySet returns the key set for jwksURI: from ProviderOptions.KeySet, or
// one the Provider owns per URL for its lifetime.
func (p *Provider) KeySet(jwksURI string) (verify.KeySet, error) {
	if jwksURI == "" {
		return nil, errors.New("flow: no jwks_uri")
	}
	if p.opts.KeySet != nil {
		return p.opts.KeySet(jwksURI) // shared sets are cached by their owner
	}
	return p.owned.Get(jwksURI)
}

// signingAlgorithms returns configured, else the metadata's advertised
// algorithms intersected with verify.AsymmetricAlgorithms, else RS256
// (OpenID Connect Core §3.1.3.7's default).
func signingAlgorithms(configured []string, meta *Metadata) []string {
	if len(configured) > 0 {
		return configured
	}
	var algs []string
	for _, a := range meta.IDTokenAlgorithms {
		if slices.Contains(verify.AsymmetricAlgorithms, a) && !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	return algs
}

// checkAlgorithms rejects anything outside verify.AsymmetricAlgorithms.
func checkAlgorithms(algs []string) error {
	for _, alg := range algs {
		if !slices.Contains(verify.AsymmetricAlgorithms, alg) {
			return fmt.Errorf("flow: algorithm %q is not an allowed asymmetric algorithm", alg)
		}
	}
	return nil
}
