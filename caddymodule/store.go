package caddymodule

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/rueidis"

	"github.com/gatehouse-auth/gatehouse/internal/placeholder"
	"github.com/gatehouse-auth/gatehouse/session"
)

// StoreConfig says where sessions live. Default (no store): in the
// session cookie itself.
type StoreConfig struct {
	// Redis keeps sessions in Redis, shared by every instance using it.
	Redis *RedisConfig `json:"redis,omitempty"`
}

// RedisConfig connects the Redis session store (see session.RedisStore):
// the cookie holds a handle, the session is encrypted in Redis.
type RedisConfig struct {
	// Address is host:port, or a URL: redis://[user:password@]host:port[/db],
	// rediss://… for TLS. Required.
	Address string `json:"address,omitempty"`
	// Username and Password authenticate (Redis ACL / AUTH); placeholders
	// such as {env.REDIS_PASSWORD} keep them out of the config.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Database number (SELECT). Default 0.
	Database int `json:"database,omitempty"`
	// TLS connects over TLS (implied by rediss://).
	TLS bool `json:"tls,omitempty"`
	// TLSServerName overrides the name the server certificate must have.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// TLSCAFile is a PEM file of CA certificates that sign the server's
	// certificate. Default: the system's roots.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
	// KeyPrefix starts every key gatehouse writes. Default "gatehouse:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// Timeout bounds waiting for Redis to answer; past it, requests that
	// need Redis get 503. Default 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// Defaults of RedisConfig.
const (
	defaultRedisDialTimeout = 5 * time.Second
	defaultRedisTimeout     = 2 * time.Second
)

// unmarshalCaddyfile reads `store redis { … }`.
func (s *StoreConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("gatehouse: store: missing kind (redis)")
	}
	if kind := d.Val(); kind != "redis" {
		return d.Errf("gatehouse: store: unknown kind %q (want redis)", kind)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	s.Redis = new(RedisConfig)
	r := s.Redis
	return subdirectives(d, "store redis ", nil, func(sub string) (readBlock bool, err error) {
		switch sub {
		case "address":
			err = oneArg(d, &r.Address)
		case "username":
			err = oneArg(d, &r.Username)
		case "password":
			err = oneArg(d, &r.Password)
		case "database":
			err = intArg(d, "store redis ", &r.Database)
		case "tls":
			err = flagArg(d, &r.TLS)
		case "tls_server_name":
			err = oneArg(d, &r.TLSServerName)
		case "tls_ca_file":
			err = oneArg(d, &r.TLSCAFile)
		case "key_prefix":
			err = oneArg(d, &r.KeyPrefix)
		case "dial_timeout":
			err = durationArg(d, "store redis ", &r.DialTimeout)
		case "timeout":
			err = durationArg(d, "store redis ", &r.Timeout)
		default:
			err = d.Errf("gatehouse: store redis: unrecognized subdirective %q", sub)
		}
		return false, err
	})
}

// resolve replaces placeholders in the store's values.
func (s *StoreConfig) resolve(r *placeholder.Resolver) {
	if c := s.Redis; c != nil {
		r.One("store redis address", &c.Address)
		r.One("store redis username", &c.Username)
		r.Secret("store redis password", &c.Password)
		r.One("store redis tls_server_name", &c.TLSServerName)
		r.One("store redis tls_ca_file", &c.TLSCAFile)
		r.One("store redis key_prefix", &c.KeyPrefix)
	}
}

// validate checks the store's values.
func (s *StoreConfig) validate(bad badFunc) {
	c := s.Redis
	if c == nil {
		bad("store", "name a kind: store redis { address … }")
		return
	}
	if _, err := c.clientOption(); err != nil {
		bad("store redis", "%v", err)
	}
	if c.Database < 0 {
		bad("store redis database", "must not be negative")
	}
	if c.DialTimeout < 0 || c.Timeout < 0 {
		bad("store redis", "timeouts must not be negative")
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n{}") {
		bad("store redis key_prefix", "%q: no spaces or braces", c.KeyPrefix)
	}
}

// clientOption turns the config into the Redis client's options.
func (c *RedisConfig) clientOption() (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	switch {
	case c.Address == "":
		return opt, fmt.Errorf("address is required")
	case strings.Contains(c.Address, "://"):
		var err error
		if opt, err = rueidis.ParseURL(c.Address); err != nil {
			// Not the error itself: it may quote the URL, password and all.
			return opt, fmt.Errorf("address: not a redis://[user:password@]host:port[/db] or rediss:// URL")
		}
		if strings.HasPrefix(c.Address, "unix://") {
			return opt, fmt.Errorf("address: unix sockets are not supported; use host:port")
		}
	default:
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			return opt, fmt.Errorf("address %q: want host:port or redis://host:port: %v", c.Address, err)
		}
		opt.InitAddress = []string{c.Address}
	}
	if c.Username != "" {
		opt.Username = c.Username
	}
	if c.Password != "" {
		opt.Password = c.Password
	}
	if c.Database != 0 {
		opt.SelectDB = c.Database
	}
	if c.TLS || c.TLSServerName != "" || c.TLSCAFile != "" {
		if opt.TLSConfig == nil {
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opt.TLSConfig.ServerName = c.TLSServerName
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return opt, fmt.Errorf("tls_ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opt, fmt.Errorf("tls_ca_file %s: no PEM certificates", c.TLSCAFile)
			}
			opt.TLSConfig.RootCAs = pool
		}
	}
	opt.Dialer.Timeout = defaultRedisDialTimeout
	if c.DialTimeout > 0 {
		opt.Dialer.Timeout = time.Duration(c.DialTimeout)
	}
	opt.ConnWriteTimeout = defaultRedisTimeout
	if c.Timeout > 0 {
		opt.ConnWriteTimeout = time.Duration(c.Timeout)
	}
	// A request fails at once (503) rather than waiting on retries; the
	// next request reconnects.
	opt.DisableRetry = true
	// gatehouse sends no blocking commands: a small, bounded pool.
	opt.BlockingPoolSize = 8
	// One pipelined connection: this instance sees its own writes at
	// once (see session.RedisStoreOptions.Client); it carries thousands
	// of requests a second, most of them answered from the local cache.
	opt.PipelineMultiplex = -1
	opt.ClientName = "gatehouse"
	opt.ForceSingleClient = true
	return opt, nil
}

