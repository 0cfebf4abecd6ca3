package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// gatehouse's Prometheus metrics (README "Metrics" lists them). The
// collectors exist once per process and are registered in the metrics
// registry of every config that provisions a gatehouse block — Caddy makes
// one registry per config load, and its admin endpoint serves the current
// one at /metrics — as Caddy's own admin and reverse_proxy metrics are:
// a reload neither panics on a duplicate registration nor resets a
// counter. Every label is bounded: provider is a configured issuer, the
// others come from the fixed lists below.
//
// Each issuer's labelled children are resolved once, in a metrics value
// shared through a usage pool by the blocks (and configs) that use the
// issuer, so counting on a request is one atomic add: no map lookup, no
// allocation. The libraries count their own cache use and fetches
// (session.Manager.Stats, verify.Stats, flow.Provider.Stats,
// verify.RemoteKeySets.FetchStats); libraryCollector reads them when
// Prometheus scrapes.
var (
	collectors  = newCollectorSet()
	metricsPool = caddy.NewUsagePool() // issuer → *metrics
)

// Label values, each list fixed; the enums index the resolved children.
type (
	loginFailure   uint8
	callbackResult uint8
	refreshResult  uint8
	revocation     uint8
	bearerResult   uint8
)

const (
	failStateMismatch       loginFailure = iota // no login in progress matches the state: stale tab, replay, forgery
	failInvalidCallback                         // the iss parameter is not the issuer, or there is no code
	failAccessDenied                            // the user cancelled or was refused at the provider
	failProviderError                           // another error the provider sent back
	failCodeRejected                            // the token endpoint refused the code
	failProviderUnavailable                     // the provider could not be reached
	failInvalidResponse                         // token response, ID token or userinfo refused
	failIdentityRejected                        // no subject or user claim, or an unverified e-mail names the user
	failSessionNotSaved                         // the session is too large, or the store cannot be reached
	failOther
	numLoginFailures
)

var loginFailureNames = [numLoginFailures]string{
	"state_mismatch", "invalid_callback", "access_denied", "provider_error", "code_rejected",
	"provider_unavailable", "invalid_response", "identity_rejected", "session_not_saved", "other",
}

const (
	callbackOK      callbackResult = iota // signed in
	callbackInvalid                       // not the answer to a login in progress (state, iss, code)
	callbackDenied                        // the provider answered with an error
	callbackFailed                        // a genuine answer that could not be completed
	numCallbackResults
)

var callbackResultNames = [numCallbackResults]string{"ok", "invalid", "denied", "failed"}

const (
	refreshOK                  refreshResult = iota
	refreshRejected                          // the provider refused the refresh token: the session ends
	refreshInvalidResponse                   // the provider's answer was refused (ID token, userinfo): the session ends
	refreshProviderUnavailable               // tried again on the next request
	refreshStoreUnavailable                  // the shared store could not coordinate the refresh
	numRefreshResults
)

var refreshResultNames = [numRefreshResults]string{"ok", "rejected", "invalid_response", "provider_unavailable", "store_unavailable"}

const (
	revokedSignOut     revocation = iota // the user signed out
	revokedBackchannel                   // the provider's back-channel logout (one per logout token)
	revokedIdle                          // session_idle_timeout ended it
	numRevocations
)

var revocationNames = [numRevocations]string{"sign_out", "backchannel", "idle"}

const (
	bearerOK bearerResult = iota
	bearerInvalid
	bearerExpired
	bearerInsufficientScope
	bearerKeysUnavailable
	numBearerResults
)

var bearerResultNames = [numBearerResults]string{"ok", "invalid", "expired", "insufficient_scope", "keys_unavailable"}

// collectorSet is every gatehouse collector.
type collectorSet struct {
	loginsStarted, loginsSucceeded *prometheus.CounterVec
	loginsFailed, callbacks        *prometheus.CounterVec
	refreshes, revoked, bearer     *prometheus.CounterVec
	latency                        *prometheus.HistogramVec
	library                        *libraryCollector
}

func newCollectorSet() *collectorSet {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Name: name, Help: help}, append([]string{"provider"}, labels...))
	}
	return &collectorSet{
		loginsStarted:   counter("logins_started_total", "Logins started: browsers sent to the provider."),
		loginsSucceeded: counter("logins_succeeded_total", "Logins finished with a session."),
		loginsFailed:    counter("logins_failed_total", "Callbacks that did not sign the user in, by reason.", "reason"),
		callbacks:       counter("callbacks_total", "Callbacks by outcome: ok, invalid, denied, failed.", "outcome"),
		refreshes:       counter("refreshes_total", "Token refreshes by result.", "result"),
		revoked:         counter("sessions_revoked_total", "Sessions ended by sign-out, back-channel logout or idle timeout.", "kind"),
		bearer:          counter("bearer_verifications_total", "Bearer token verifications by result.", "result"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gatehouse", Name: "provider_request_duration_seconds",
			Help:    "Time to the provider's response headers, by endpoint.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "endpoint"}),
		library: newLibraryCollector(),
	}
}

