package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Gatehouse{})
	httpcaddyfile.RegisterHandlerDirective("gatehouse", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("gatehouse", httpcaddyfile.After, "forward_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gatehouse [<matcher>] {
//		issuer                 <url>
//		authorization_endpoint <url>
//		token_endpoint         <url>
//		userinfo_endpoint      <url>
//		jwks_uri               <url>
//		end_session_endpoint   <url>
//		client_id              <id>
//		client_secret          <secret>
//		client_auth            basic|post
//		scopes                 <scope...>
//		prompt                 <value...>
//		path_prefix            <path>
//		cookie_secret          <secret...>
//		cookie_name            <name>
//		cookie_domain          <domain>
//		cookie_samesite        lax|strict|none
//		cookie_insecure
//		session_lifetime       <duration>
//		session_cache_size     <entries>
//		user_claim             <claim>
//		email_claim            <claim>
//		groups_claim           <claim>
//		trusted_redirect_hosts <host...>
//		unauthenticated        redirect|401|allow
//		refresh_before         <duration>
//		post_logout_redirect   <path|url>
//		allow_emails           <email...>
//		allow_domains          <domain...>
//		allow_groups           <group...>
//		allow_claim            <claim> <value...>
//		header                 <name> <claim>
//		pass_access_token
//		pass_authorization
//		bearer {
//			audience        <aud...>
//			issuer          <url>
//			jwks_uri        <url>
//			algorithms      <alg...>
//			required_scopes <scope...>
//			clock_skew      <duration>
//			cache_size      <entries>
//			only
//		}
//	}
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gatehouse)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return g, nil
}

// UnmarshalCaddyfile reads the gatehouse block (see parseCaddyfile). It
// checks syntax only — argument counts, duplicates, durations; what the
// values mean is checked when the config is provisioned.
func (g *Gatehouse) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && sub != "allow_claim" && sub != "header" {
			return d.Errf("gatehouse: %s: given more than once", sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "issuer":
			err = oneArg(d, &g.Issuer)
		case "authorization_endpoint":
			err = oneArg(d, &g.AuthorizationEndpoint)
		case "token_endpoint":
			err = oneArg(d, &g.TokenEndpoint)
		case "userinfo_endpoint":
			err = oneArg(d, &g.UserinfoEndpoint)
		case "jwks_uri":
			err = oneArg(d, &g.JWKSURI)
		case "end_session_endpoint":
			err = oneArg(d, &g.EndSessionEndpoint)
		case "client_id":
			err = oneArg(d, &g.ClientID)
		case "client_secret":
			err = oneArg(d, &g.ClientSecret)
		case "client_auth":
			err = oneArg(d, &g.ClientAuth)
		case "scopes":
			err = someArgs(d, &g.Scopes)
		case "prompt":
			err = someArgs(d, &g.Prompt)
		case "path_prefix":
			err = oneArg(d, &g.PathPrefix)
		case "cookie_secret":
			err = someArgs(d, &g.CookieSecrets)
		case "cookie_name":
			err = oneArg(d, &g.CookieName)
		case "cookie_domain":
			err = oneArg(d, &g.CookieDomain)
		case "cookie_samesite":
			err = oneArg(d, &g.CookieSameSite)
		case "cookie_insecure":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.CookieInsecure = true
		case "session_lifetime":
			var s string
			if err = oneArg(d, &s); err == nil {
				var dur caddy.Duration
				if dur, err = parseDuration(s); err != nil {
					return d.Errf("gatehouse: session_lifetime: %v", err)
				}
				g.SessionLifetime = dur
			}
		case "session_cache_size":
			var v string
			if err = oneArg(d, &v); err == nil {
				if g.SessionCacheSize, err = strconv.Atoi(v); err != nil {
					return d.Errf("gatehouse: session_cache_size: %q is not a number", v)
				}
			}
		case "user_claim":
			err = oneArg(d, &g.UserClaim)
		case "email_claim":
			err = oneArg(d, &g.EmailClaim)
		case "groups_claim":
			err = oneArg(d, &g.GroupsClaim)
		case "trusted_redirect_hosts":
			err = someArgs(d, &g.TrustedRedirectHosts)
		case "unauthenticated":
			err = oneArg(d, &g.Unauthenticated)
		case "refresh_before":
			var v string
			if err = oneArg(d, &v); err == nil {
				if g.RefreshBefore, err = parseDuration(v); err != nil {
					return d.Errf("gatehouse: refresh_before: %v", err)
				}
			}
		case "post_logout_redirect":
			err = oneArg(d, &g.PostLogoutRedirect)
		case "allow_emails":
			err = someArgs(d, &g.AllowEmails)
		case "allow_domains":
			err = someArgs(d, &g.AllowDomains)
		case "allow_groups":
			err = someArgs(d, &g.AllowGroups)
		case "allow_claim":
			var args []string
			if err = someArgs(d, &args); err == nil {
				if len(args) < 2 {
					return d.Errf("gatehouse: allow_claim: want a claim name and at least one value")
				}
				if _, dup := g.AllowClaims[args[0]]; dup {
					return d.Errf("gatehouse: allow_claim: %s given more than once", args[0])
				}
				if g.AllowClaims == nil {
					g.AllowClaims = map[string][]string{}
				}
				g.AllowClaims[args[0]] = args[1:]
			}
		case "header":
			var args []string
			if err = someArgs(d, &args); err == nil {
				if len(args) != 2 {
					return d.Errf("gatehouse: header: want a header name and a claim name")
				}
				if _, dup := g.Headers[args[0]]; dup {
					return d.Errf("gatehouse: header: %s given more than once", args[0])
				}
				if g.Headers == nil {
					g.Headers = map[string]string{}
				}
				g.Headers[args[0]] = args[1]
			}
		case "pass_access_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.PassAccessToken = true
		case "pass_authorization":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.PassAuthorization = true
		case "bearer":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.Bearer = new(BearerConfig)
			if err := g.Bearer.unmarshalCaddyfile(d); err != nil {
				return err
			}
			continue
		default:
			return d.Errf("gatehouse: unrecognized subdirective %q", sub)
		}
		if err != nil {
			return err
		}
		if d.NextBlock(nesting + 1) {
			return d.Errf("gatehouse: %s: takes no block", sub)
		}
	}
	return nil
}

