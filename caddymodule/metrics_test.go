package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/health"
)

// registryOf is the metrics registry of g's Caddy config: what the admin
// endpoint serves at /metrics.
func registryOf(g *Gatehouse) *prometheus.Registry {
	ctx := g.ctx.(caddy.Context)
	return ctx.GetMetricsRegistry()
}

// scrape gathers reg and returns the series name{provider=issuer, labels…}:
// a counter's value, a histogram's sample count; -1 when it is absent.
func scrape(t testing.TB, reg prometheus.Gatherer, issuer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering the registry: %v", err)
	}
	want := map[string]string{"provider": issuer}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// metricsOf returns a scrape of g's registry for g's issuer.
func metricsOf(t testing.TB, g *Gatehouse) func(name string, labels ...string) float64 {
	reg := registryOf(g)
	return func(name string, labels ...string) float64 {
		t.Helper()
		return scrape(t, reg, g.Issuer, name, labels...)
	}
}

// expect fails the test unless every series has its value.
func expect(t testing.TB, m func(string, ...string) float64, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		name, labels, _ := strings.Cut(series, " ")
		if got := m(name, strings.Fields(labels)...); got != v {
			t.Errorf("%s: %v, want %v", series, got, v)
		}
	}
}

// provisionIn provisions a Gatehouse for issuer in ctx (newHandler makes
// a context of its own); the caller cleans it up.
func provisionIn(t testing.TB, ctx caddy.Context, issuer string, mod func(*Gatehouse)) *Gatehouse {
	t.Helper()
	g := &Gatehouse{
		ProviderConfig: ProviderConfig{Issuer: issuer, ClientID: testClientID, ClientSecret: testClientSecret},
		CookieSecrets:  []string{testCookieSecret},
		CookieInsecure: true,
	}
	if mod != nil {
		mod(g)
	}
	if err := g.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	g.logger = zap.NewNop()
	return g
}

// TestMetricsLogin: a login counts as started and succeeded, a forged and
// a cancelled callback as failed by reason; the session cache, the
// discovery and JWKS fetches and the provider latency move with them.
func TestMetricsLogin(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), nil)
	m := metricsOf(t, g)
	a := newApp(t, g)
	b := a.login(t, "alice")
	expect(t, m, map[string]float64{
		"gatehouse_logins_started_total":                                 1,
		"gatehouse_logins_succeeded_total":                               1,
		"gatehouse_callbacks_total outcome ok":                           1,
		"gatehouse_logins_failed_total reason state_mismatch":            0,
		"gatehouse_discovery_fetches_total result ok":                    1,
		"gatehouse_discovery_fetches_total result error":                 0,
		"gatehouse_jwks_fetches_total result ok":                         1,
		"gatehouse_jwks_fetches_total result error":                      0,
		"gatehouse_provider_request_duration_seconds endpoint discovery": 1,
		"gatehouse_provider_request_duration_seconds endpoint jwks":      1,
		"gatehouse_provider_request_duration_seconds endpoint token":     1,
		"gatehouse_provider_request_duration_seconds endpoint userinfo":  1,
		"gatehouse_provider_request_duration_seconds endpoint other":     0,
	})

	// The session cookie: unsealed once, then answered from the cache.
	hits, misses := m("gatehouse_cache_lookups_total", "cache", "session", "result", "hit"), m("gatehouse_cache_lookups_total", "cache", "session", "result", "miss")
	for range 3 {
		if resp, body := b.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
			t.Fatalf("signed in: %d %s", resp.StatusCode, body)
		}
	}
	expect(t, m, map[string]float64{
		"gatehouse_cache_lookups_total cache session result hit":  hits + 2,
		"gatehouse_cache_lookups_total cache session result miss": misses + 1,
	})

	// A forged callback, and a login the user cancels at the provider.
	b.get(a.URL + "/oauth2/callback?state=forged&code=x")
	other := newBrowser(t)
	resp, _ := other.get(a.URL + "/somewhere")
	authz, _ := url.Parse(resp.Header.Get("Location"))
	other.get(a.URL + "/oauth2/callback?error=access_denied&state=" + authz.Query().Get("state") + "&iss=" + url.QueryEscape(idp.Issuer()))
	expect(t, m, map[string]float64{
		"gatehouse_logins_started_total":                      2,
		"gatehouse_logins_succeeded_total":                    1,
		"gatehouse_logins_failed_total reason state_mismatch": 1,
		"gatehouse_logins_failed_total reason access_denied":  1,
		"gatehouse_logins_failed_total reason code_rejected":  0,
		"gatehouse_callbacks_total outcome invalid":           1,
		"gatehouse_callbacks_total outcome denied":            1,
		"gatehouse_callbacks_total outcome failed":            0,
	})
}