// register adds the collectors to reg, once: a second block of the same
// config finds them there.
func (c *collectorSet) register(reg *prometheus.Registry) error {
	for _, col := range []prometheus.Collector{
		c.loginsStarted, c.loginsSucceeded, c.loginsFailed, c.callbacks,
		c.refreshes, c.revoked, c.bearer, c.latency, c.library,
	} {
		var dup prometheus.AlreadyRegisteredError
		if err := reg.Register(col); err != nil && !(errors.As(err, &dup) && dup.ExistingCollector == col) {
			return err
		}
	}
	return nil
}

// metrics is one issuer's children of the collectors, resolved once, and
// its provider HTTP client, which times each request. Without a metrics
// registry every counter discards.
type metrics struct {
	provider        string
	pooled          bool // held in metricsPool: release it
	loginsStarted   prometheus.Counter
	loginsSucceeded prometheus.Counter
	loginsFailed    [numLoginFailures]prometheus.Counter
	callbacks       [numCallbackResults]prometheus.Counter
	refreshes       [numRefreshResults]prometheus.Counter
	revoked         [numRevocations]prometheus.Counter
	bearer          [numBearerResults]prometheus.Counter
	latency         [httpx.NumEndpoints]prometheus.Observer
	client          *http.Client

	// What libraryCollector reads: the library counters of the blocks and
	// providers using the issuer, those of ones gone (so a reload resets no
	// counter), the issuer's key sets.
	mu      sync.Mutex
	blocks  map[statsSource]struct{}
	retired libraryStats
	keys    atomic.Pointer[verify.RemoteKeySets]
}

