//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse-auth/gatehouse/internal/harness"
)

const clientSecret = "gatehouse-e2e-client-secret"

// sessionCookie is gatehouse's default session cookie on an HTTPS site
// without cookie_domain: __Host- prefixed (review SA2-18).
const sessionCookie = "__Host-gatehouse"

// env is the running system under test, set up once by TestMain.
var env *environment

type environment struct {
	root, tmp string

	op, opES, opShort *process // oidc-provider: RS256, ES256, RS256 with 30-second access tokens
	opURL             string   // http://localhost:port
	opESURL           string
	opShortURL        string
	opPartners        *process // oidc-provider: ES256, users' e-mails at partners.example (appMulti's second provider)
	opPartnersURL     string
	caddy             *process
	app               string // https://127.0.0.1:port, gatehouse + login (RS256 provider); /admin/* for admins only
	appES             string // https://127.0.0.1:port, gatehouse + login (ES256 provider, client_secret_post)
	appShort          string // https://127.0.0.1:port, gatehouse with refresh tokens (30-second access tokens, refresh_before left at its 1m default)
	appPK             string // https://127.0.0.1:port, appShort's provider, client_auth private_key_jwt
	appMulti          string // https://127.0.0.1:port, gatehouse with two provider blocks: staff (op) and partners (opPartners)
	appStepUp         string // https://127.0.0.1:port, op's login; /admin/* requires acr gold (step-up)
	api               string // https://127.0.0.1:port, gatehouse bearer only (JWTs, opaque tokens by introspection, DPoP optional)
	upstream          *recorder
	upstreamAddr      string // host:port of the upstream recorder
	caddyBin          string // the cmd/caddy built for the run
	cookieSecret      string // hex

	// The scale-out scenario (scaleout_test.go): front is a site of this
	// Caddy that round-robins over three more Caddy processes at
	// scaleInstances, started by the first test that needs them.
	front          string    // https://127.0.0.1:port
	scaleInstances [3]string // https://127.0.0.1:port of gatehouse instances 1, 2, 3
	scale          scaleOut

	browser context.Context // the browser; tests open their own contexts in it
}

func TestMain(m *testing.M) {
	var code int
	err := setUp()
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "e2e: setting up:", err)
		code = 1
	}
	if env != nil {
		env.tearDown(code != 0)
	}
	os.Exit(code)
}

