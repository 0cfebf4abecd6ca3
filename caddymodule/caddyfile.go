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
//		provider <name> {          # repeatable; instead of the flat provider directives
//			display_name <label>
//			<any provider directive: kind … assume_email_verified>
//			<allow_emails|allow_domains|allow_groups|allow_claim …>
//		}
//		kind                   oidc|github|gitlab|oauth2
//		base_url               <url>            # github, gitlab
//		allow_orgs             <org...>         # github
//		allow_teams            <org/team...>    # github
//		allow_gitlab_groups    <group...>       # gitlab
//		subject_path           <path>           # oauth2; also email_verified_path, username_path, name_path
//		issuer                 <url>
//		authorization_endpoint <url>
//		token_endpoint         <url>
//		userinfo_endpoint      <url>
//		jwks_uri               <url>
//		end_session_endpoint   <url>
//		client_id              <id>
//		client_secret          <secret>
//		client_auth            basic|post|private_key_jwt|client_secret_jwt
//		client_key             <pem>
//		client_key_id          <kid>
//		client_key_algorithm   ES256|RS256|PS256
//		client_assertion_audience issuer|token_endpoint|<url>
//		scopes                 <scope...>
//		prompt                 <value...>
//		auth_param             <name> <value>   # repeatable
//		acr_values             <acr...>
//		max_age                <duration>
//		path_prefix            <path>
//		cookie_secret          <secret...>
//		cookie_name            <name>
//		cookie_domain          <domain>
//		cookie_samesite        lax|strict|none
//		cookie_insecure
//		session_lifetime       <duration>
//		session_idle_timeout   <duration>
//		session_cache_size     <entries>
//		store redis {
//			address         <host:port|redis://…|rediss://…>
//			username        <user>
//			password        <password>
//			database        <n>
//			tls
//			tls_server_name <name>
//			tls_ca_file     <path>
//			key_prefix      <prefix>
//			dial_timeout    <duration>
//			timeout         <duration>
//		}
//		user_claim             <claim>
//		email_claim            <claim>
//		groups_claim           <claim>
//		assume_email_verified
//		trusted_audiences      <aud...>
//		trusted_redirect_hosts <host...>
//		public_paths           <path...>
//		unauthenticated        redirect|401|allow
//		refresh_before         <duration>
//		post_logout_redirect   <path|url>
//		allow_emails           <email...>
//		allow_domains          <domain...>
//		allow_groups           <group...>
//		allow_claim            <claim> <value...>
//		require_acr            <acr...>
//		header                 <name> <claim>
//		pass_access_token
//		pass_authorization
//		metrics                on|off
//		assertion { … }            # see assertion.go
//		bearer {
//			audience        <aud...>
//			issuer          <url>
//			jwks_uri        <url>
//			jwks_file       <path>
//			algorithms      <alg...>
//			required_scopes <scope...>
//			clock_skew      <duration>
//			cache_size      <entries>
//			require_at_jwt
//			only
//			resource        <url>
//			dpop            optional|required
//			introspection { endpoint <url>; cache_ttl <duration>; cache_size <entries> }
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
	repeatable := map[string]bool{"allow_claim": true, "header": true, "provider": true, "auth_param": true}
	return subdirectives(d, "", repeatable, func(sub string) (readBlock bool, err error) {
		if ok, err := g.ProviderConfig.unmarshalDirective(d, sub); ok {
			return false, err
		}
		if ok, err := g.AllowRules.unmarshalDirective(d, sub); ok {
			return false, err
		}
		switch sub {
		case "provider":
			return true, g.unmarshalProvider(d)
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
			err = flagArg(d, &g.CookieInsecure)
		case "session_lifetime":
			err = durationArg(d, "", &g.SessionLifetime)
		case "session_idle_timeout":
			err = durationArg(d, "", &g.SessionIdleTimeout)
		case "session_cache_size":
			err = intArg(d, "", &g.SessionCacheSize)
		case "public_paths":
			err = someArgs(d, &g.PublicPaths)
		case "trusted_redirect_hosts":
			err = someArgs(d, &g.TrustedRedirectHosts)
		case "unauthenticated":
			err = oneArg(d, &g.Unauthenticated)
		case "refresh_before":
			err = durationArg(d, "", &g.RefreshBefore)
		case "post_logout_redirect":
			err = oneArg(d, &g.PostLogoutRedirect)
		case "header":
			var name string
			var claim []string
			if name, claim, err = keyedArgs(d, g.Headers, "a header name and a claim name", true); err == nil {
				g.Headers = setKey(g.Headers, name, claim[0])
			}
		case "require_acr":
			err = someArgs(d, &g.RequireACR)
		case "pass_access_token":
			err = flagArg(d, &g.PassAccessToken)
		case "pass_authorization":
			err = flagArg(d, &g.PassAuthorization)
		case "metrics":
			var v string
			if err = oneArg(d, &v); err == nil {
				switch v {
				case "on":
					g.DisableMetrics = false
				case "off":
					g.DisableMetrics = true
				default:
					err = d.Errf("gatehouse: metrics takes on or off, not %q", v)
				}
			}
		case "bearer":
			if d.NextArg() {
				return false, d.ArgErr()
			}
			g.Bearer = new(BearerConfig)
			return true, g.Bearer.unmarshalCaddyfile(d)
		case "store":
			g.Store = new(StoreConfig)
			return true, g.Store.unmarshalCaddyfile(d)
		case "assertion":
			g.Assertion = new(AssertionConfig)
			return true, g.Assertion.unmarshalCaddyfile(d)
		default:
			err = d.Errf("gatehouse: unrecognized subdirective %q", sub)
		}
		return false, err
	})
}

