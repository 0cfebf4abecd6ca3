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

	repl := caddy.NewReplacer()
	resolve := func(what, v string) (string, error) {
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("gatehouse_devidp: %s: %w", what, err)
		}
		return out, nil
	}
	resolveAll := func(what string, vs []string) ([]string, error) {
		var out []string
		for _, v := range vs {
			r, err := resolve(what, v)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}

	var err error
	cfg := devidp.Config{AccessTokenTTL: time.Duration(h.AccessTokenTTL)}
	if cfg.Issuer, err = resolve("issuer", h.Issuer); err != nil {
		return err
	}
	if cfg.Algorithm, err = resolve("algorithm", h.Algorithm); err != nil {
		return err
	}
	for i, c := range h.Clients {
		var dc devidp.Client
		if dc.ID, err = resolve(fmt.Sprintf("client %d id", i), c.ID); err != nil {
			return err
		}
		// The error of the replacer could quote part of a secret: drop it.
		if dc.Secret, err = repl.ReplaceOrErr(c.Secret, true, true); err != nil {
			return fmt.Errorf("gatehouse_devidp: client %q: secret: a placeholder could not be resolved", dc.ID)
		}
		if dc.RedirectURIs, err = resolveAll(fmt.Sprintf("client %q redirect_uri", dc.ID), c.RedirectURIs); err != nil {
			return err
		}
		if dc.Audience, err = resolve(fmt.Sprintf("client %q audience", dc.ID), c.Audience); err != nil {
			return err
		}
		cfg.Clients = append(cfg.Clients, dc)
	}
	for i, u := range h.Users {
		var du devidp.User
		if du.Subject, err = resolve(fmt.Sprintf("user %d subject", i), u.Subject); err != nil {
			return err
		}
		what := fmt.Sprintf("user %q", du.Subject)
		if du.Email, err = resolve(what+" email", u.Email); err != nil {
			return err
		}
		if du.Name, err = resolve(what+" name", u.Name); err != nil {
			return err
		}
		if du.PreferredUsername, err = resolve(what+" preferred_username", u.PreferredUsername); err != nil {
			return err
		}
		if du.Groups, err = resolveAll(what+" groups", u.Groups); err != nil {
			return err
		}
		cfg.Users = append(cfg.Users, du)
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