// TestMetricsRefresh: one refresh succeeds, one the provider refuses (its
// refresh token was spent elsewhere).
func TestMetricsRefresh(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := offlineHandler(t, idp, clock, nil)
	m := metricsOf(t, g)
	a := newApp(t, g)
	fine, robbed := a.login(t, "alice"), a.login(t, "bob")
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.session(t, robbed).RefreshToken}}
	req, _ := http.NewRequest("POST", idp.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("spending bob's refresh token elsewhere: %v", err)
	}

	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	if resp, _ := fine.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshed session: %d", resp.StatusCode)
	}
	if resp, _ := robbed.get(a.URL + "/page"); resp.StatusCode != http.StatusFound {
		t.Fatalf("session whose refresh is refused: %d", resp.StatusCode)
	}
	expect(t, m, map[string]float64{
		"gatehouse_refreshes_total result ok":                   1,
		"gatehouse_refreshes_total result rejected":             1,
		"gatehouse_refreshes_total result provider_unavailable": 0,
		"gatehouse_refreshes_total result store_unavailable":    0,
		"gatehouse_refreshes_total result invalid_response":     0,
	})
}

// TestMetricsRevocations: sign-out, a back-channel logout and an idle
// session each count once by kind.
func TestMetricsRevocations(t *testing.T) {
	idp := newIDP(t)
	clock := &testClock{t: time.Now()}
	g := newHandler(t, idp.Issuer(), func(g *Gatehouse) {
		g.now = clock.now
		g.SessionIdleTimeout = caddyDuration(10 * time.Minute)
	})
	m := metricsOf(t, g)
	a := newApp(t, g)

	if resp, _ := a.login(t, "alice").get(a.URL + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	b := a.login(t, "bob")
	logout, err := idp.MintLogoutToken(testClientID, "bob", a.session(t, b).SID)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postLogout(t, a, url.Values{"logout_token": {logout}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", resp.StatusCode, body)
	}
	idle := a.login(t, "alice")
	clock.advance(11 * time.Minute)
	if resp, _ := idle.get(a.URL + "/page"); resp.StatusCode != http.StatusFound {
		t.Fatalf("idle session: %d", resp.StatusCode)
	}
	expect(t, m, map[string]float64{
		"gatehouse_sessions_revoked_total kind sign_out":    1,
		"gatehouse_sessions_revoked_total kind backchannel": 1,
		"gatehouse_sessions_revoked_total kind idle":        1,
	})
}

// TestMetricsBearer: bearer verifications by result, and the
// verified-token cache.
func TestMetricsBearer(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	m := metricsOf(t, g)
	good := mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for token, status := range map[string]int{
		good:     http.StatusOK,
		tampered: http.StatusUnauthorized,
		mint(t, idp, "alice", []string{apiAudience}, []string{"orders:read"}, -time.Hour): http.StatusUnauthorized,
		mint(t, idp, "alice", []string{apiAudience}, []string{"other"}, time.Hour):        http.StatusForbidden,
	} {
		resp, _, err := serve(t, g, apiRequest("Bearer "+token))
		if got := statusOf(resp, err); got != status {
			t.Fatalf("status %d, want %d", got, status)
		}
	}
	if resp, _, err := serve(t, g, apiRequest("Bearer "+good)); statusOf(resp, err) != http.StatusOK {
		t.Fatal("the good token, again")
	}
	expect(t, m, map[string]float64{
		"gatehouse_bearer_verifications_total result ok":                 2,
		"gatehouse_bearer_verifications_total result invalid":            1,
		"gatehouse_bearer_verifications_total result expired":            1,
		"gatehouse_bearer_verifications_total result insufficient_scope": 1,
		"gatehouse_bearer_verifications_total result keys_unavailable":   0,
		"gatehouse_cache_lookups_total cache token result hit":           1,
		"gatehouse_cache_lookups_total cache token result miss":          4,
	})
}

// statusOf is the status a handler answered, written or returned.
func statusOf(resp *http.Response, err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return resp.StatusCode
}

// TestProviderHealthLogged: discovery, the JWKS and the token endpoint
// each log one warning when they become unreachable and one info line
// when they are back, however many calls fail between; the fetch
// counters say the same.
func TestProviderHealthLogged(t *testing.T) {
	idp, down := newSwitchableIDP(t)
	clock := &testClock{t: time.Now()}
	core, logs := observer.New(zapcore.DebugLevel)
	g := offlineHandler(t, idp, clock, func(g *Gatehouse) {
		g.slogger = slog.New(zapslog.NewHandler(core))
		g.Bearer = &BearerConfig{Audiences: []string{apiAudience}}
	})
	m := metricsOf(t, g)
	a := newApp(t, g)
	status := func(r *http.Request) int {
		t.Helper()
		resp, _, err := serve(t, g, r)
		return statusOf(resp, err)
	}
	count := func(msg, endpoint string) int {
		return logs.FilterMessage(msg).FilterField(zap.String("endpoint", endpoint)).Len()
	}

	// Discovery: down at the first request, three attempts (backoff), back.
	down.Store(true)
	for _, wait := range []time.Duration{0, 2 * time.Second, 5 * time.Second} {
		clock.advance(wait)
		if s := status(navigation("GET", "/x")); s != http.StatusServiceUnavailable {
			t.Fatalf("login start with discovery down: %d", s)
		}
	}
	if s := status(apiRequest("Bearer " + mint(t, idp, "alice", []string{apiAudience}, nil, 3*time.Hour))); s != http.StatusServiceUnavailable {
		t.Fatalf("bearer token with discovery down: %d", s)
	}
	down.Store(false)
	clock.advance(10 * time.Second)
	if s := status(navigation("GET", "/x")); s != http.StatusFound {
		t.Fatalf("login start with the provider back: %d", s)
	}

	// The token endpoint: a refresh fails twice, then works.
	b := a.login(t, "alice")
	down.Store(true)
	clock.advance(devidp.DefaultAccessTokenTTL - 30*time.Second)
	for range 2 {
		if resp, _ := b.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
			t.Fatalf("valid session, token endpoint down: %d", resp.StatusCode)
		}
	}
	down.Store(false)
	if resp, _ := b.get(a.URL + "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh with the provider back: %d", resp.StatusCode)
	}

	// The JWKS: a token signed by a new key makes it refetch; twice in
	// vain, then it works.
	if err := idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	rotated := mint(t, idp, "alice", []string{apiAudience}, nil, 3*time.Hour)
	down.Store(true)
	for range 2 {
		clock.advance(16 * time.Second)
		if s := status(apiRequest("Bearer " + rotated)); s != http.StatusUnauthorized {
			t.Fatalf("new key, JWKS down: %d", s)
		}
	}
	down.Store(false)
	clock.advance(16 * time.Second)
	if s := status(apiRequest("Bearer " + rotated)); s != http.StatusOK {
		t.Fatalf("new key, JWKS back: %d", s)
	}

	for _, endpoint := range []string{"discovery", "token", "jwks"} {
		if n := count(health.Unreachable, endpoint); n != 1 {
			t.Errorf("%s: %d %q lines, want 1", endpoint, n, health.Unreachable)
		}
		if n := count(health.Reachable, endpoint); n != 1 {
			t.Errorf("%s: %d %q lines, want 1", endpoint, n, health.Reachable)
		}
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 3 {
		t.Errorf("%d warnings, want 3:\n%v", n, logs.FilterLevelExact(zapcore.WarnLevel).All())
	}
	expect(t, m, map[string]float64{
		"gatehouse_discovery_fetches_total result error":               3,
		"gatehouse_discovery_fetches_total result ok":                  1,
		"gatehouse_jwks_fetches_total result error":                    2,
		"gatehouse_jwks_fetches_total result ok":                       2,
		"gatehouse_refreshes_total result provider_unavailable":        2,
		"gatehouse_refreshes_total result ok":                          1,
		"gatehouse_bearer_verifications_total result keys_unavailable": 1,
		"gatehouse_bearer_verifications_total result invalid":          2,
		"gatehouse_bearer_verifications_total result ok":               1,
	})
}

// TestMetricsAcrossReloads: a second block of the same config and the
// next config register the same collectors without error, the counters
// go on across the reload (library counters of the old blocks included),
// and the issuer's series go when no config uses it any more.
func TestMetricsAcrossReloads(t *testing.T) {
	idp := newIDP(t)
	ctx1, cancel1 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel1()
	old1 := provisionIn(t, ctx1, idp.Issuer(), nil)
	old2 := provisionIn(t, ctx1, idp.Issuer(), nil)
	cookies := sessionCookies(t, old1, aliceSession())
	withCookies := func() *http.Request {
		r := httptest.NewRequest("GET", "/page", nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return r
	}
	serve(t, old1, navigation("GET", "/x"))
	serve(t, old2, withCookies())
	serve(t, old2, withCookies())

	ctx2, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	next := provisionIn(t, ctx2, idp.Issuer(), nil)
	old1.Cleanup()
	old2.Cleanup()
	serve(t, next, navigation("GET", "/x"))
	serve(t, next, withCookies())
	expect(t, metricsOf(t, next), map[string]float64{
		"gatehouse_logins_started_total":                          2,
		"gatehouse_cache_lookups_total cache session result miss": 2,
		"gatehouse_cache_lookups_total cache session result hit":  1,
	})

	next.Cleanup()
	expect(t, metricsOf(t, next), map[string]float64{
		"gatehouse_logins_started_total":                          -1,
		"gatehouse_cache_lookups_total cache session result miss": -1,
	})
}

// TestMetricsLint: every gatehouse metric passes promlint.
func TestMetricsLint(t *testing.T) {
	idp := newIDP(t)
	g := bearerHandler(t, idp, nil)
	newApp(t, g).login(t, "alice")
	families, err := registryOf(g).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "gatehouse_") {
			names = append(names, f.GetName())
		}
	}
	if len(names) != 11 {
		t.Errorf("%d gatehouse metrics: %v", len(names), names)
	}
	problems, err := testutil.GatherAndLint(registryOf(g), names...)
	if err != nil || len(problems) > 0 {
		t.Fatalf("%v %v", problems, err)
	}
}