// unmarshalDirective reads sub when it is a provider directive (issuer,
// client, scopes, claim names …): ok says whether it was one.
func (pc *ProviderConfig) unmarshalDirective(d *caddyfile.Dispenser, sub string) (ok bool, err error) {
	single := map[string]*string{
		"kind":                      &pc.Kind,
		"base_url":                  &pc.BaseURL,
		"subject_path":              &pc.SubjectPath,
		"email_verified_path":       &pc.EmailVerifiedPath,
		"username_path":             &pc.UsernamePath,
		"name_path":                 &pc.NamePath,
		"issuer":                    &pc.Issuer,
		"authorization_endpoint":    &pc.AuthorizationEndpoint,
		"token_endpoint":            &pc.TokenEndpoint,
		"userinfo_endpoint":         &pc.UserinfoEndpoint,
		"jwks_uri":                  &pc.JWKSURI,
		"end_session_endpoint":      &pc.EndSessionEndpoint,
		"client_id":                 &pc.ClientID,
		"client_secret":             &pc.ClientSecret,
		"client_auth":               &pc.ClientAuth,
		"client_key":                &pc.ClientKey,
		"client_key_id":             &pc.ClientKeyID,
		"client_key_algorithm":      &pc.ClientKeyAlgorithm,
		"client_assertion_audience": &pc.ClientAssertionAudience,
		"user_claim":                &pc.UserClaim,
		"email_claim":               &pc.EmailClaim,
		"groups_claim":              &pc.GroupsClaim,
	}
	lists := map[string]*[]string{
		"scopes": &pc.Scopes, "prompt": &pc.Prompt, "trusted_audiences": &pc.TrustedAudiences,
		"allow_orgs": &pc.AllowOrgs, "allow_teams": &pc.AllowTeams, "allow_gitlab_groups": &pc.AllowGitLabGroups,
		"acr_values": &pc.ACRValues,
	}
	if dst, ok := single[sub]; ok {
		return true, oneArg(d, dst)
	}
	if dst, ok := lists[sub]; ok {
		return true, someArgs(d, dst)
	}
	switch sub {
	case "assume_email_verified":
		return true, flagArg(d, &pc.AssumeEmailVerified)
	case "max_age":
		return true, durationArg(d, "", &pc.MaxAge)
	case "auth_param":
		name, value, err := keyedArgs(d, pc.AuthParams, "a parameter name and a value", true)
		if err == nil {
			pc.AuthParams = setKey(pc.AuthParams, name, value[0])
		}
		return true, err
	}
	return false, nil
}

// unmarshalDirective reads sub when it is an allow_* rule.
func (a *AllowRules) unmarshalDirective(d *caddyfile.Dispenser, sub string) (ok bool, err error) {
	switch sub {
	case "allow_emails":
		return true, someArgs(d, &a.AllowEmails)
	case "allow_domains":
		return true, someArgs(d, &a.AllowDomains)
	case "allow_groups":
		return true, someArgs(d, &a.AllowGroups)
	case "allow_claim":
		name, values, err := keyedArgs(d, a.AllowClaims, "a claim name and at least one value", false)
		if err == nil {
			a.AllowClaims = setKey(a.AllowClaims, name, values)
		}
		return true, err
	}
	return false, nil
}

