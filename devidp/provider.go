package devidp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultAccessTokenTTL is the default Config.AccessTokenTTL.
	DefaultAccessTokenTTL = time.Hour
	// DefaultIDTokenTTL is the default Config.IDTokenTTL.
	DefaultIDTokenTTL = time.Hour
	// DefaultRefreshTokenTTL is the default Config.RefreshTokenTTL.
	DefaultRefreshTokenTTL = 24 * time.Hour
	// DefaultCodeTTL is the default Config.CodeTTL.
	DefaultCodeTTL = time.Minute
	// DefaultAlgorithm is the default Config.Algorithm.
	DefaultAlgorithm = "RS256"
)

const (
	// maxEntries caps each state map (authorization codes, refresh tokens).
	defaultMaxEntries = 10000
	// maxBodyBytes caps every request body.
	maxBodyBytes = 64 << 10
	// maxParamLen caps the length of any single request parameter we keep.
	maxParamLen = 4096
	// maxBearerLen caps the length of a bearer token we try to parse.
	maxBearerLen = 16 << 10
)

// Endpoint paths, relative to the issuer URL's path.
const (
	pathDiscovery  = "/.well-known/openid-configuration"
	pathJWKS       = "/jwks"
	pathAuthorize  = "/authorize"
	pathToken      = "/token"
	pathUserinfo   = "/userinfo"
	pathEndSession = "/end_session"
)

// Config configures a Provider. Zero values of optional fields select the
// documented defaults; New rejects incomplete or inconsistent configurations.
type Config struct {
	// Issuer is the provider's issuer identifier: an absolute http or https
	// URL without query or fragment. Every endpoint lives under its path.
	// Required.
	Issuer string
	// Clients are the registered confidential clients. At least one.
	Clients []Client
	// Users are the identities offered on the login page. At least one.
	Users []User
	// AccessTokenTTL is the lifetime of access tokens. Default 1h.
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens. Default 1h.
	IDTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token. Default 24h.
	RefreshTokenTTL time.Duration
	// CodeTTL is the lifetime of authorization codes. Default 1m.
	CodeTTL time.Duration
	// Algorithm is the JWS signing algorithm: "RS256" (RSA 2048, default) or
	// "ES256" (P-256).
	Algorithm string
	// Now returns the current time. Default time.Now; tests inject a clock.
	Now func() time.Time
	// RealisticAccessTokens makes access tokens about the size Keycloak,
	// Entra ID or Auth0 issue (1 to 1.5 KB): about 1.2 KB signed with RS256
	// for a user with two groups, against about 0.8 KB without. It is for
	// benchmarks and size tests. It adds claims in Keycloak's shape that
	// gatehouse does not read: typ "Bearer", azp, sid (the login's, or a
	// fresh one for MintAccessToken), acr, allowed-origins, realm_access and
	// resource_access roles, and makes jti a UUID. The claims gatehouse reads
	// (iss, sub, aud, exp, iat, scope, client_id, email, email_verified,
	// preferred_username, groups) stay as without it. Default false.
	RealisticAccessTokens bool
}

// Client is a registered OAuth 2.0 confidential client.
type Client struct {
	// ID is the client_id. Required and unique.
	ID string
	// Secret is the client_secret. Required.
	Secret string
	// RedirectURIs are the registered redirect URIs, matched exactly. They are
	// also the allowed post_logout_redirect_uri values. When empty, any http
	// or https URI whose host is a loopback address (localhost, 127.0.0.0/8,
	// ::1) is accepted.
	RedirectURIs []string
	// Audience is an optional extra audience put into access tokens, e.g.
	// "api://demo". Access tokens carry aud = [ID] plus Audience when set.
	Audience string
}

// User is an identity offered on the login page.
type User struct {
	// Subject is the `sub` claim, the name shown on the login page and the
	// value accepted as login_hint. Required and unique.
	Subject string
	// Email is the `email` claim (reported as verified).
	Email string
	// Name is the `name` claim.
	Name string
	// PreferredUsername is the `preferred_username` claim.
	PreferredUsername string
	// Groups is the `groups` claim.
	Groups []string
	// ACRs are the acr values this user can authenticate with (a second
	// factor, say): asked for one of them (acr_values), the ID token says
	// the first asked for that the user has; otherwise it says "1".
	ACRs []string
}

// acrFor is the acr of a login that asked for requested.
func (u *User) acrFor(requested []string) string {
	for _, r := range requested {
		if slices.Contains(u.ACRs, r) {
			return r
		}
	}
	return "1"
}

