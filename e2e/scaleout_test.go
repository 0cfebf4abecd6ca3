//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-auth/gatehouse/internal/harness"
	"github.com/gatehouse-auth/gatehouse/internal/testredis"
)

// The scale-out scenario: three gatehouse instances — separate Caddy
// processes of the same binary, each with its own Caddyfile, storage and
// ports — share one session store in a real redis-server, behind a front
// (a site of the main Caddy, env.front) that round-robins over them and
// passes the Host header through, so every instance builds its URLs from
// the front's address. Their provider issues 20-second access tokens with
// rotating refresh tokens and delivers back-channel logouts to instance 2.
//
// Each instance answers with X-Gatehouse-Instance: 1, 2 or 3 and sends the
// same header to the upstream, so the tests see which instance served a
// request and what the upstream received from it.
//
// The environment is started by the first test that needs it (scaleEnv),
// not by TestMain, so the rest of the suite does not depend on it, and is
// stopped by tearDown.

// scaleTokenTTL is the scale-out provider's access-token lifetime.
const scaleTokenTTL = 20 * time.Second

type scaleOut struct {
	once sync.Once
	err  error

	op      *process // oidc-provider: 20-second access tokens, back-channel logout to instance 2
	opURL   string   // http://localhost:port
	redis   *testredis.Server
	caddies [3]*process
}

// scaleEnv starts the scale-out environment once and returns it, failing
// the test when it does not start.
func scaleEnv(t *testing.T) *scaleOut {
	t.Helper()
	s := &env.scale
	s.once.Do(func() { s.err = s.start() })
	if s.err != nil {
		t.Fatalf("the scale-out environment did not start: %v", s.err)
	}
	return s
}

