package caddydevidp

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/devidp"
	"github.com/gatehouse-auth/gatehouse/internal/placeholder"
)

// Handler is the http.handlers.gatehouse_devidp module: a development
// OpenID provider (package devidp) served by Caddy. It is a terminal
// handler. Never use it in production.
type Handler struct {
	// Issuer is the provider's issuer URL (http or https, no query or
	// fragment). Every endpoint lives under its path, so the handler must be
	// reached with the path unchanged (use `handle`, not `handle_path`).
	// Required.
	Issuer string `json:"issuer,omitempty"`

	// Clients are the registered confidential clients. At least one.
	Clients []Client `json:"clients,omitempty"`

	// Users are the identities offered on the login page. At least one.
	Users []User `json:"users,omitempty"`

	// AccessTokenTTL is the lifetime of access tokens. Default: 1h.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`

	// Algorithm is the signing algorithm, RS256 or ES256. Default: RS256.
	Algorithm string `json:"algorithm,omitempty"`

	// RealisticAccessTokens gives access tokens the size real providers'
	// have (about 1.2 KB with RS256), with claims gatehouse does not read;
	// see devidp.Config.RealisticAccessTokens. Default: off.
	RealisticAccessTokens bool `json:"realistic_access_tokens,omitempty"`

	provider *devidp.Provider
	logger   *zap.Logger
}

// Client is a registered client of the development provider.
type Client struct {
	// ID is the client_id. Required.
	ID string `json:"id,omitempty"`

	// Secret is the client_secret. Required; use a placeholder such as
	// {env.DEVIDP_CLIENT_SECRET} to keep it out of the config.
	Secret string `json:"secret,omitempty"`

	// RedirectURIs are the registered redirect (and post-logout redirect)
	// URIs, matched exactly. Default: any http(s) URI on a loopback host.
	RedirectURIs []string `json:"redirect_uris,omitempty"`

	// Audience is an extra audience put into access tokens, e.g. api://demo.
	// Default: none (aud is the client ID alone).
	Audience string `json:"audience,omitempty"`
}

// User is an identity offered on the development provider's login page.
type User struct {
	// Subject is the `sub` claim and the name on the login page. Required.
	Subject string `json:"subject,omitempty"`

	// Email is the `email` claim. Default: none.
	Email string `json:"email,omitempty"`

	// Name is the `name` claim. Default: none.
	Name string `json:"name,omitempty"`

	// PreferredUsername is the `preferred_username` claim. Default: none.
	PreferredUsername string `json:"preferred_username,omitempty"`

	// Groups is the `groups` claim. Default: none.
	Groups []string `json:"groups,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse_devidp",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves placeholders ({env.*}, {file.*}) in every value and
// builds the provider, generating its signing key.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.logger.Warn("devidp is a development identity provider; never use it in production",
		zap.String("issuer", h.Issuer))

	r := placeholder.NewResolver("gatehouse_devidp")
	r.One("issuer", &h.Issuer)
	r.One("algorithm", &h.Algorithm)
	cfg := devidp.Config{Issuer: h.Issuer, Algorithm: h.Algorithm, AccessTokenTTL: time.Duration(h.AccessTokenTTL),
		RealisticAccessTokens: h.RealisticAccessTokens}
	for i := range h.Clients {
		c := &h.Clients[i]
		r.One(fmt.Sprintf("client %d id", i), &c.ID)
		what := fmt.Sprintf("client %q", c.ID)
		r.Secret(what+": secret", &c.Secret)
		r.Many(what+" redirect_uri", c.RedirectURIs)
		r.One(what+" audience", &c.Audience)
		cfg.Clients = append(cfg.Clients, devidp.Client{ID: c.ID, Secret: c.Secret, RedirectURIs: c.RedirectURIs, Audience: c.Audience})
	}
	for i := range h.Users {
		u := &h.Users[i]
		r.One(fmt.Sprintf("user %d subject", i), &u.Subject)
		what := fmt.Sprintf("user %q", u.Subject)
		r.One(what+" email", &u.Email)
		r.One(what+" name", &u.Name)
		r.One(what+" preferred_username", &u.PreferredUsername)
		r.Many(what+" groups", u.Groups)
		cfg.Users = append(cfg.Users, devidp.User{Subject: u.Subject, Email: u.Email, Name: u.Name, PreferredUsername: u.PreferredUsername, Groups: u.Groups})
	}
	if err := r.Err(); err != nil {
		return err
	}

	p, err := devidp.New(cfg)
	if err != nil {
		return fmt.Errorf("gatehouse_devidp: %w", err)
	}
	h.provider = p
	return nil
}

// ServeHTTP serves the provider's endpoints. It is terminal: next is never
// called, and unknown paths get 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if h.provider == nil {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("gatehouse_devidp: not provisioned"))
	}
	h.provider.ServeHTTP(w, r)
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