// Stats counts the requests each endpoint served. Requests rejected with 404
// or 405 before reaching an endpoint are not counted.
type Stats struct {
	// Discovery counts requests to /.well-known/openid-configuration.
	Discovery uint64
	// JWKS counts requests to /jwks.
	JWKS uint64
	// Authorize counts GET and POST requests to /authorize.
	Authorize uint64
	// Token counts requests to /token, whatever the grant type.
	Token uint64
	// Refresh counts requests to /token with grant_type=refresh_token.
	Refresh uint64
	// Userinfo counts requests to /userinfo.
	Userinfo uint64
	// EndSession counts requests to /end_session.
	EndSession uint64
}

// Provider is a development OpenID provider. It is an http.Handler; create
// it with New. It is safe for concurrent use.
type Provider struct {
	issuer   string
	basePath string // issuer URL path without trailing slash
	clients  map[string]*Client
	users    map[string]*User
	userList []*User // configuration order, for the login page
	alg      string
	// realistic adds provider-style claims to access tokens
	// (Config.RealisticAccessTokens).
	realistic bool
	origin    string // scheme://host of the issuer: allowed-origins

	accessTTL, idTTL, refreshTTL, codeTTL time.Duration
	now                                   func() time.Time

	keyMu    sync.RWMutex
	current  *signingKey
	previous *signingKey

	stateMu    sync.Mutex
	codes      map[string]*authCode
	refreshes  map[string]*refreshToken
	maxEntries int
	nextSweep  time.Time

	statsMu sync.Mutex
	stats   Stats
}

// New validates cfg and returns a Provider with a freshly generated signing
// key. Errors are prefixed "devidp: ".
func New(cfg Config) (*Provider, error) {
	p := &Provider{
		clients:    make(map[string]*Client, len(cfg.Clients)),
		users:      make(map[string]*User, len(cfg.Users)),
		codes:      make(map[string]*authCode),
		refreshes:  make(map[string]*refreshToken),
		maxEntries: defaultMaxEntries,
	}

	iss, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("devidp: issuer is required")
	case err != nil:
		return nil, fmt.Errorf("devidp: issuer: %w", err)
	case iss.Scheme != "http" && iss.Scheme != "https":
		return nil, errors.New("devidp: issuer must be an absolute http or https URL")
	case iss.Host == "" || iss.Opaque != "":
		return nil, errors.New("devidp: issuer must be an absolute http or https URL")
	case iss.User != nil:
		return nil, errors.New("devidp: issuer must not contain user info")
	case iss.RawQuery != "" || iss.ForceQuery || iss.Fragment != "" || strings.ContainsAny(cfg.Issuer, "?#"):
		return nil, errors.New("devidp: issuer must not have a query or fragment")
	}
	p.issuer = cfg.Issuer
	p.origin = iss.Scheme + "://" + iss.Host
	p.basePath = strings.TrimSuffix(iss.EscapedPath(), "/")

	if len(cfg.Clients) == 0 {
		return nil, errors.New("devidp: at least one client is required")
	}
	for i := range cfg.Clients {
		c := cfg.Clients[i] // copy: the caller keeps its slice
		if c.ID == "" {
			return nil, fmt.Errorf("devidp: client %d: id is required", i)
		}
		if _, dup := p.clients[c.ID]; dup {
			return nil, fmt.Errorf("devidp: client %q: duplicate id", c.ID)
		}
		if c.Secret == "" {
			return nil, fmt.Errorf("devidp: client %q: secret is required", c.ID)
		}
		c.RedirectURIs = append([]string(nil), c.RedirectURIs...)
		for _, ru := range c.RedirectURIs {
			if err := checkRegisteredRedirect(ru); err != nil {
				return nil, fmt.Errorf("devidp: client %q: redirect URI %q: %w", c.ID, ru, err)
			}
		}
		p.clients[c.ID] = &c
	}

	if len(cfg.Users) == 0 {
		return nil, errors.New("devidp: at least one user is required")
	}
	for i := range cfg.Users {
		u := cfg.Users[i]
		if u.Subject == "" {
			return nil, fmt.Errorf("devidp: user %d: subject is required", i)
		}
		if _, dup := p.users[u.Subject]; dup {
			return nil, fmt.Errorf("devidp: user %q: duplicate subject", u.Subject)
		}
		u.Groups = append([]string(nil), u.Groups...)
		p.users[u.Subject] = &u
		p.userList = append(p.userList, &u)
	}

	durations := []struct {
		name string
		v    time.Duration
		def  time.Duration
		dst  *time.Duration
	}{
		{"access token TTL", cfg.AccessTokenTTL, DefaultAccessTokenTTL, &p.accessTTL},
		{"ID token TTL", cfg.IDTokenTTL, DefaultIDTokenTTL, &p.idTTL},
		{"refresh token TTL", cfg.RefreshTokenTTL, DefaultRefreshTokenTTL, &p.refreshTTL},
		{"code TTL", cfg.CodeTTL, DefaultCodeTTL, &p.codeTTL},
	}
	for _, d := range durations {
		switch {
		case d.v < 0:
			return nil, fmt.Errorf("devidp: %s must not be negative", d.name)
		case d.v == 0:
			*d.dst = d.def
		case d.v < time.Second:
			return nil, fmt.Errorf("devidp: %s must be at least 1s", d.name)
		default:
			*d.dst = d.v
		}
	}

	switch cfg.Algorithm {
	case "":
		p.alg = DefaultAlgorithm
	case "RS256", "ES256":
		p.alg = cfg.Algorithm
	default:
		return nil, fmt.Errorf("devidp: unsupported algorithm %q (want RS256 or ES256)", cfg.Algorithm)
	}

	p.realistic = cfg.RealisticAccessTokens
	p.now = cfg.Now
	if p.now == nil {
		p.now = time.Now
	}

	key, err := newSigningKey(p.alg)
	if err != nil {
		return nil, err
	}
	p.current = key
	return p, nil
}