func setUp() error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return errors.New("chromium is not installed: run testdata/e2e/setup.sh (it installs Debian's chromium)")
	}
	if _, err := os.Stat(filepath.Join(root, "testdata/e2e/node_modules/oidc-provider")); err != nil {
		return errors.New("oidc-provider is not installed: run testdata/e2e/setup.sh (npm ci in testdata/e2e)")
	}
	tmp, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		return err
	}
	env = &environment{root: root, tmp: tmp, upstream: &recorder{}}

	caddyBin := filepath.Join(tmp, "caddy")
	env.caddyBin = caddyBin
	build := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building cmd/caddy: %v\n%s", err, out)
	}

	ports, err := harness.FreePorts(16)
	if err != nil {
		return err
	}
	port := func(i int) int { return ports[i] }
	env.opURL = fmt.Sprintf("http://localhost:%d", port(0))
	env.opESURL = fmt.Sprintf("http://localhost:%d", port(1))
	env.opShortURL = fmt.Sprintf("http://localhost:%d", port(2))
	env.app = fmt.Sprintf("https://127.0.0.1:%d", port(3))
	env.appES = fmt.Sprintf("https://127.0.0.1:%d", port(4))
	env.appShort = fmt.Sprintf("https://127.0.0.1:%d", port(5))
	env.appPK = fmt.Sprintf("https://127.0.0.1:%d", port(12))
	env.opPartnersURL = fmt.Sprintf("http://localhost:%d", port(13))
	env.appMulti = fmt.Sprintf("https://127.0.0.1:%d", port(14))
	env.appStepUp = fmt.Sprintf("https://127.0.0.1:%d", port(15))
	env.api = fmt.Sprintf("https://127.0.0.1:%d", port(6))
	httpPort := port(7)
	env.front = fmt.Sprintf("https://127.0.0.1:%d", port(8))
	for i := range env.scaleInstances {
		env.scaleInstances[i] = fmt.Sprintf("https://127.0.0.1:%d", port(9+i))
	}

	upstream := httptest.NewServer(env.upstream)
	env.upstreamAddr = strings.TrimPrefix(upstream.URL, "http://")
	// The private_key_jwt client's key: gatehouse reads the PEM, the
	// provider knows the public JWK under its RFC 7638 thumbprint (the kid
	// gatehouse sends by default).
	clientKeyFile, clientJWK, err := writeClientKey(tmp)
	if err != nil {
		return err
	}
	// A provider's apps are sites with one provider (callback
	// /oauth2/callback); its named apps are appMulti's provider blocks,
	// each with a callback of its own (/oauth2/callback/NAME).
	for _, op := range []struct {
		proc      **process
		url, alg  string
		apps      []string
		named     map[string]string // site → provider name
		port      int
		accessTTL string
		extraEnv  []string
	}{
		{&env.op, env.opURL, "RS256", []string{env.app, env.appStepUp}, map[string]string{env.appMulti: "staff"}, port(0), "3600", nil},
		{&env.opES, env.opESURL, "ES256", []string{env.appES}, nil, port(1), "3600", nil},
		{&env.opShort, env.opShortURL, "RS256", []string{env.appShort, env.appPK}, nil, port(2), "30", []string{"E2E_PKJWT_JWK=" + clientJWK}},
		{&env.opPartners, env.opPartnersURL, "ES256", nil, map[string]string{env.appMulti: "partners"}, port(13), "3600", []string{"E2E_EMAIL_DOMAIN=partners.example"}},
	} {
		var callbacks, landings []string
		for _, app := range op.apps {
			callbacks, landings = append(callbacks, app+"/oauth2/callback"), append(landings, app+"/")
		}
		for app, name := range op.named {
			callbacks, landings = append(callbacks, app+"/oauth2/callback/"+name), append(landings, app+"/")
		}
		if *op.proc, err = startProvider(root, tmp, op.port, op.url, op.alg, strings.Join(callbacks, " "), strings.Join(landings, " "), op.accessTTL, op.extraEnv...); err != nil {
			return err
		}
	}

	cookieSecret := make([]byte, 32)
	rand.Read(cookieSecret)
	env.cookieSecret = hex.EncodeToString(cookieSecret)
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