// unmarshalProvider reads `provider NAME { … }`: a provider's directives,
// display_name, and its allow_* rules.
func (g *Gatehouse) unmarshalProvider(d *caddyfile.Dispenser) error {
	p := new(NamedProvider)
	if !d.NextArg() {
		return d.Errf("gatehouse: provider: missing name (provider NAME { issuer … })")
	}
	p.Name = d.Val()
	if d.NextArg() {
		return d.Errf("gatehouse: provider %s: takes a name and a block", p.Name)
	}
	prefix := "provider " + p.Name + ": "
	err := subdirectives(d, prefix, map[string]bool{"allow_claim": true, "auth_param": true}, func(sub string) (bool, error) {
		if ok, err := p.ProviderConfig.unmarshalDirective(d, sub); ok {
			return false, err
		}
		if ok, err := p.AllowRules.unmarshalDirective(d, sub); ok {
			return false, err
		}
		if sub == "display_name" {
			return false, oneArg(d, &p.DisplayName)
		}
		return false, d.Errf("gatehouse: %sunrecognized subdirective %q", prefix, sub)
	})
	g.Providers = append(g.Providers, p)
	return err
}

// unmarshalCaddyfile reads the bearer block.
func (b *BearerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return subdirectives(d, "bearer ", nil, func(sub string) (readBlock bool, err error) {
		switch sub {
		case "audience":
			err = someArgs(d, &b.Audiences)
		case "issuer":
			err = oneArg(d, &b.Issuer)
		case "jwks_uri":
			err = oneArg(d, &b.JWKSURI)
		case "jwks_file":
			err = oneArg(d, &b.JWKSFile)
		case "algorithms":
			err = someArgs(d, &b.Algorithms)
		case "required_scopes":
			err = someArgs(d, &b.RequiredScopes)
		case "clock_skew":
			err = durationArg(d, "bearer ", &b.ClockSkew)
		case "cache_size":
			err = intArg(d, "bearer ", &b.CacheSize)
		case "only":
			err = flagArg(d, &b.Only)
		case "require_at_jwt":
			err = flagArg(d, &b.RequireAtJWT)
		case "resource":
			err = oneArg(d, &b.Resource)
		case "dpop":
			err = oneArg(d, &b.DPoP)
		case "introspection":
			b.Introspection = new(IntrospectionConfig)
			return true, b.Introspection.unmarshalCaddyfile(d)
		default:
			err = d.Errf("gatehouse: bearer: unrecognized subdirective %q", sub)
		}
		return false, err
	})
}

// subdirectives calls fn for each sub-directive of the block that follows.
// It refuses one given twice (unless repeatable) and a block after one
// that does not read its own (fn says whether it did); prefix ("bearer ")
// goes before the sub-directive's name in errors.
func subdirectives(d *caddyfile.Dispenser, prefix string, repeatable map[string]bool, fn func(sub string) (readBlock bool, err error)) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && !repeatable[sub] {
			return d.Errf("gatehouse: %s%s: given more than once", prefix, sub)
		}
		seen[sub] = true
		readBlock, err := fn(sub)
		if err != nil {
			return err
		}
		if !readBlock && d.NextBlock(nesting+1) {
			return d.Errf("gatehouse: %s%s: takes no block", prefix, sub)
		}
	}
	return nil
}

// flagArg reads a sub-directive that takes no argument and sets *dst.
func flagArg(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
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

// durationArg reads exactly one duration argument (caddy.ParseDuration:
// Go durations plus "d" for days); block prefixes the sub-directive's name
// in errors ("bearer " inside the bearer block).
func durationArg(d *caddyfile.Dispenser, block string, dst *caddy.Duration) error {
	sub := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("gatehouse: %s%s: %v", block, sub, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// intArg reads exactly one integer argument; block as for durationArg.
func intArg(d *caddyfile.Dispenser, block string, dst *int) error {
	sub := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("gatehouse: %s%s: %q is not a number", block, sub, s)
	}
	*dst = n
	return nil
}

// keyedArgs reads a repeatable sub-directive `sub KEY VALUE...` whose
// keys must differ (existing holds those seen): it returns the key and one
// or more values (exactly one with oneValue); want describes the arguments
// in errors.
func keyedArgs[V any](d *caddyfile.Dispenser, existing map[string]V, want string, oneValue bool) (string, []string, error) {
	sub := d.Val()
	var args []string
	if err := someArgs(d, &args); err != nil {
		return "", nil, err
	}
	if len(args) < 2 || oneValue && len(args) > 2 {
		return "", nil, d.Errf("gatehouse: %s: want %s", sub, want)
	}
	if _, dup := existing[args[0]]; dup {
		return "", nil, d.Errf("gatehouse: %s: %s given more than once", sub, args[0])
	}
	return args[0], args[1:], nil
}

// setKey sets m[k] = v, making m first if needed.
func setKey[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}