// Issuer returns the issuer identifier, exactly as configured.
func (p *Provider) Issuer() string { return p.issuer }

// Stats returns a snapshot of the request counters.
func (p *Provider) Stats() Stats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	return p.stats
}

// count adds one to the counter c, a field of p.stats.
func (p *Provider) count(c *uint64) {
	p.statsMu.Lock()
	*c++
	p.statsMu.Unlock()
}

// endpoint returns the absolute URL of the endpoint at path rel.
func (p *Provider) endpoint(rel string) string {
	return strings.TrimSuffix(p.issuer, "/") + rel
}

// ServeHTTP routes a request to the endpoint its path names. Paths outside
// the issuer's path, and unknown endpoints, get 404; a known endpoint with a
// method it does not serve gets 405.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rel, ok := strings.CutPrefix(r.URL.EscapedPath(), p.basePath)
	if !ok || (rel != "" && rel[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	}

	type route struct {
		methods []string
		counter *uint64
		handle  func(http.ResponseWriter, *http.Request)
	}
	var rt route
	switch rel {
	case pathDiscovery:
		rt = route{[]string{http.MethodGet, http.MethodHead}, &p.stats.Discovery, p.serveDiscovery}
	case pathJWKS:
		rt = route{[]string{http.MethodGet, http.MethodHead}, &p.stats.JWKS, p.serveJWKS}
	case pathAuthorize:
		rt = route{[]string{http.MethodGet, http.MethodPost}, &p.stats.Authorize, p.serveAuthorize}
	case pathToken:
		rt = route{[]string{http.MethodPost}, &p.stats.Token, p.serveToken}
	case pathUserinfo:
		rt = route{[]string{http.MethodGet, http.MethodPost}, &p.stats.Userinfo, p.serveUserinfo}
	case pathEndSession:
		rt = route{[]string{http.MethodGet, http.MethodPost}, &p.stats.EndSession, p.serveEndSession}
	default:
		http.NotFound(w, r)
		return
	}
	allowed := false
	for _, m := range rt.methods {
		if r.Method == m {
			allowed = true
			break
		}
	}
	if !allowed {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	p.count(rt.counter)
	rt.handle(w, r)
}

// checkRegisteredRedirect validates a redirect URI at configuration time.
func checkRegisteredRedirect(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an absolute http or https URL")
	case u.Host == "" || u.Opaque != "":
		return errors.New("must be an absolute http or https URL")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not have a fragment")
	case u.User != nil:
		return errors.New("must not contain user info")
	}
	return nil
}

// redirectAllowed reports whether raw is an acceptable redirect (or
// post-logout redirect) URI for c: an exact match with a registered URI, or,
// when c registered none, an http(s) URL on a loopback host.
func redirectAllowed(c *Client, raw string) bool {
	if raw == "" || len(raw) > maxParamLen {
		return false
	}
	if len(c.RedirectURIs) > 0 {
		for _, ru := range c.RedirectURIs {
			if ru == raw {
				return true
			}
		}
		return false
	}
	if checkRegisteredRedirect(raw) != nil {
		return false
	}
	u, _ := url.Parse(raw) // parsed fine above
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withParams returns base with params added to its query, preserving the
// parameters base already carries. base must parse (it was validated).
func withParams(base string, params url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