(public) {
	handle /public/* {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><title>Public</title><p>A public page of the site, for same-origin fetch() calls.</p>"
	}
}

(login) {
	issuer %[4]s
	client_id gatehouse-basic
	client_secret %[5]s
	cookie_secret %[6]s
	scopes openid email profile groups
}

%[3]s {
	bind 127.0.0.1
	tls internal
	import public
	handle /admin/* {
		gatehouse {
			import login
			allow_groups admins
		}
		reverse_proxy %[7]s
	}
	handle {
		gatehouse {
			import login
		}
		reverse_proxy %[7]s
	}
}

%[11]s {
	bind 127.0.0.1
	tls internal
	gatehouse {
		issuer %[12]s
		client_id gatehouse-basic
		client_secret %[5]s
		cookie_secret %[6]s
		scopes openid email profile groups offline_access
		prompt consent
	}
	reverse_proxy %[7]s
}

%[8]s {
	bind 127.0.0.1
	tls internal
	gatehouse {
		issuer %[9]s
		client_id gatehouse-post
		client_secret %[5]s
		client_auth post
		cookie_secret %[6]s
		scopes openid email profile groups
	}
	reverse_proxy %[7]s
}

%[10]s {
	bind 127.0.0.1
	tls internal
	import public
	handle {
		gatehouse {
			issuer %[4]s
			# For introspection: gatehouse authenticates at the endpoint.
			client_id gatehouse-basic
			client_secret %[5]s
			bearer {
				audience api://e2e
				required_scopes orders:read
				dpop optional
				introspection {
					cache_ttl 2s
				}
				only
			}
		}
		reverse_proxy %[7]s
	}
}

%[15]s {
	bind 127.0.0.1
	tls internal
	gatehouse {
		issuer %[12]s
		client_id gatehouse-pkjwt
		client_auth private_key_jwt
		client_key {file.%[16]s}
		cookie_name _gatehouse_pk
		cookie_secret %[6]s
		scopes openid email profile groups offline_access
		prompt consent
	}
	reverse_proxy %[7]s
}

# Two providers in one block: a sign-in page to choose one, a callback
# per provider, allow rules per provider and for the block (both apply).
# The upstream is told the provider and the original request URI.
%[17]s {
	bind 127.0.0.1
	tls internal
	gatehouse {
		provider staff {
			issuer %[4]s
			client_id gatehouse-basic
			client_secret %[5]s
			scopes openid email profile groups
			display_name "Staff <b>sign-in</b> & co"
			allow_groups admins
		}
		provider partners {
			issuer %[18]s
			client_id gatehouse-post
			client_secret %[5]s
			client_auth post
			scopes openid email profile groups
			allow_claim preferred_username carol dave
		}
		cookie_secret %[6]s
		allow_emails alice@example.com carol@example.com alice@partners.example carol@partners.example
	}
	reverse_proxy %[7]s {
		header_up X-Provider {http.auth.user.provider}
		header_up X-Original-Uri {uri}
	}
}

# Step-up: the README's pattern, a block per path on one cookie; /admin/*
# requires acr gold, which op gives alice when asked (testdata/e2e).
(stepup) {
	issuer %[4]s
	client_id gatehouse-basic
	client_secret %[5]s
	cookie_name _gatehouse_su
	cookie_secret %[6]s
	scopes openid email profile groups
}
%[19]s {
	bind 127.0.0.1
	tls internal
	handle /admin/* {
		gatehouse {
			import stepup
			require_acr gold
		}
		reverse_proxy %[7]s {
			header_up X-Acr {http.auth.user.acr}
			header_up X-Original-Uri {uri}
		}
	}
	handle {
		gatehouse {
			import stepup
		}
		reverse_proxy %[7]s {
			header_up X-Acr {http.auth.user.acr}
			header_up X-Original-Uri {uri}
		}
	}
}

# The scale-out front: round-robin over three gatehouse instances (separate
# Caddy processes), passing the Host header through unchanged.
%[13]s {
	bind 127.0.0.1
	tls internal
	reverse_proxy %[14]s {
		lb_policy round_robin
		# To an https upstream Caddy sends the upstream's address as Host
		# unless told otherwise; the instances build their URLs from it.
		header_up Host {hostport}
		transport http {
			tls_insecure_skip_verify
		}
	}
}
`, httpPort, filepath.Join(tmp, "caddy-data"), env.app, env.opURL, clientSecret, hex.EncodeToString(cookieSecret),
		env.upstreamAddr, env.appES, env.opESURL, env.api, env.appShort, env.opShortURL,
		env.front, strings.Join(env.scaleInstances[:], " "), env.appPK, clientKeyFile,
		env.appMulti, env.opPartnersURL, env.appStepUp)
	cfPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	env.caddy, err = startProcess(tmp, "caddy", caddyBin, []string{"run", "--config", cfPath, "--adapter", "caddyfile"}, nil, root)
	if err != nil {
		return err
	}
	for _, site := range []string{env.app, env.appES, env.appShort, env.appPK, env.appMulti, env.appStepUp, env.api, env.front} {
		if err := waitHTTPS(site, 30*time.Second); err != nil {
			return fmt.Errorf("caddy did not serve %s: %v\n%s", site, err, env.caddy.tail())
		}
	}

	alloc, _ := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.UserDataDir(filepath.Join(tmp, "chromium-profile")),
			chromedp.Flag("ignore-certificate-errors", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			// Nothing outside this machine: every other host fails at once.
			chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"),
			chromedp.WindowSize(1000, 800),
		)...)
	browser, _ := chromedp.NewContext(alloc)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		return fmt.Errorf("starting chromium: %v", err)
	}
	env.browser = browser
	return nil
}

func (e *environment) tearDown(failed bool) {
	if e.browser != nil {
		_ = chromedp.Cancel(e.browser)
	}
	e.scale.stop(failed)
	for _, p := range []*process{e.caddy, e.op, e.opES, e.opShort, e.opPartners} {
		if p == nil {
			continue
		}
		p.stop()
		if failed {
			fmt.Fprintf(os.Stderr, "--- %s output (last lines):\n%s\n", p.name, p.tail())
		}
	}
	os.RemoveAll(e.tmp)
}

func startProvider(root, tmp string, port int, issuer, alg, redirectURIs, logoutURIs, accessTTL string, extraEnv ...string) (*process, error) {
	p, err := startProcess(tmp, "oidc-provider "+issuer, "node", []string{"provider.mjs"}, append([]string{
		"E2E_AT_TTL=" + accessTTL,
		"E2E_ISSUER=" + issuer,
		fmt.Sprintf("E2E_PORT=%d", port),
		"E2E_ALG=" + alg,
		"E2E_CLIENT_SECRET=" + clientSecret,
		"E2E_REDIRECT_URIS=" + redirectURIs,
		"E2E_LOGOUT_URIS=" + logoutURIs,
	}, extraEnv...), filepath.Join(root, "testdata/e2e"))
	if err != nil {
		return nil, err
	}
	if err := p.waitFor("ready ", 20*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %v\n%s", p.name, err, p.tail())
	}
	return p, nil
}

// process is a child process whose output is kept for diagnostics and
// watched line by line.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
	seen chan string
}

func startProcess(tmp, name, bin string, args, extraEnv []string, dir string) (*process, error) {
	p := &process{name: name, seen: make(chan string, 1024)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), extraEnv...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out = append(p.out, line)
			p.mu.Unlock()
			select {
			case p.seen <- line:
			default:
			}
		}
	}()
	return p, nil
}

func (p *process) waitFor(prefix string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case line := <-p.seen:
			if strings.HasPrefix(line, prefix) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no %q line within %s", prefix, timeout)
		}
	}
}

// count returns how many output lines equal line.
func (p *process) count(line string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.out {
		if l == line {
			n++
		}
	}
	return n
}

// lines returns the output lines that start with prefix.
func (p *process) lines(prefix string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.out {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func (p *process) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := max(0, len(p.out)-40)
	return strings.Join(p.out[from:], "\n")
}

func (p *process) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
	}
}

// insecureClient trusts Caddy's internal CA without installing it.
var insecureClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func waitHTTPS(site string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		var resp *http.Response
		if resp, err = insecureClient.Get(site + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// recorder is the upstream app: it shows the identity it receives (an
// HTML page, or JSON under /api/) and remembers every request's headers.
type recorder struct {
	mu   sync.Mutex
	seen []http.Header
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.seen = append(rec.seen, r.Header.Clone())
	rec.mu.Unlock()
	id := map[string]string{
		"user":   r.Header.Get("X-Forwarded-User"),
		"email":  r.Header.Get("X-Forwarded-Email"),
		"groups": r.Header.Get("X-Forwarded-Groups"),
		"path":   r.URL.RequestURI(),
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(id)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><html><head><title>Protected app</title>
<style>body{font-family:sans-serif;margin:3em}dt{font-weight:bold}</style></head>
<body><h1>Protected app</h1><dl>
<dt>X-Forwarded-User</dt><dd id="user">%s</dd>
<dt>X-Forwarded-Email</dt><dd id="email">%s</dd>
<dt>X-Forwarded-Groups</dt><dd id="groups">%s</dd>
<dt>Request</dt><dd id="path">%s</dd>
</dl></body></html>`, html.EscapeString(id["user"]), html.EscapeString(id["email"]), html.EscapeString(id["groups"]), html.EscapeString(id["path"]))
}

// headers returns every header value the upstream was ever sent.
func (rec *recorder) headers() []http.Header {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]http.Header(nil), rec.seen...)
}

// clientCredentialsToken gets a JWT access token for the API from the
// provider (client_credentials grant with a resource indicator).
func clientCredentialsToken(t *testing.T, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {"api://e2e"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest("POST", env.opURL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gatehouse-basic", clientSecret)
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("client_credentials: %d %s", resp.StatusCode, body)
	}
	return tok.AccessToken
}

// writeClientKey writes a fresh P-256 key for the private_key_jwt client
// and returns its file and its public JWK (kid: the RFC 7638 thumbprint).
func writeClientKey(dir string) (file, publicJWK string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	file = filepath.Join(dir, "client.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	pub, err := jwk.FromRaw(k.Public())
	if err != nil {
		return "", "", err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", "", err
	}
	for name, v := range map[string]any{jwk.KeyIDKey: base64.RawURLEncoding.EncodeToString(tp), jwk.AlgorithmKey: "ES256", jwk.KeyUsageKey: "sig"} {
		if err := pub.Set(name, v); err != nil {
			return "", "", err
		}
	}
	b, err := json.Marshal(pub)
	return file, string(b), err
}