// fingerprint tells store configs apart: blocks with different stores
// keep different session groups.
func (s *StoreConfig) fingerprint() string {
	if s == nil {
		return "cookie"
	}
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// newStore makes the session store s configures: a CookieStore without
// one. closeFn lets go of its connections. A Redis that cannot be reached
// now does not stop Caddy from starting (requests that need it get 503
// until it is back): that is unreachable, for the log.
func (s *StoreConfig) newStore(binding string, now func() time.Time) (store session.Store, closeFn func(), unreachable, err error) {
	if s == nil || s.Redis == nil {
		return session.NewCookieStore(session.CookieStoreOptions{Now: now}), func() {}, nil, nil
	}
	opt, err := s.Redis.clientOption()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("gatehouse: store redis: %w", err)
	}
	// With ForceSingleClient, a failed first connection still gives a
	// client, which connects again on use.
	client, unreachable := rueidis.NewClient(opt)
	if client == nil {
		return nil, nil, nil, fmt.Errorf("gatehouse: store redis: %w", unreachable)
	}
	rs, err := session.NewRedisStore(session.RedisStoreOptions{
		Client: client, Prefix: s.Redis.KeyPrefix, Namespace: binding, Now: now,
	})
	if err != nil {
		client.Close()
		return nil, nil, nil, err
	}
	return rs, client.Close, unreachable, nil
}
