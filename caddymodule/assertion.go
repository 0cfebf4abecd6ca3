package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/net/http/httpguts"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// AssertionConfig is `assertion`: a short-lived JWT on every request that
// passes, which the upstream verifies against the JWKS gatehouse
// publishes (package assertion does the signing and the keys).
type AssertionConfig struct {
	// Header carries the assertion upstream. Default: X-Gatehouse-Assertion.
	Header string `json:"header,omitempty"`
	// Audience is the assertion's aud. Default: the request's host.
	Audience string `json:"audience,omitempty"`
	// Lifetime of an assertion, never past the session or token behind
	// it. Default: 1m; from 1s to 1h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// Claims are further claims of the user to put in it (kept in the
	// session like those `header` maps). Not iss, sub, aud, exp, iat,
	// nbf, jti, email or groups, which are always set.
	Claims []string `json:"claims,omitempty"`
	// SigningKey is a PEM private key (EC P-256, RSA ≥ 2048 bits,
	// Ed25519), typically {file./path/key.pem}; it never rotates.
	// Default: keys generated and rotated daily in Caddy's storage,
	// shared by every instance that uses the same storage.
	SigningKey string `json:"signing_key,omitempty"`
	// Algorithm of generated keys: ES256 (default), RS256, PS256, EdDSA;
	// with signing_key, RS256 or PS256 for an RSA key.
	Algorithm string `json:"algorithm,omitempty"`
}

const (
	defaultAssertionHeader = "X-Gatehouse-Assertion"
	// jwksWellKnown is where the assertion keys are published, besides
	// path_prefix/jwks.json.
	jwksWellKnown = "/.well-known/gatehouse/jwks.json"
)

// unmarshalCaddyfile reads `assertion` (defaults) or its block.
func (a *AssertionConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return subdirectives(d, "assertion ", nil, func(sub string) (bool, error) {
		var err error
		switch sub {
		case "header":
			err = oneArg(d, &a.Header)
		case "audience":
			err = oneArg(d, &a.Audience)
		case "lifetime":
			err = durationArg(d, "assertion ", &a.Lifetime)
		case "claims":
			err = someArgs(d, &a.Claims)
		case "signing_key":
			err = oneArg(d, &a.SigningKey)
		case "algorithm":
			err = oneArg(d, &a.Algorithm)
		default:
			err = d.Errf("gatehouse: unrecognized assertion subdirective %q", sub)
		}
		return false, err
	})
}

// validate reports what is wrong with the assertion block.
func (a *AssertionConfig) validate(bad badFunc) {
	if a.Header != "" && !httpguts.ValidHeaderFieldName(a.Header) {
		bad("assertion header", "%q is not a header name", a.Header)
	}
	if l := time.Duration(a.Lifetime); l != 0 && (l < assertion.MinLifetime || l > assertion.MaxLifetime) {
		bad("assertion lifetime", "must be between %s and %s", assertion.MinLifetime, assertion.MaxLifetime)
	}
	for _, c := range a.Claims {
		if assertion.Reserved(c) {
			bad("assertion claims", "%q is always set by gatehouse", c)
		}
	}
}

// provisionAssertion starts the block's assertion signer: with its own
// key, or with the key ring in Caddy's storage. The signer's refresh
// goroutine ends with the config (ctx) and at Cleanup.
func (g *Gatehouse) provisionAssertion(ctx caddy.Context) error {
	a := g.Assertion
	if a == nil {
		return nil
	}
	opts := assertion.Options{
		Lifetime:  time.Duration(a.Lifetime),
		Algorithm: a.Algorithm,
		Now:       g.now,
		Logger:    g.slogger,
	}
	switch {
	case a.SigningKey != "":
		opts.PrivateKeyPEM = []byte(a.SigningKey)
	case g.assertionStorage != nil:
		opts.Storage = g.assertionStorage
	default:
		opts.Storage = ctx.Storage()
	}
	s, err := assertion.New(ctx, opts)
	if err != nil {
		if a.SigningKey != "" {
			return fmt.Errorf("gatehouse: assertion signing_key: %w", err)
		}
		return fmt.Errorf("gatehouse: assertion: %w", err)
	}
	g.signer = s
	g.assertionHeader = http.CanonicalHeaderKey(a.Header)
	if g.assertionHeader == "" {
		g.assertionHeader = defaultAssertionHeader
	}
	return nil
}

// assertionFor signs (or finds signed) the assertion of p on r: iss the
// site, aud the configured audience or the host, exp never past notAfter.
// The cache key is the subject: the signer compares the claims too, so
// one user's requests share an assertion and no one else's can.
func (g *Gatehouse) assertionFor(r *http.Request, p *principal) (string, error) {
	id := p.id
	c := assertion.Claims{
		Issuer:   origin(r),
		Subject:  id.Subject,
		Email:    id.VerifiedEmail(),
		Groups:   id.Groups,
		Audience: g.Assertion.Audience,
		NotAfter: p.notAfter,
	}
	if c.Audience == "" {
		c.Audience = r.Host
	}
	if len(g.Assertion.Claims) > 0 {
		c.Extra = assertionClaims(id, g.Assertion.Claims)
	}
	return g.signer.Token(id.Subject, c)
}

// assertionClaims are the configured extra claims of id: a claim with one
// value as a string, with several as a list, one it lacks left out.
func assertionClaims(id *identity.Identity, names []string) map[string]any {
	extra := make(map[string]any, len(names))
	for _, name := range names {
		switch name {
		case "preferred_username":
			extra[name] = id.PreferredUsername
			continue
		case "name":
			extra[name] = id.Name
			continue
		}
		switch v := id.Claims[name]; len(v) {
		case 0:
		case 1:
			extra[name] = v[0]
		default:
			extra[name] = slices.Clone(v)
		}
	}
	return extra
}

// serveJWKS publishes the assertion keys.
func (g *Gatehouse) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	g.signer.ServeJWKS(w, r)
	return nil
}