// unmarshalCaddyfile reads the bearer block.
func (b *BearerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("gatehouse: bearer %s: given more than once", sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "audience":
			err = someArgs(d, &b.Audiences)
		case "issuer":
			err = oneArg(d, &b.Issuer)
		case "jwks_uri":
			err = oneArg(d, &b.JWKSURI)
		case "algorithms":
			err = someArgs(d, &b.Algorithms)
		case "required_scopes":
			err = someArgs(d, &b.RequiredScopes)
		case "clock_skew":
			var s string
			if err = oneArg(d, &s); err == nil {
				if b.ClockSkew, err = parseDuration(s); err != nil {
					return d.Errf("gatehouse: bearer clock_skew: %v", err)
				}
			}
		case "cache_size":
			var s string
			if err = oneArg(d, &s); err == nil {
				if b.CacheSize, err = strconv.Atoi(s); err != nil {
					return d.Errf("gatehouse: bearer cache_size: %q is not a number", s)
				}
			}
		case "only":
			if d.NextArg() {
				return d.ArgErr()
			}
			b.Only = true
		default:
			return d.Errf("gatehouse: bearer: unrecognized subdirective %q", sub)
		}
		if err != nil {
			return err
		}
		if d.NextBlock(nesting + 1) {
			return d.Errf("gatehouse: bearer %s: takes no block", sub)
		}
	}
	return nil
}

// oneArg reads exactly one argument of the current sub-directive.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	sub := d.Val()
	if !d.NextArg() {
		return d.Errf("gatehouse: %s: missing value", sub)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("gatehouse: %s: takes exactly one value", sub)
	}
	return nil
}

// someArgs reads one or more arguments of the current sub-directive.
func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	sub := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("gatehouse: %s: missing value", sub)
	}
	*dst = args
	return nil
}

func parseDuration(s string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(s)
	return caddy.Duration(dur), err
}