// takeMetrics returns the metrics of issuer, registering the collectors
// in reg; release them with releaseMetrics. A nil reg (no Caddy config)
// gives metrics that count nothing.
func takeMetrics(reg *prometheus.Registry, issuer string) (*metrics, error) {
	if reg == nil {
		return newMetrics(issuer, nil), nil
	}
	if err := collectors.register(reg); err != nil {
		return nil, err
	}
	val, _, err := metricsPool.LoadOrNew(issuer, func() (caddy.Destructor, error) {
		return newMetrics(issuer, collectors), nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*metrics), nil
}

func releaseMetrics(m *metrics) {
	if m.pooled {
		_, _ = metricsPool.Delete(m.provider)
	}
}

func newMetrics(provider string, c *collectorSet) *metrics {
	m := &metrics{provider: provider, pooled: c != nil, blocks: map[statsSource]struct{}{}}
	counter := func(vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
		if c == nil {
			return discard{}
		}
		return vec.WithLabelValues(append([]string{provider}, labels...)...)
	}
	var vecs collectorSet
	if c != nil {
		vecs = *c
	}
	m.loginsStarted = counter(vecs.loginsStarted)
	m.loginsSucceeded = counter(vecs.loginsSucceeded)
	for i, name := range loginFailureNames {
		m.loginsFailed[i] = counter(vecs.loginsFailed, name)
	}
	for i, name := range callbackResultNames {
		m.callbacks[i] = counter(vecs.callbacks, name)
	}
	for i, name := range refreshResultNames {
		m.refreshes[i] = counter(vecs.refreshes, name)
	}
	for i, name := range revocationNames {
		m.revoked[i] = counter(vecs.revoked, name)
	}
	for i, name := range bearerResultNames {
		m.bearer[i] = counter(vecs.bearer, name)
	}
	for e := range httpx.NumEndpoints {
		m.latency[e] = discard{}
		if c != nil {
			m.latency[e] = c.latency.WithLabelValues(provider, e.String())
		}
	}
	m.client = httpx.NewClient(timedTransport{base: http.DefaultTransport, latency: &m.latency}, 0, 0)
	return m
}

// Destruct removes the issuer's series when no config uses it any more.
func (m *metrics) Destruct() error {
	c, l := collectors, prometheus.Labels{"provider": m.provider}
	for _, vec := range []*prometheus.CounterVec{c.loginsStarted, c.loginsSucceeded, c.loginsFailed, c.callbacks, c.refreshes, c.revoked, c.bearer} {
		vec.DeletePartialMatch(l)
	}
	c.latency.DeletePartialMatch(l)
	return nil
}

// discard is a counter and observer that counts nothing.
type discard struct {
	prometheus.Metric
	prometheus.Collector
}

func (discard) Inc()            {}
func (discard) Add(float64)     {}
func (discard) Observe(float64) {}

// The call sites' one-liners.

func (m *metrics) loginStarted() { m.loginsStarted.Inc() }

func (m *metrics) loginSucceeded() {
	m.loginsSucceeded.Inc()
	m.callbacks[callbackOK].Inc()
}

// loginFailed counts a callback that signed nobody in (login.go's
// loginFailed errors), by reason and outcome.
func (m *metrics) loginFailed(err error) {
	reason := loginFailureOf(err)
	m.loginsFailed[reason].Inc()
	switch reason {
	case failStateMismatch, failInvalidCallback:
		m.callbacks[callbackInvalid].Inc()
	case failAccessDenied, failProviderError:
		m.callbacks[callbackDenied].Inc()
	default:
		m.callbacks[callbackFailed].Inc()
	}
}

func loginFailureOf(err error) loginFailure {
	var pe *flow.ProviderError
	var ee *flow.ExchangeError
	switch {
	case errors.Is(err, flow.ErrStateMismatch):
		return failStateMismatch
	case errors.Is(err, flow.ErrIssuerMismatch), errors.Is(err, flow.ErrMissingCode), errors.Is(err, errWrongProvider):
		return failInvalidCallback
	case errors.As(err, &pe):
		if pe.Code == "access_denied" {
			return failAccessDenied
		}
		return failProviderError
	case errors.As(err, &ee):
		return failCodeRejected
	case errors.Is(err, flow.ErrProviderUnavailable):
		return failProviderUnavailable
	case errors.Is(err, flow.ErrTokenResponse), errors.Is(err, flow.ErrIDToken), errors.Is(err, flow.ErrUserinfo):
		return failInvalidResponse
	case errors.Is(err, identity.ErrIncomplete), errors.Is(err, identity.ErrUnverifiedEmail), errors.Is(err, flow.ErrUserAPI),
		errors.Is(err, flow.ErrACR):
		return failIdentityRejected
	case errors.Is(err, session.ErrTooLarge), errors.Is(err, session.ErrUnavailable):
		return failSessionNotSaved
	}
	return failOther
}

// sessionEnded counts a session Load refused for being idle too long.
func (m *metrics) sessionEnded(err error) {
	if errors.Is(err, session.ErrIdle) {
		m.revoked[revokedIdle].Inc()
	}
}

// bearerVerified counts a bearer token's verification by result.
func (m *metrics) bearerVerified(err error) { m.bearer[bearerResultOf(err)].Inc() }

func bearerResultOf(err error) bearerResult {
	if err == nil {
		return bearerOK // before the errors.As target, which escapes
	}
	var scope *flow.InsufficientScopeError
	switch {
	case errors.Is(err, verify.ErrExpired):
		return bearerExpired
	case errors.As(err, &scope):
		return bearerInsufficientScope
	case errors.Is(err, flow.ErrProviderUnavailable):
		return bearerKeysUnavailable
	}
	return bearerInvalid
}

// countRefreshes wraps the refresher's token refresher and lease so that
// each refresh is counted once by result, however many requests wait for
// it. lease may be nil (cookie sessions), and stays so.
func (m *metrics) countRefreshes(client flow.TokenRefresher, lease flow.RefreshLease) (flow.TokenRefresher, flow.RefreshLease) {
	client = countedRefresher{client, m}
	if lease != nil {
		lease = countedLease{lease, m}
	}
	return client, lease
}

type countedRefresher struct {
	flow.TokenRefresher
	m *metrics
}

func (r countedRefresher) Refresh(ctx context.Context, s *session.Session) (*flow.Result, error) {
	res, err := r.TokenRefresher.Refresh(ctx, s)
	result := refreshRejected
	switch {
	case err == nil:
		result = refreshOK
	case errors.Is(err, flow.ErrProviderUnavailable):
		result = refreshProviderUnavailable
	case !errors.Is(err, flow.ErrRefreshRejected):
		result = refreshInvalidResponse
	}
	r.m.refreshes[result].Inc()
	return res, err
}

// countedLease counts the refreshes the shared store could not coordinate.
type countedLease struct {
	flow.RefreshLease
	m *metrics
}

func (l countedLease) TryLease(ctx context.Context, s *session.Session, ttl time.Duration) (func(), bool, error) {
	release, ok, err := l.RefreshLease.TryLease(ctx, s, ttl)
	l.storeTrouble(err)
	return release, ok, err
}

func (l countedLease) AwaitRefresh(ctx context.Context, s *session.Session, wait time.Duration) (*session.Session, error) {
	next, err := l.RefreshLease.AwaitRefresh(ctx, s, wait)
	l.storeTrouble(err)
	return next, err
}

func (l countedLease) storeTrouble(err error) {
	if errors.Is(err, session.ErrUnavailable) {
		l.m.refreshes[refreshStoreUnavailable].Inc()
	}
}

// timedTransport observes each provider request's time to its response
// headers (or failure) in the histogram of its endpoint, which the caller
// named (httpx.WithEndpoint).
type timedTransport struct {
	base    http.RoundTripper
	latency *[httpx.NumEndpoints]prometheus.Observer
}

func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.latency[httpx.EndpointOf(req.Context())].Observe(time.Since(start).Seconds())
	return resp, err
}