// BenchmarkMetrics compares the hot paths (a cached session, a cached
// bearer token) with gatehouse's metrics registered in Caddy's registry
// (on) and without a registry (off: every counter discards), in one run.
func BenchmarkMetrics(b *testing.B) {
	idp := newIDP(b)
	token := mint(b, idp, "alice", []string{apiAudience}, []string{"orders:read"}, time.Hour)
	for _, path := range []string{"Session1Chunk", "BearerCacheHit"} {
		for _, on := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/metrics=%v", path, map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) {
				ctx := caddy.Context{Context: context.Background()} // no registry
				if on {
					var cancel context.CancelFunc
					ctx, cancel = caddy.NewContext(ctx)
					defer cancel()
				}
				g := provisionIn(b, ctx, idp.Issuer(), func(g *Gatehouse) {
					g.Bearer = &BearerConfig{Audiences: []string{apiAudience}, RequiredScopes: []string{"orders:read"}}
				})
				defer g.Cleanup()
				r := apiRequest("Bearer " + token)
				if path == "Session1Chunk" {
					r = httptest.NewRequest("GET", "/app", nil)
					for _, c := range sessionCookies(b, g, aliceSession()) {
						r.AddCookie(c)
					}
					r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
					r.Header.Set("Connection", "keep-alive")
				}
				benchServe(b, g, r, http.StatusOK)
			})
		}
	}
}

