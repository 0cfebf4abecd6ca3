package flow

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// Defaults and limits of an Introspector.
const (
	// DefaultIntrospectionActiveTTL is how long an active answer is
	// trusted (never past the token's exp): the longest a revoked token
	// keeps working.
	DefaultIntrospectionActiveTTL = time.Minute
	// DefaultIntrospectionInactiveTTL is how long a refusal is remembered.
	DefaultIntrospectionInactiveTTL = 10 * time.Second
	// DefaultIntrospectionCacheSize bounds the cache of answers.
	DefaultIntrospectionCacheSize = 10000
	// MaxIntrospectionResponse bounds the introspection response read.
	MaxIntrospectionResponse = 64 << 10
	// introspectionTimeout bounds one introspection call, whoever waits.
	introspectionTimeout = 10 * time.Second
)

// ErrInactiveToken: the provider says the token is not active (revoked,
// expired, unknown, or not for us), or its answer's exp or nbf says so.
// It wraps verify.ErrInvalidToken, so callers answer 401 invalid_token as
// for a bad JWT.
var ErrInactiveToken = fmt.Errorf("%w: inactive (token introspection)", verify.ErrInvalidToken)

// IntrospectorOptions configures an Introspector.
type IntrospectorOptions struct {
	// Client authenticates at the introspection endpoint as it does at
	// the token endpoint (ClientOptions.ClientAuth: a secret or a signed
	// assertion, RFC 7662 §2.1), and its Provider supplies
	// the endpoint and the issuer. Required.
	Client *Client
	// Endpoint is the introspection endpoint. Default: the provider's
	// introspection_endpoint (discovery). With an https issuer it must be
	// https.
	Endpoint string
	// Issuer an answer's `iss`, when present, must equal. Default: the
	// provider's issuer.
	Issuer string
	// Audiences: an answer with an `aud` must name one of them. Default:
	// none, and aud is not checked. An answer without aud passes either
	// way (RFC 7662 makes it optional).
	Audiences []string
	// RequiredScopes the token must all carry (in `scope`).
	RequiredScopes []string
	// HTTPClient calls the endpoint. Default: the provider's (timeout,
	// size cap); responses are further capped at 64 KiB.
	HTTPClient *http.Client
	// ActiveTTL bounds how long an active answer is trusted; it is never
	// trusted past the token's exp. Default 1m.
	ActiveTTL time.Duration
	// InactiveTTL is how long a refusal is remembered. Default 10s.
	InactiveTTL time.Duration
	// CacheSize bounds the answers kept (keyed by the token's SHA-256).
	// Default 10000; negative disables the cache.
	CacheSize int
	// ClockSkew tolerated on an answer's exp and nbf. Default 30s.
	ClockSkew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Introspection is an active token's introspection answer (RFC 7662 §2.2):
// the members gatehouse reads, and all of them for claim mapping.
type Introspection struct {
	Subject  string   // sub
	Username string   // username
	ClientID string   // client_id
	Issuer   string   // iss
	Audience []string // aud: a string or an array of strings
	Scopes   []string // scope, split at spaces
	// TokenType is token_type as sent (e.g. "Bearer", or "DPoP" for a
	// DPoP-bound token: see verify.ConfirmationThumbprint).
	TokenType string
	// Times; zero when absent.
	Expiry, IssuedAt, NotBefore time.Time

	all  map[string]any
	memo atomic.Pointer[any] // see Memo
}

// Memo returns what build derives from the answer, built on the first call
// and then kept with it (in the introspection cache too): a caller that
// always derives the same thing from a token — one gateway block's
// identity mapping — does not derive it again for a token seen before.
// Concurrent first calls may each build.
func (in *Introspection) Memo(build func(*Introspection) any) any {
	if p := in.memo.Load(); p != nil {
		return *p
	}
	v := build(in)
	in.memo.Store(&v)
	return v
}

// Map returns every member of the answer as decoded JSON (numbers are
// json.Number), `active` included: what an identity.Mapper reads, and
// verify.ConfirmationThumbprint for `cnf`. The map is shared: callers must
// not modify it.
func (in *Introspection) Map() map[string]any { return in.all }

// MissingScopes returns those of required the token lacks (nil: none).
func (in *Introspection) MissingScopes(required []string) []string {
	var missing []string
	for _, r := range required {
		if !slices.Contains(in.Scopes, r) {
			missing = append(missing, r)
		}
	}
	return missing
}

// Introspector validates opaque access tokens by asking the provider
// (RFC 7662), remembering its answers for a while. It is safe for
// concurrent use.
type Introspector struct {
	opts                                      IntrospectorOptions
	cache                                     *lru.Cache[[sha256.Size]byte, introspected] // nil: no cache
	flights                                   singleflight.Group
	valid, invalid, unavailable, hits, misses atomic.Uint64
}

// introspected is one answer as kept: an active token's Introspection, or
// the refusal; servable before until.
type introspected struct {
	in    *Introspection
	err   error
	until time.Time
}

// NewIntrospector checks o and returns an Introspector. It makes no
// network call.
func NewIntrospector(o IntrospectorOptions) (*Introspector, error) {
	if o.Client == nil {
		return nil, errors.New("flow: introspection: a client is required")
	}
	p := o.Client.p
	if o.Endpoint != "" {
		if err := CheckEndpointURL(o.Endpoint); err != nil {
			return nil, fmt.Errorf("flow: introspection endpoint: %w", err)
		}
		if strings.HasPrefix(p.Issuer(), "https://") && !strings.HasPrefix(o.Endpoint, "https://") {
			return nil, fmt.Errorf("flow: introspection endpoint %q is not https, but the issuer is", o.Endpoint)
		}
	}
	o.Issuer = cmp.Or(o.Issuer, p.Issuer())
	if slices.Contains(o.Audiences, "") {
		return nil, errors.New("flow: introspection: an audience is empty")
	}
	o.ActiveTTL = cmp.Or(o.ActiveTTL, DefaultIntrospectionActiveTTL)
	o.InactiveTTL = cmp.Or(o.InactiveTTL, DefaultIntrospectionInactiveTTL)
	if o.ActiveTTL < 0 || o.InactiveTTL < 0 {
		return nil, errors.New("flow: introspection: cache times must not be negative")
	}
	o.ClockSkew = cmp.Or(o.ClockSkew, DefaultBearerClockSkew)
	if o.ClockSkew < 0 || o.ClockSkew > 10*time.Minute {
		return nil, fmt.Errorf("flow: introspection: clock skew %s out of range [0, 10m]", o.ClockSkew)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = p.opts.HTTPClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Audiences = slices.Clone(o.Audiences)
	o.RequiredScopes = slices.Clone(o.RequiredScopes)
	i := &Introspector{opts: o}
	if size := cmp.Or(o.CacheSize, DefaultIntrospectionCacheSize); size > 0 {
		c, err := lru.New[[sha256.Size]byte, introspected](size)
		if err != nil {
			return nil, fmt.Errorf("flow: introspection cache: %w", err)
		}
		i.cache = c
	}
	return i, nil
}

// Stats counts introspections by outcome (Valid: active) and cache use.
func (i *Introspector) Stats() verify.Stats {
	return verify.Stats{
		Valid:       i.valid.Load(),
		Invalid:     i.invalid.Load(),
		Unavailable: i.unavailable.Load(),
		CacheHits:   i.hits.Load(),
		CacheMisses: i.misses.Load(),
	}
}

// Introspect returns what the provider says about an active token, or why
// it is refused:
//   - errors wrapping verify.ErrInvalidToken — ErrInactiveToken (not
//     active: `active` is anything but the JSON true, or exp is past, or
//     nbf ahead), verify.ErrIssuer (an iss that is not Issuer),
//     verify.ErrAudience (an aud naming none of Audiences),
//     ErrNotAnAccessToken (the answer says it is a refresh or ID token),
//     verify.ErrTooLarge;
//   - *InsufficientScopeError: active, but without the RequiredScopes;
//   - ErrProviderUnavailable: the endpoint could not be reached, answered
//     anything but 200 (a 401 or 403 means it refused gatehouse's client
//     credentials), or sent an unusable answer.
//
// Answers are kept, keyed by the token's SHA-256: an active one until
// ActiveTTL or the token's exp, whichever comes first, a refusal for
// InactiveTTL; an unavailable provider's non-answer is not kept, so a
// kept active answer keeps working while the provider is down, and a
// token not seen before gets ErrProviderUnavailable. Concurrent requests
// for the same token share one call, which the first request's
// cancellation does not end. The token is never logged nor put in an
// error. The result may be shared: callers must not modify it.
func (i *Introspector) Introspect(ctx context.Context, token string) (*Introspection, error) {
	in, err := i.introspect(ctx, token)
	switch {
	case err == nil:
		i.valid.Add(1)
	case errors.Is(err, ErrProviderUnavailable):
		i.unavailable.Add(1)
	default:
		i.invalid.Add(1)
	}
	if err != nil {
		return nil, err
	}
	if missing := in.MissingScopes(i.opts.RequiredScopes); missing != nil {
		return nil, &InsufficientScopeError{Missing: missing}
	}
	return in, nil
}

func (i *Introspector) introspect(ctx context.Context, token string) (*Introspection, error) {
	if token == "" {
		return nil, verify.ErrMalformed
	}
	if len(token) > verify.DefaultMaxTokenSize {
		return nil, verify.ErrTooLarge
	}
	// Hash the string's bytes in place; Sum256 does not keep the slice.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	if i.cache != nil {
		if e, ok := i.cache.Get(key); ok && i.opts.Now().Before(e.until) {
			i.hits.Add(1)
			return e.in, e.err
		}
		i.misses.Add(1)
	}
	return i.share(ctx, key, token)
}

// share runs the introspection of token, one per key at a time, and waits
// for it or for ctx. (Apart from introspect so that key, which the flight
// captures, escapes only on a cache miss.)
func (i *Introspector) share(ctx context.Context, key [sha256.Size]byte, token string) (*Introspection, error) {
	ch := i.flights.DoChan(string(key[:]), func() (any, error) {
		// A flight that ended just before this one began may have
		// left the answer.
		if i.cache != nil {
			if e, ok := i.cache.Get(key); ok && i.opts.Now().Before(e.until) {
				return e, nil
			}
		}
		e := i.fetch(context.WithoutCancel(ctx), token)
		if i.cache != nil && e.until.After(i.opts.Now()) {
			i.cache.Add(key, e)
		}
		return e, nil
	})
	select {
	case r := <-ch:
		e := r.Val.(introspected)
		return e.in, e.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: introspection: %w", ErrProviderUnavailable, ctx.Err())
	}
}

// fetch asks the endpoint about token and judges the answer. until is
// zero for what must not be kept.
func (i *Introspector) fetch(ctx context.Context, token string) introspected {
	endpoint, err := i.endpoint(ctx)
	if err != nil {
		return introspected{err: err}
	}
	ctx, cancel := context.WithTimeout(httpx.WithEndpoint(ctx, httpx.EndpointIntrospection), introspectionTimeout)
	defer cancel()
	body, err := i.post(ctx, endpoint, token)
	if err != nil {
		return introspected{err: err}
	}
	in, err := parseIntrospection(body)
	now := i.opts.Now()
	refused := func(err error, until time.Time) introspected {
		return introspected{err: err, until: until}
	}
	if errors.Is(err, ErrInactiveToken) {
		return refused(err, now.Add(i.opts.InactiveTTL))
	}
	if err != nil {
		return introspected{err: err}
	}
	skew := i.opts.ClockSkew
	switch {
	case !in.Expiry.IsZero() && !now.Before(in.Expiry.Add(skew)):
		return refused(fmt.Errorf("%w: expired", ErrInactiveToken), now.Add(i.opts.InactiveTTL))
	case !in.NotBefore.IsZero() && now.Add(skew).Before(in.NotBefore):
		until := now.Add(i.opts.InactiveTTL)
		if valid := in.NotBefore.Add(-skew); valid.Before(until) {
			until = valid
		}
		return refused(fmt.Errorf("%w: not valid yet (nbf)", ErrInactiveToken), until)
	case in.Issuer != "" && in.Issuer != i.opts.Issuer:
		return refused(fmt.Errorf("%w: the introspection answer names another issuer", verify.ErrIssuer), now.Add(i.opts.InactiveTTL))
	case len(in.Audience) > 0 && len(i.opts.Audiences) > 0 &&
		!slices.ContainsFunc(in.Audience, func(a string) bool { return slices.Contains(i.opts.Audiences, a) }):
		return refused(fmt.Errorf("%w: the introspection answer names none of the audiences", verify.ErrAudience), now.Add(i.opts.InactiveTTL))
	}
	if kind := otherTokenKind(in.all); kind != "" {
		return refused(fmt.Errorf("%w: the introspection answer says %s", ErrNotAnAccessToken, kind), now.Add(i.opts.InactiveTTL))
	}
	until := now.Add(i.opts.ActiveTTL)
	if !in.Expiry.IsZero() && in.Expiry.Before(until) {
		until = in.Expiry
	}
	return introspected{in: in, until: until}
}

// endpoint is the configured endpoint or the provider's.
func (i *Introspector) endpoint(ctx context.Context) (string, error) {
	if i.opts.Endpoint != "" {
		return i.opts.Endpoint, nil
	}
	meta, err := i.opts.Client.p.Metadata(ctx)
	if err != nil {
		return "", err
	}
	if meta.Endpoints.Introspection == "" {
		return "", fmt.Errorf("%w: the provider advertises no introspection_endpoint; configure one", ErrProviderUnavailable)
	}
	return meta.Endpoints.Introspection, nil
}

// post sends the introspection request (RFC 7662 §2.1), authenticated as
// the client, and returns the body of a 200 answer.
func (i *Introspector) post(ctx context.Context, endpoint, token string) ([]byte, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := i.opts.Client.authenticatedPost(ctx, endpoint, form)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrProviderUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := i.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrProviderUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionResponse+1))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%w: the introspection endpoint refused gatehouse's client credentials (%d): check client_id, client_auth and client_secret or client_key",
			ErrProviderUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: the introspection endpoint answered %d", ErrProviderUnavailable, resp.StatusCode)
	case err != nil:
		return nil, fmt.Errorf("%w: introspection: reading the answer: %v", ErrProviderUnavailable, err)
	case len(body) > MaxIntrospectionResponse:
		return nil, fmt.Errorf("%w: the introspection answer exceeds %d bytes", ErrProviderUnavailable, MaxIntrospectionResponse)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); strings.HasSuffix(mt, "jwt") {
		return nil, fmt.Errorf("%w: signed introspection answers (%s) are not supported", ErrProviderUnavailable, mt)
	}
	return body, nil
}