func (s *scaleOut) start() error {
	ports, err := harness.FreePorts(4)
	if err != nil {
		return err
	}
	if s.redis, err = testredis.StartProcess(filepath.Join(env.tmp, "redis")); err != nil {
		return err
	}
	s.opURL = fmt.Sprintf("http://localhost:%d", ports[0])
	s.op, err = startProvider(env.root, env.tmp, ports[0], s.opURL, "RS256",
		env.front+"/oauth2/callback", env.front+"/", strconv.Itoa(int(scaleTokenTTL/time.Second)),
		"E2E_BACKCHANNEL_URI="+env.scaleInstances[1]+"/oauth2/backchannel_logout")
	if err != nil {
		return err
	}
	for i, site := range env.scaleInstances {
		dir := filepath.Join(env.tmp, fmt.Sprintf("scale-%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	http_port %[1]d
	storage file_system %[2]s
	log {
		level INFO
	}
}

%[3]s {
	bind 127.0.0.1
	tls internal
	header X-Gatehouse-Instance %[4]d
	gatehouse {
		issuer %[5]s
		client_id gatehouse-basic
		client_secret %[6]s
		cookie_secret %[7]s
		scopes openid email profile groups offline_access
		prompt consent
		store redis {
			address %[8]s
			key_prefix e2e:
		}
	}
	reverse_proxy %[9]s {
		header_up X-Gatehouse-Instance %[4]d
	}
}
`, ports[1+i], filepath.Join(dir, "data"), site, i+1, s.opURL, clientSecret, env.cookieSecret, s.redis.Addr(), env.upstreamAddr)
		cfPath := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfPath, []byte(caddyfile), 0o600); err != nil {
			return err
		}
		s.caddies[i], err = startProcess(env.tmp, fmt.Sprintf("caddy (gatehouse instance %d)", i+1), env.caddyBin,
			[]string{"run", "--config", cfPath, "--adapter", "caddyfile"}, nil, env.root)
		if err != nil {
			return err
		}
	}
	for i, site := range env.scaleInstances {
		if err := waitCaddy(s.caddies[i], site, 30*time.Second); err != nil {
			return fmt.Errorf("gatehouse instance %d did not serve %s: %v\n%s", i+1, site, err, s.caddies[i].tail())
		}
	}
	// The front reaches every instance, and each instance takes the
	// front's Host (127.0.0.1:<front port>) for its site.
	seen := map[string]bool{}
	for range 2 * len(env.scaleInstances) {
		resp, err := insecureClient.Get(env.front + "/scaleout/ping")
		if err != nil {
			return fmt.Errorf("the front: %v", err)
		}
		resp.Body.Close()
		seen[resp.Header.Get("X-Gatehouse-Instance")] = true
	}
	if !seen["1"] || !seen["2"] || !seen["3"] || len(seen) != 3 {
		return fmt.Errorf("six requests through the front were answered by instances %v, want 1, 2 and 3", seen)
	}
	return nil
}

// waitCaddy waits until the Caddy process p serves site, or fails at once
// when it reports an error (a Caddyfile it cannot load).
func waitCaddy(p *process, site string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if errs := p.lines("Error:"); len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "\n"))
		}
		resp, err := insecureClient.Get(site + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *scaleOut) stop(failed bool) {
	for _, p := range append(s.caddies[:], s.op) {
		if p == nil {
			continue
		}
		p.stop()
		if failed {
			fmt.Fprintf(os.Stderr, "--- %s output (last lines):\n%s\n", p.name, p.tail())
		}
	}
	if s.redis != nil {
		s.redis.Stop()
	}
}

// frontHost is the Host header the front passes to the instances.
func frontHost() string {
	u, _ := url.Parse(env.front)
	return u.Host
}

// scaleLogin signs alice in through the front on tb and returns when the
// browser is back at path.
func scaleLogin(tb *tab, s *scaleOut, path string) {
	tb.t.Helper()
	tb.navigate(env.front + path)
	tb.providerLogin(s.opURL, "alice") // with prompt=consent: login, then consent
	tb.waitLocation(env.front + path)
	if got := tb.text("#user"); got != "alice" {
		tb.t.Fatalf("after logging in through the front the upstream saw user %q", got)
	}
}

// sessionCookies returns the browser's session cookie for the front and
// its chunks (__Host-gatehouse, __Host-gatehouse_1, …), not login cookies.
func sessionCookies(tb *tab) []*http.Cookie {
	tb.t.Helper()
	var out []*http.Cookie
	for name, c := range tb.cookies(env.front) {
		chunk, isChunk := strings.CutPrefix(name, sessionCookie+"_")
		if _, err := strconv.Atoi(chunk); name != sessionCookie && (!isChunk || err != nil) {
			continue
		}
		out = append(out, &http.Cookie{Name: name, Value: c.Value})
	}
	return out
}

// probe is what one request sent straight to an instance got, and whether
// the upstream saw it.
type probe struct {
	instance int // 1, 2 or 3: where the request was sent
	status   int
	answered string // X-Gatehouse-Instance of the response
	location string
	body     string
	upstream []http.Header // what the upstream received for this request
}

// sendToInstance sends a browser-like navigation with cookies straight to
// instance i (1-based), with the front's Host header, as the front would.
func sendToInstance(t *testing.T, i int, cookies []*http.Cookie) probe {
	t.Helper()
	id := rand.Text()
	req, err := http.NewRequest("GET", env.scaleInstances[i-1]+"/scaleout/replay?probe="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = frontHost()
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Site", "none")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("X-E2E-Probe", id)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatalf("instance %d: %v", i, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	p := probe{
		instance: i,
		status:   resp.StatusCode,
		answered: resp.Header.Get("X-Gatehouse-Instance"),
		location: resp.Header.Get("Location"),
		body:     string(body),
	}
	for _, h := range env.upstream.headers() {
		if h.Get("X-E2E-Probe") == id {
			p.upstream = append(p.upstream, h)
		}
	}
	return p
}

func (p probe) String() string {
	return fmt.Sprintf("instance %d answered %d (X-Gatehouse-Instance %q, Location %.120q), the upstream saw it %d times; body %.200q",
		p.instance, p.status, p.answered, p.location, len(p.upstream), p.body)
}

// expectServed checks that instance i serves the cookies' session: the
// upstream got the request from that instance, with alice's identity.
func expectServed(t *testing.T, i int, cookies []*http.Cookie) {
	t.Helper()
	p := sendToInstance(t, i, cookies)
	if p.status != http.StatusOK || p.answered != strconv.Itoa(i) || len(p.upstream) != 1 {
		t.Fatalf("the session cookie on instance %d: %s", i, p)
	}
	h := p.upstream[0]
	if h.Get("X-Forwarded-User") != "alice" || h.Get("X-Forwarded-Email") != "alice@example.com" || h.Get("X-Gatehouse-Instance") != strconv.Itoa(i) {
		t.Fatalf("instance %d sent the upstream user %q, e-mail %q, instance %q", i,
			h.Get("X-Forwarded-User"), h.Get("X-Forwarded-Email"), h.Get("X-Gatehouse-Instance"))
	}
}

// expectRefused checks that instance i does not serve the cookies: it
// sends the browser to log in at provider (or answers 401), and the
// upstream never sees the request.
func expectRefused(t *testing.T, i int, cookies []*http.Cookie, provider string) {
	t.Helper()
	p := sendToInstance(t, i, cookies)
	toLogin := (p.status == http.StatusFound || p.status == http.StatusSeeOther) && strings.HasPrefix(p.location, provider+"/auth?")
	if len(p.upstream) != 0 || !toLogin && p.status != http.StatusUnauthorized || p.answered != strconv.Itoa(i) {
		t.Errorf("the old session cookie on instance %d was not refused: %s", i, p)
	}
}

// burstResult is what one fetch() of a burst got.
type burstResult struct {
	Probe    string `json:"probe"`
	Status   int    `json:"status"`
	Type     string `json:"type"`
	Instance string `json:"instance"`
	Body     string `json:"body"`
}

// burst makes the page fetch three API URLs at once — as a page loading
// its data does — so at a refresh the instances see the same cookie at
// the same time. The round-robin front spreads them over the instances.
func burst(tb *tab, run string, n int) []burstResult {
	tb.t.Helper()
	raw := eval[[]byte](tb, `(async () => {
	const one = async (k) => {
		const probe = `+jsString(run)+` + "-" + `+strconv.Itoa(n)+` + "-" + k;
		try {
			const r = await fetch("/api/scaleout/" + probe, {
				redirect: "manual", credentials: "include", cache: "no-store",
				headers: {"X-E2E-Probe": probe},
			});
			return {probe, status: r.status, type: r.type, instance: r.headers.get("X-Gatehouse-Instance") || "", body: await r.text()};
		} catch (e) {
			return {probe, status: -1, type: "error", instance: "", body: String(e)};
		}
	};
	return Promise.all([0, 1, 2].map(one));
})()`)
	var res []burstResult
	if err := json.Unmarshal(raw, &res); err != nil {
		tb.t.Fatalf("burst result %s: %v", raw, err)
	}
	return res
}

// TestScaleOutBrowsing: a user browses for 90 seconds through the
// round-robin front, three requests at a time, across several 20-second
// token lifetimes. Every request reaches the upstream with the identity —
// no spurious logout, no 401 or 503 — all three instances serve, and the
// provider sees one refresh per token lifetime, none of them refused:
// the instances share each refresh instead of spending the rotating
// refresh token more than once.
func TestScaleOutBrowsing(t *testing.T) {
	const browsing = 90 * time.Second
	s := scaleEnv(t)
	tb := newBrowserFor(t, browsing+2*time.Minute)
	loginBegan := time.Now()
	scaleLogin(tb, s, "/scaleout/browse")

	refreshesBefore := s.op.count("grant refresh_token")
	refusedBefore := len(s.op.lines("grant error"))
	revokedBefore := len(s.op.lines("grant revoked"))
	serverErrorsBefore := len(s.op.lines("server_error"))
	upstreamBefore := len(env.upstream.headers())

	run := rand.Text()
	served := map[string]int{} // X-Gatehouse-Instance → responses
	sent := 0
	var maxGap time.Duration // the longest time between the starts of two bursts
	start := time.Now()
	last := start
	for n := 0; time.Since(start) < browsing; n++ {
		now := time.Now()
		maxGap = max(maxGap, now.Sub(last))
		last = now
		for _, r := range burst(tb, run, n) {
			sent++
			var id struct{ User, Email, Path string }
			_ = json.Unmarshal([]byte(r.Body), &id)
			if r.Status != http.StatusOK || r.Type != "basic" || id.User != "alice" || id.Email != "alice@example.com" || id.Path != "/api/scaleout/"+r.Probe {
				t.Fatalf("%s into browsing through the front, request %s got %d (%s) from instance %q: %.300s",
					time.Since(start).Round(time.Millisecond), r.Probe, r.Status, r.Type, r.Instance, r.Body)
			}
			served[r.Instance]++
		}
		time.Sleep(300 * time.Millisecond)
	}
	elapsed := time.Since(start)
	end := time.Now()
	maxGap = max(maxGap, end.Sub(last))

	// What the upstream saw: every request, each from the instance that
	// answered it, with alice's identity.
	fromInstance := map[string]int{}
	for _, h := range env.upstream.headers()[upstreamBefore:] {
		if !strings.HasPrefix(h.Get("X-E2E-Probe"), run+"-") {
			continue
		}
		if h.Get("X-Forwarded-User") != "alice" {
			t.Errorf("the upstream got %s without alice's identity: user %q", h.Get("X-E2E-Probe"), h.Get("X-Forwarded-User"))
		}
		fromInstance[h.Get("X-Gatehouse-Instance")]++
	}
	t.Logf("%d requests in %s (bursts at most %s apart): answered by instances %v, the upstream got them from %v",
		sent, elapsed.Round(time.Millisecond), maxGap.Round(time.Millisecond), served, fromInstance)
	if len(served) != 3 || served["1"] == 0 || served["2"] == 0 || served["3"] == 0 {
		t.Errorf("not all three instances served: %v", served)
	}
	for inst, n := range served {
		if fromInstance[inst] != n {
			t.Errorf("instance %q answered %d requests but the upstream got %d from it", inst, n, fromInstance[inst])
		}
	}

	// The provider's refreshes. Its tokens live L = 20 s; gatehouse
	// refreshes one when it expires within a tenth of its lifetime, at
	// 18 s of age, on the first request from then on.
	//
	// At most: the login's tokens were issued after loginBegan, and each
	// refresh issues the next tokens no sooner than 18 s after the last —
	// 17 s, allowing for an expiry kept to the second — so by the end
	// there were at most floor((end - loginBegan) / 17 s) refreshes.
	//
	// At least: every token is refreshed by the first burst starting
	// 18 s after it was issued, at most maxGap later, and that burst ends
	// before the next one starts, so within 18 s + 2·maxGap of the last
	// issue. The login's tokens came before start, so at least
	// floor(elapsed / (18 s + 2·maxGap)) refreshes fall into the window.
	//
	// 90 s of browsing that way makes 4 or 5 refreshes; one per request,
	// or one per instance, would be far more.
	refreshAge := scaleTokenTTL - scaleTokenTTL/10
	most := int(end.Sub(loginBegan) / (refreshAge - time.Second))
	least := int(elapsed / (refreshAge + 2*maxGap))
	refreshes := s.op.count("grant refresh_token") - refreshesBefore
	t.Logf("the provider saw %d refresh grants (want %d to %d)", refreshes, least, most)
	if refreshes < least || refreshes > most {
		t.Errorf("%s of browsing with %s tokens made %d refresh grants, want %d to %d (one per token lifetime)",
			elapsed.Round(time.Millisecond), scaleTokenTTL, refreshes, least, most)
	}
	if refused := s.op.lines("grant error")[refusedBefore:]; len(refused) > 0 {
		t.Errorf("the provider refused grants (a refresh token spent twice?): %q", refused)
	}
	if revoked := len(s.op.lines("grant revoked")) - revokedBefore; revoked > 0 {
		t.Errorf("the provider revoked %d grants while the user browsed (refresh-token reuse detection)", revoked)
	}
	if errs := s.op.lines("server_error")[serverErrorsBefore:]; len(errs) > 0 {
		t.Errorf("the provider had server errors: %q", errs)
	}

	// And the page itself still loads without a trip to the provider.
	tb.resetVisits()
	tb.navigate(env.front + "/scaleout/after")
	tb.waitLocation(env.front + "/scaleout/after")
	if got := tb.text("#user"); got != "alice" || tb.visited(s.opURL) {
		t.Fatalf("after browsing: user %q, pages %v", got, tb.documentURLs())
	}
}

// inconclusiveAfter is how long after a login a refused old cookie still
// proves that the session was revoked: up to then no instance had a
// reason to refresh the session's first access token (due at 18 s), so it
// cannot be the provider refusing the refresh that ended the session.
const inconclusiveAfter = 16 * time.Second

// TestScaleOutSignOut: after a sign-out through the front, a copy of the
// old session cookie is refused by every instance at once — the instance
// that served the sign-out revoked the session in the shared store —
// and never reaches the upstream.
func TestScaleOutSignOut(t *testing.T) {
	s := scaleEnv(t)
	tb := newBrowser(t)
	loginBegan := time.Now()
	scaleLogin(tb, s, "/scaleout/signout")
	cookies := sessionCookies(tb)
	if len(cookies) == 0 {
		t.Fatalf("no session cookie after login: %v", tb.cookies(env.front))
	}
	for i := 1; i <= 3; i++ {
		expectServed(t, i, cookies)
	}
	backchannelBefore := len(s.op.lines("backchannel "))

	tb.resetVisits()
	tb.navigate(env.front + "/oauth2/sign_out")
	tb.waitLocation(s.opURL + "/session/end") // not confirmed: the provider's session stays
	if left := sessionCookies(tb); len(left) != 0 {
		t.Fatalf("session cookies survived sign-out: %v", left)
	}

	for i := 1; i <= 3; i++ {
		expectRefused(t, i, cookies, s.opURL)
	}
	if took := time.Since(loginBegan); took > inconclusiveAfter {
		t.Fatalf("login to the last replay took %s, more than %s: the refusals no longer prove that sign-out revoked the session", took, inconclusiveAfter)
	}
	if bc := s.op.lines("backchannel ")[backchannelBefore:]; len(bc) > 0 {
		t.Fatalf("the provider sent a back-channel logout during the sign-out (%q): the test cannot tell what revoked the session", bc)
	}
}

// TestBackChannelLogout: the user's session ends at the provider
// (end_session, confirmed in the browser); the provider delivers a
// back-channel logout to instance 2, and from then on a copy of the
// session cookie is refused by every instance.
func TestBackChannelLogout(t *testing.T) {
	s := scaleEnv(t)
	tb := newBrowser(t)
	loginBegan := time.Now()
	scaleLogin(tb, s, "/scaleout/backchannel")
	cookies := sessionCookies(tb)
	if len(cookies) == 0 {
		t.Fatalf("no session cookie after login: %v", tb.cookies(env.front))
	}
	for i := 1; i <= 3; i++ {
		expectServed(t, i, cookies)
	}
	const delivered = "backchannel success gatehouse-basic"
	deliveredBefore := s.op.count(delivered)
	failedBefore := len(s.op.lines("backchannel error"))

	// End the session at the provider, as a user signing out of another
	// app of the same provider would.
	tb.navigate(s.opURL + "/session/end")
	tb.waitLocation(s.opURL + "/session/end")
	tb.do(chromedp.WaitVisible(chromedp.CSS(`button[name="logout"]`)))
	tb.do(chromedp.Click(chromedp.CSS(`button[name="logout"]`)))

	deadline := time.Now().Add(15 * time.Second)
	for s.op.count(delivered) == deliveredBefore {
		if failed := s.op.lines("backchannel error")[failedBefore:]; len(failed) > 0 {
			t.Fatalf("the provider's back-channel logout to instance 2 failed: %q", failed)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no back-channel logout delivered within 15s; the provider's output:\n%s", s.op.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := s.op.count(delivered) - deliveredBefore; n != 1 {
		t.Errorf("the provider delivered %d back-channel logouts, want 1", n)
	}

	for i := 1; i <= 3; i++ {
		expectRefused(t, i, cookies, s.opURL)
	}
	if took := time.Since(loginBegan); took > inconclusiveAfter {
		t.Fatalf("login to the last replay took %s, more than %s: the refusals no longer prove that the back-channel logout revoked the session", took, inconclusiveAfter)
	}

	// The browser holds that cookie too: it is sent to log in again.
	tb.resetVisits()
	tb.navigate(env.front + "/scaleout/backchannel")
	tb.atProviderLogin(s.opURL)
}