// libraryStats are the counters the libraries keep.
type libraryStats struct {
	session, token, introspect [2]uint64 // hits, misses
	discoveries, discoveryFail uint64
}

func (s *libraryStats) add(o libraryStats) {
	for i := range 2 {
		s.session[i] += o.session[i]
		s.token[i] += o.token[i]
		s.introspect[i] += o.introspect[i]
	}
	s.discoveries += o.discoveries
	s.discoveryFail += o.discoveryFail
}

// libraryStats reads g's library counters.
func (g *Gatehouse) libraryStats() libraryStats {
	var s libraryStats
	if g.sessions != nil {
		st := g.sessions.Stats()
		s.session = [2]uint64{st.Hits, st.Misses}
	}
	if b, ok := g.bearer.(interface{ Stats() verify.Stats }); ok {
		st := b.Stats()
		s.token = [2]uint64{st.CacheHits, st.CacheMisses}
	}
	if g.introspector != nil {
		st := g.introspector.Stats()
		s.introspect = [2]uint64{st.CacheHits, st.CacheMisses}
	}
	if g.idp != nil {
		s.add(g.idp.libraryStats())
	}
	return s
}

// libraryStats reads the provider's discovery counters.
func (p *provider) libraryStats() libraryStats {
	var s libraryStats
	if p.meta != nil {
		st := p.meta.Stats()
		s.discoveries, s.discoveryFail = st.Discoveries, st.DiscoveryFailures
	}
	return s
}

// statsSource is what reports library counters to an issuer's metrics: a
// block (its sessions, bearer tokens and first provider), or a further
// provider of a block.
type statsSource interface{ libraryStats() libraryStats }

// statsSource is what reports p's library counters: g itself for its
// first provider, p alone for the others.
func (p *provider) statsSource(g *Gatehouse) statsSource {
	if len(g.idps) > 0 && g.idps[0] == p {
		return g
	}
	return p
}

// attach lets the collector read src's library counters and the issuer's
// key sets; Provision calls it once the block is complete.
func (m *metrics) attach(src statsSource, keys *keyRegistry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blocks[src] = struct{}{}
	if keys != nil {
		m.keys.Store(keys.RemoteKeySets)
	}
}

// detach keeps src's final counts and stops reading them.
func (m *metrics) detach(src statsSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blocks[src]; ok {
		m.retired.add(src.libraryStats())
		delete(m.blocks, src)
	}
}

// libraryCollector reports the libraries' counters of every issuer in use.
type libraryCollector struct {
	cache, jwks, discovery *prometheus.Desc
}

func newLibraryCollector() *libraryCollector {
	return &libraryCollector{
		cache: prometheus.NewDesc("gatehouse_cache_lookups_total",
			"Decoded-session (cache=session) and verified-token (cache=token) cache lookups, by result: hit or miss.",
			[]string{"provider", "cache", "result"}, nil),
		jwks: prometheus.NewDesc("gatehouse_jwks_fetches_total",
			"Fetches of the provider's JWKS, on demand and in the background, by result: ok or error.",
			[]string{"provider", "result"}, nil),
		discovery: prometheus.NewDesc("gatehouse_discovery_fetches_total",
			"Fetches of the provider's discovery document, by result: ok or error.",
			[]string{"provider", "result"}, nil),
	}
}

func (c *libraryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cache
	ch <- c.jwks
	ch <- c.discovery
}

func (c *libraryCollector) Collect(ch chan<- prometheus.Metric) {
	metricsPool.Range(func(_, val any) bool {
		m := val.(*metrics)
		m.mu.Lock()
		s := m.retired
		for g := range m.blocks {
			s.add(g.libraryStats())
		}
		m.mu.Unlock()
		var jwks verify.FetchStats
		if k := m.keys.Load(); k != nil {
			jwks = k.FetchStats()
		}
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{m.provider}, labels...)...)
		}
		counter(c.cache, s.session[0], "session", "hit")
		counter(c.cache, s.session[1], "session", "miss")
		counter(c.cache, s.token[0], "token", "hit")
		counter(c.cache, s.token[1], "token", "miss")
		counter(c.cache, s.introspect[0], "introspection", "hit")
		counter(c.cache, s.introspect[1], "introspection", "miss")
		counter(c.jwks, jwks.OK, "ok")
		counter(c.jwks, jwks.Failed, "error")
		counter(c.discovery, s.discoveries, "ok")
		counter(c.discovery, s.discoveryFail, "error")
		return true
	})
}