// errIntrospectionAnswer: the answer is not a JSON object, or an active
// one has a member of the wrong type. It says nothing about the token.
var errIntrospectionAnswer = fmt.Errorf("%w: the introspection answer is not a usable JSON object", ErrProviderUnavailable)

// parseIntrospection reads an introspection answer: ErrInactiveToken unless
// `active` is the JSON true; errIntrospectionAnswer for anything that is
// not a JSON object, or whose registered members have the wrong type.
func parseIntrospection(body []byte) (*Introspection, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var all map[string]any
	if err := dec.Decode(&all); err != nil || all == nil {
		return nil, errIntrospectionAnswer
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errIntrospectionAnswer // trailing data
	}
	if active, _ := all["active"].(bool); !active {
		return nil, ErrInactiveToken
	}
	in := &Introspection{all: all}
	var scope string
	ok := member(all, "sub", &in.Subject) &&
		member(all, "username", &in.Username) &&
		member(all, "client_id", &in.ClientID) &&
		member(all, "iss", &in.Issuer) &&
		member(all, "token_type", &in.TokenType) &&
		member(all, "scope", &scope) &&
		audienceMember(all, &in.Audience) &&
		timeMember(all, "exp", &in.Expiry) &&
		timeMember(all, "iat", &in.IssuedAt) &&
		timeMember(all, "nbf", &in.NotBefore)
	if !ok {
		return nil, errIntrospectionAnswer
	}
	in.Scopes = strings.Fields(scope)
	return in, nil
}