// BenchmarkMetricsCount is what counting adds to a request, apart from
// the handler's noise: a bearer verification's count (the one count on
// the cached-bearer path), with a registry and without.
func BenchmarkMetricsCount(b *testing.B) {
	reg := prometheus.NewPedanticRegistry()
	on, err := takeMetrics(reg, "https://bench.example")
	if err != nil {
		b.Fatal(err)
	}
	defer releaseMetrics(on)
	for name, m := range map[string]*metrics{"on": on, "off": newMetrics("https://bench.example", nil)} {
		b.Run("metrics="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.bearerVerified(nil)
			}
		})
	}
}

// TestMetricsOff: a block with `metrics off` signs users in like any other
// and puts no series of its issuer in the registry.
func TestMetricsOff(t *testing.T) {
	idp := newIDP(t)
	g := newHandler(t, idp.Issuer(), func(g *Gatehouse) { g.DisableMetrics = true })
	a := newApp(t, g)
	b := a.login(t, "alice")
	if resp, body := b.get(a.URL + "/page"); resp.StatusCode != http.StatusOK || body != "hello alice" {
		t.Fatalf("signed in: %d %q", resp.StatusCode, body)
	}
	families, err := registryOf(g).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "provider" && l.GetValue() == idp.Issuer() {
					t.Errorf("%s has a series of the block with metrics off", f.GetName())
				}
			}
		}
	}
}
