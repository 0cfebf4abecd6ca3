package caddydevidp

import (
	"fmt"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("gatehouse_devidp", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_devidp", httpcaddyfile.Before, "respond")
}

// parseCaddyfile builds a Handler from the gatehouse_devidp directive; see
// Handler.UnmarshalCaddyfile for the syntax.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gatehouse_devidp {
//		issuer <url>
//		client <id> <secret> {
//			redirect_uri <url>...
//			audience <aud>
//		}
//		user <subject> {
//			email <email>
//			name <name>
//			preferred_username <username>
//			groups <group>...
//		}
//		access_token_ttl <duration>
//		algorithm RS256|ES256
//		realistic_access_tokens
//	}
//
// client and user may repeat (with distinct ids and subjects); every other
// sub-directive may appear at most once in its block. Values may use
// placeholders such as {env.DEVIDP_SECRET}, resolved at provision time.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	clientIDs := map[string]bool{}
	subjects := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "issuer", "access_token_ttl", "algorithm":
			if seen[name] {
				return d.Errf("duplicate subdirective %q", name)
			}
			seen[name] = true
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			switch name {
			case "issuer":
				h.Issuer = v
			case "algorithm":
				h.Algorithm = v
			case "access_token_ttl":
				dur, err := caddy.ParseDuration(v)
				if err != nil {
					return d.Errf("access_token_ttl: %v", err)
				}
				h.AccessTokenTTL = caddy.Duration(dur)
			}

		case "realistic_access_tokens":
			if seen[name] {
				return d.Errf("duplicate subdirective %q", name)
			}
			seen[name] = true
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RealisticAccessTokens = true

		case "client":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if clientIDs[args[0]] {
				return d.Errf("duplicate client %q", args[0])
			}
			clientIDs[args[0]] = true
			c := Client{ID: args[0], Secret: args[1]}
			if err := c.unmarshalBlock(d); err != nil {
				return err
			}
			h.Clients = append(h.Clients, c)

		case "user":
			if !d.NextArg() {
				return d.ArgErr()
			}
			u := User{Subject: d.Val()}
			if d.NextArg() {
				return d.ArgErr()
			}
			if subjects[u.Subject] {
				return d.Errf("duplicate user %q", u.Subject)
			}
			subjects[u.Subject] = true
			if err := u.unmarshalBlock(d); err != nil {
				return err
			}
			h.Users = append(h.Users, u)

		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

// unmarshalBlock reads a client's optional block.
func (c *Client) unmarshalBlock(d *caddyfile.Dispenser) error {
	what := fmt.Sprintf("client %q", c.ID)
	return subdirectives(d, what, func(name string) (err error) {
		switch name {
		case "redirect_uri":
			c.RedirectURIs, err = someArgs(d)
		case "audience":
			c.Audience, err = oneArg(d)
		default:
			err = d.Errf("unrecognized subdirective %q in %s", name, what)
		}
		return err
	})
}

// unmarshalBlock reads a user's optional block.
func (u *User) unmarshalBlock(d *caddyfile.Dispenser) error {
	what := fmt.Sprintf("user %q", u.Subject)
	return subdirectives(d, what, func(name string) (err error) {
		switch name {
		case "email":
			u.Email, err = oneArg(d)
		case "name":
			u.Name, err = oneArg(d)
		case "preferred_username":
			u.PreferredUsername, err = oneArg(d)
		case "groups":
			u.Groups, err = someArgs(d)
		default:
			err = d.Errf("unrecognized subdirective %q in %s", name, what)
		}
		return err
	})
}

// subdirectives calls fn for each sub-directive of the block that
// follows, refusing one given twice; what names the block in errors.
func subdirectives(d *caddyfile.Dispenser, what string, fn func(name string) error) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("duplicate subdirective %q in %s", name, what)
		}
		seen[name] = true
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

// someArgs reads one or more arguments of the current sub-directive.
func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, nil
}

// oneArg reads exactly one argument of the current sub-directive.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}