// otherTokenKind names the kind of token an answer says it is about when
// that is not an access token (token_type_hint is only a hint: a provider
// may answer for a refresh token), or "".
//   - token_type refresh_token or id_token (in either spelling);
//   - Hydra's token_use other than access_token;
//   - Keycloak's typ Refresh, Offline, ID or Logout.
func otherTokenKind(all map[string]any) string {
	if tt, _ := all["token_type"].(string); tt != "" {
		t := strings.TrimPrefix(strings.ToLower(tt), "urn:ietf:params:oauth:token-type:")
		if t == "refresh_token" || t == "id_token" {
			return "token_type " + t
		}
	}
	if use, ok := all["token_use"].(string); ok && !strings.EqualFold(use, "access_token") {
		return "token_use is not access_token"
	}
	if typ, _ := all["typ"].(string); strings.EqualFold(typ, "Refresh") || strings.EqualFold(typ, "Offline") ||
		strings.EqualFold(typ, "ID") || strings.EqualFold(typ, "Logout") {
		return "typ " + strings.ToLower(typ)
	}
	return ""
}

// member reads an optional string member; another type fails.
func member(all map[string]any, name string, dst *string) bool {
	v, present := all[name]
	if !present {
		return true
	}
	s, ok := v.(string)
	*dst = s
	return ok
}

// audienceMember reads aud: a string or an array of strings.
func audienceMember(all map[string]any, dst *[]string) bool {
	switch v := all["aud"].(type) {
	case nil:
		_, present := all["aud"]
		return !present
	case string:
		*dst = []string{v}
		return true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return false
			}
			out = append(out, s)
		}
		*dst = out
		return true
	default:
		return false
	}
}

// timeMember reads an optional NumericDate: a finite, non-negative JSON
// number of seconds, possibly fractional, before the year 10000.
func timeMember(all map[string]any, name string, dst *time.Time) bool {
	v, present := all[name]
	if !present {
		return true
	}
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f >= 253402300800 {
		return false
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return true
}
