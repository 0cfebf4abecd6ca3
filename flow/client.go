package flow

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/httpx"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// ClientAuth is how the client authenticates at the provider's token,
// revocation and introspection endpoints (clientauth.go).
type ClientAuth int

// Client authentication methods (OpenID Connect Core §9).
const (
	// AuthBasic is client_secret_basic: HTTP Basic with the client id and secret.
	AuthBasic ClientAuth = iota
	// AuthPost is client_secret_post: the id and secret in the form body.
	AuthPost
	// AuthPrivateKeyJWT is private_key_jwt: a JWT the client signs with
	// ClientKey (RFC 7523 §2.2). No client secret.
	AuthPrivateKeyJWT
	// AuthSecretJWT is client_secret_jwt: a JWT signed with HS256, the
	// client secret as the key (at least 32 bytes).
	AuthSecretJWT
)

// DefaultScopes are requested when ClientOptions.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// DefaultClockSkew is tolerated on ID-token times.
const DefaultClockSkew = time.Minute

// ClientOptions configures a Client.
type ClientOptions struct {
	// Provider is the OpenID provider. Required.
	Provider *Provider
	// ClientID of the registered confidential client. Required.
	ClientID string
	// ClientSecret of the client. Required, except with AuthPrivateKeyJWT,
	// which refuses one; at least 32 bytes with AuthSecretJWT.
	ClientSecret string
	// ClientAuth is how the client authenticates at the token,
	// revocation and introspection endpoints. Default AuthBasic.
	ClientAuth ClientAuth
	// ClientKey is the PEM private key of AuthPrivateKeyJWT: PKCS #8,
	// PKCS #1 or SEC 1, unencrypted; EC P-256, or RSA of at least 2048
	// bits. When the PEM also holds the key's certificate, assertions
	// carry its x5t and x5t#S256 (Microsoft Entra ID wants them).
	// Required with AuthPrivateKeyJWT, refused otherwise.
	ClientKey []byte
	// ClientKeyID is the assertions' kid header, as registered at the
	// provider. Default: the key's RFC 7638 JWK thumbprint (SHA-256).
	ClientKeyID string
	// ClientKeyAlgorithm signs the assertions: ES256 for an EC key, RS256
	// or PS256 for an RSA key, HS256 with AuthSecretJWT. Default: ES256,
	// RS256 or HS256 by the key.
	ClientKeyAlgorithm string
	// ClientAssertionAudience is the assertions' aud:
	// AssertionAudienceIssuer ("issuer", the provider's issuer
	// identifier), AssertionAudienceTokenEndpoint ("token_endpoint", the
	// token endpoint URL, whichever endpoint is called) or an explicit
	// URL. Default "issuer": the value that resists audience injection;
	// providers that accept only the token endpoint need "token_endpoint".
	ClientAssertionAudience string
	// Scopes requested; must include "openid". Default DefaultScopes.
	Scopes []string
	// Prompt is sent as the `prompt` parameter: space-separated values of
	// none, login, consent, select_account. Default: not sent. (OpenID
	// Connect Core §11: offline_access needs "consent" at providers that
	// follow it to the letter, such as oidc-provider and Google.)
	Prompt string
	// IDTokenAlgorithms allowed for ID tokens. Default: what discovery
	// advertises, intersected with verify.AsymmetricAlgorithms (RS256 when
	// nothing is advertised).
	IDTokenAlgorithms []string
	// ClockSkew tolerated on ID-token times. Default 1m.
	ClockSkew time.Duration
	// TrustedAudiences are audiences besides ClientID an ID token may name
	// (OpenID Connect Core §3.1.3.7 item 3); an ID token naming any other
	// is refused. Default: none.
	TrustedAudiences []string
	// Mapper turns the ID token's and userinfo's claims into the
	// Identity of a login or refresh. Default: the default claim names.
	Mapper *identity.Mapper
	// AuthParams are further parameters of every authorization request
	// (hd, access_type, resource …). The ones the flow sets itself
	// (response_type, client_id, redirect_uri, scope, state, nonce,
	// code_challenge*, prompt, acr_values, max_age, login_hint,
	// domain_hint, request, request_uri) are refused. Default: none.
	AuthParams url.Values
	// ACRValues are sent as acr_values; the ID token's acr must then be
	// one of them. Default: none sent, acr not checked.
	ACRValues []string
	// MaxAge is sent as max_age (whole seconds, at least 1): the ID token
	// must carry auth_time, at most MaxAge (plus ClockSkew) ago (Core
	// §3.1.3.7 item 13). Default: none.
	MaxAge time.Duration
	// UserAPI, for a plain OAuth 2.0 provider (ProviderOptions.Plain),
	// says who the user is from the access token (package userapi): no
	// ID token is asked for or expected, no nonce sent, and Scopes need
	// not include "openid" (default: none). Default: nil, OpenID Connect.
	UserAPI UserAPI
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Client is the relying party: it starts logins and finishes them at the
// callback, against its Provider. It never blocks its creator on the
// network.
type Client struct {
	opts     ClientOptions
	p        *Provider
	verifier lazyVerifier // for ID tokens
	logout   lazyVerifier // for back-channel logout tokens (backchannel.go)
	// authParams are the authorization request's parameters that are the
	// same for every login, encoded once.
	authParams string
	// assertion signs client assertions (private_key_jwt,
	// client_secret_jwt); nil for the other methods (clientauth.go).
	assertion *assertionSigner
	// tokenHTTP is the provider's HTTP client, authenticating the
	// requests x/oauth2 sends to the token endpoint (tokenTransport).
	tokenHTTP *http.Client
}

// NewClient checks opts and returns a Client. No network call is made here.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Provider == nil {
		return nil, errors.New("flow: a provider is required")
	}
	if opts.ClientID == "" {
		return nil, errors.New("flow: a client id is required")
	}
	assertion, err := checkClientAuth(&opts)
	if err != nil {
		return nil, err
	}
	if len(opts.Scopes) == 0 && opts.UserAPI == nil {
		opts.Scopes = DefaultScopes
	}
	if !slices.Contains(opts.Scopes, "openid") && opts.UserAPI == nil {
		return nil, errors.New(`flow: scopes must include "openid"`)
	}
	if err := checkAlgorithms(opts.IDTokenAlgorithms); err != nil {
		return nil, err
	}
	if err := CheckPrompt(opts.Prompt); err != nil {
		return nil, err
	}
	opts.ClockSkew = cmp.Or(opts.ClockSkew, DefaultClockSkew)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Mapper == nil {
		opts.Mapper = &identity.Mapper{}
	}
	opts.Scopes = slices.Clone(opts.Scopes)
	opts.TrustedAudiences = slices.Clone(opts.TrustedAudiences)
	fixed := url.Values{
		"response_type":         {"code"},
		"client_id":             {opts.ClientID},
		"code_challenge_method": {"S256"},
	}
	if len(opts.Scopes) > 0 {
		fixed.Set("scope", strings.Join(opts.Scopes, " "))
	}
	if opts.Prompt != "" {
		fixed.Set("prompt", opts.Prompt)
	}
	for k, vs := range opts.AuthParams {
		if reservedAuthParams[k] || len(vs) != 1 || k == "" {
			return nil, &OptionError{"AuthParams", fmt.Sprintf("%q is set by the flow itself, or not given exactly once", k)}
		}
		fixed.Set(k, vs[0])
	}
	if opts.MaxAge < 0 || opts.MaxAge > 0 && opts.MaxAge < time.Second {
		return nil, &OptionError{"MaxAge", "must be at least 1s"}
	}
	if opts.MaxAge > 0 {
		fixed.Set("max_age", strconv.FormatInt(int64(opts.MaxAge/time.Second), 10))
	}
	opts.ACRValues = slices.Clone(opts.ACRValues)
	opts.ClientKey = nil // parsed into assertion; not kept twice
	c := &Client{opts: opts, p: opts.Provider, authParams: fixed.Encode(), assertion: assertion}
	c.tokenHTTP = c.tokenClient()
	return c, nil
}

// OptionError is an option value a constructor or checker refuses. Field
// names the option; Reason says why, for callers that report it under
// their own name for the option.
type OptionError struct {
	Field, Reason string
}

func (e *OptionError) Error() string { return "flow: " + e.Field + ": " + e.Reason }

// CheckPrompt accepts a `prompt` value: space-separated values of none,
// login, consent and select_account, with none alone. It fails with an
// *OptionError.
func CheckPrompt(prompt string) error {
	values := strings.Fields(prompt)
	for _, v := range values {
		switch v {
		case "login", "consent", "select_account":
		case "none":
			if len(values) > 1 {
				return &OptionError{"prompt", "none cannot be combined with other values"}
			}
		default:
			return &OptionError{"prompt", fmt.Sprintf("unknown prompt value %q (want none, login, consent or select_account)", v)}
		}
	}
	return nil
}

// ready returns the provider's metadata and the ID-token verifier, which
// logins and refreshes need before anything else.
func (c *Client) ready(ctx context.Context) (*Metadata, *verify.Verifier, error) {
	meta, err := c.p.Metadata(ctx)
	if err != nil || c.opts.UserAPI != nil { // a plain OAuth 2.0 provider has no ID tokens
		return meta, nil, err
	}
	v, err := c.idTokenVerifier(meta)
	if err != nil {
		return nil, nil, err
	}
	return meta, v, nil
}

// idTokenVerifier returns the ID-token verifier, built once the provider's
// metadata is known.
func (c *Client) idTokenVerifier(meta *Metadata) (*verify.Verifier, error) {
	return c.providerVerifier(&c.verifier, meta, false)
}

// providerVerifier returns the verifier lv holds, building it once the
// provider's metadata is known: tokens the provider signs for this client
// (ID tokens; logout tokens, whose exp is optional).
func (c *Client) providerVerifier(lv *lazyVerifier, meta *Metadata, optionalExpiry bool) (*verify.Verifier, error) {
	if v := lv.load(); v != nil {
		return v, nil
	}
	return lv.build(func() (*verify.Verifier, error) {
		ks, err := c.p.KeySet(meta.Endpoints.JWKS)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
		}
		return verify.New(verify.Config{
			Issuer:         meta.Issuer,
			Audiences:      []string{c.opts.ClientID},
			Algorithms:     signingAlgorithms(c.opts.IDTokenAlgorithms, meta),
			Keys:           ks,
			ClockSkew:      c.opts.ClockSkew,
			Now:            c.opts.Now,
			OptionalExpiry: optionalExpiry,
		})
	})
}

// oauth2Config is the x/oauth2 configuration for the token endpoint. It
// holds no client credentials: with AuthStyleInParams and an empty client
// id x/oauth2 sends none, and tokenTransport adds them (Client.authenticate).
func (c *Client) oauth2Config(meta *Metadata, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		Endpoint: oauth2.Endpoint{
			AuthURL:   meta.Endpoints.Authorization,
			TokenURL:  meta.Endpoints.Token,
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirectURL,
		Scopes:      c.opts.Scopes,
	}
}

// withHTTPClient is the one place the provider HTTP client enters a
// context, where x/oauth2 looks for it, for the token endpoint; its
// transport authenticates the client (tokenTransport).
func (c *Client) withHTTPClient(ctx context.Context) context.Context {
	return context.WithValue(httpx.WithEndpoint(ctx, httpx.EndpointToken), oauth2.HTTPClient, c.tokenHTTP)
}

// StartLogin begins a login: unless the provider cannot be reached now
// (ErrProviderUnavailable, see Provider.Available), fresh state and nonce (crypto/rand, 130 bits
// each) and PKCE verifier (256 bits), returned as a session.Login for the
// caller to keep, and the provider URL to send the browser to.
// redirectURL is this gateway's callback URL; returnTo must already be
// validated (ValidateReturnTo) and is checked again when the login ends.
func (c *Client) StartLogin(ctx context.Context, redirectURL, returnTo string) (authURL string, login *session.Login, err error) {
	return c.StartLoginWith(ctx, redirectURL, returnTo, LoginParams{})
}

// LoginParams are what one login adds to the authorization request.
type LoginParams struct {
	// LoginHint and DomainHint are sent as login_hint and domain_hint,
	// when set (at most 256 bytes of printable ASCII or UTF-8 each).
	LoginHint, DomainHint string
	// ACRValues replace ClientOptions.ACRValues for this login (a step
	// up): the ID token's acr must be one of them. A plain OAuth 2.0
	// client (UserAPI) sends none.
	ACRValues []string
}

// maxHint bounds login_hint and domain_hint.
const maxHint = 256

// StartLoginWith is StartLogin with per-login parameters; a hint that is
// too long or holds control characters is left out.
func (c *Client) StartLoginWith(ctx context.Context, redirectURL, returnTo string, params LoginParams) (authURL string, login *session.Login, err error) {
	meta, err := c.p.Metadata(ctx)
	if err != nil {
		return "", nil, err
	}
	if err := c.p.Available(ctx, meta); err != nil {
		return "", nil, err
	}
	login = &session.Login{
		State:    rand.Text(),
		Nonce:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Created:  c.opts.Now().Unix(),

		ACRValues: c.opts.ACRValues,
	}
	if len(params.ACRValues) > 0 {
		login.ACRValues = params.ACRValues
	}
	if c.opts.UserAPI != nil {
		login.ACRValues = nil // no ID token to say the acr: asking would be in vain
	}
	authURL = c.authURL(meta.Endpoints.Authorization, redirectURL, login)
	extra := url.Values{}
	if len(login.ACRValues) > 0 {
		extra.Set("acr_values", strings.Join(login.ACRValues, " "))
	}
	for name, hint := range map[string]string{"login_hint": params.LoginHint, "domain_hint": params.DomainHint} {
		if hint != "" && len(hint) <= maxHint && printable(hint) {
			extra.Set(name, hint)
		}
	}
	if len(extra) > 0 {
		authURL += "&" + extra.Encode()
	}
	return authURL, login, nil
}

// reservedAuthParams are the authorization request's parameters the flow
// sets itself (AuthParams may not), or that would bypass its checks.
var reservedAuthParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "scope": true, "state": true,
	"nonce": true, "code_challenge": true, "code_challenge_method": true, "prompt": true,
	"acr_values": true, "max_age": true, "login_hint": true, "domain_hint": true,
	"request": true, "request_uri": true, "response_mode": true,
}

// ReservedAuthParam reports whether name is an authorization request
// parameter the flow sets itself, which ClientOptions.AuthParams may not.
func ReservedAuthParam(name string) bool { return reservedAuthParams[name] }

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// authURL is the authorization request (RFC 6749 §4.1.1) for login: the
// fixed parameters, the redirect URI, state, nonce and the PKCE S256
// challenge (RFC 7636 §4.2), appended to the endpoint's own query if it
// has one. Built by hand: it is on every login start, and x/oauth2's
// AuthCodeURL costs a map, a sort and some 25 allocations.
func (c *Client) authURL(endpoint, redirectURL string, login *session.Login) string {
	sum := sha256.Sum256([]byte(login.Verifier))
	var challenge [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(challenge[:], sum[:])
	redirect := url.QueryEscape(redirectURL)
	var b strings.Builder
	b.Grow(len(endpoint) + len(c.authParams) + len(redirect) + len(login.State) + len(login.Nonce) + len(challenge) + 64)
	b.WriteString(endpoint)
	if strings.Contains(endpoint, "?") {
		b.WriteByte('&')
	} else {
		b.WriteByte('?')
	}
	b.WriteString(c.authParams)
	b.WriteString("&redirect_uri=")
	b.WriteString(redirect)
	// State and nonce are rand.Text: base32 letters and digits, nothing to escape.
	b.WriteString("&state=")
	b.WriteString(login.State)
	if c.opts.UserAPI == nil {
		b.WriteString("&nonce=")
		b.WriteString(login.Nonce)
	}
	b.WriteString("&code_challenge=")
	b.Write(challenge[:])
	return b.String()
}

// Tokens are the provider's tokens from a code exchange or refresh.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	// Expiry of the access token; zero when the provider did not say.
	Expiry time.Time
}

// Result is a finished login.
type Result struct {
	Tokens Tokens
	// IDToken holds the verified ID token's claims.
	IDToken *verify.Claims
	// Claims are the ID token's claims, completed with userinfo claims
	// the ID token lacks; empty after a refresh that brought no verified
	// ID token.
	Claims map[string]any
	// Identity is Claims mapped by the client's Mapper (or, with a
	// UserAPI, what it says); nil when Claims is empty (a refresh keeps
	// the identity the session has).
	Identity *identity.Identity
	// Plain is true for a plain OAuth 2.0 login (ClientOptions.UserAPI):
	// there is no ID token.
	Plain bool
}

// Query is the part of an authorization response FinishLogin reads (an
// url.Values satisfies it).
type Query interface {
	Get(key string) string
	Has(key string) bool
}

// maxParam bounds authorization-response parameters.
const maxParam = 4096

// FinishLogin completes a login from the authorization response query
// received at the callback, given the login it belongs to (nil when no
// login cookie matched). In order it checks: the state, in constant time;
// the RFC 9207 `iss` parameter (on error responses too, §2.4); the
// provider's `error`; the code. Then it
// exchanges the code with the PKCE verifier, verifies the ID token (see
// verify, plus sub, iat, audiences, azp, nonce and at_hash), and fetches
// userinfo when the provider has that endpoint, whose `sub` must match.
func (c *Client) FinishLogin(ctx context.Context, redirectURL string, q Query, login *session.Login) (*Result, error) {
	state := q.Get("state")
	if login == nil || state == "" || len(state) > maxParam ||
		subtle.ConstantTimeCompare([]byte(state), []byte(login.State)) != 1 {
		return nil, ErrStateMismatch
	}
	meta, v, err := c.ready(ctx)
	if err != nil {
		return nil, err
	}
	// RFC 9207 §2.4: the issuer is checked on error responses too.
	if iss := q.Get("iss"); iss != "" || meta.IssParameter {
		if iss != meta.Issuer {
			return nil, ErrIssuerMismatch
		}
	}
	if q.Has("error") {
		return nil, newProviderError(q.Get("error"), q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" || len(code) > maxParam {
		return nil, ErrMissingCode
	}
	tok, err := c.oauth2Config(meta, redirectURL).Exchange(c.withHTTPClient(ctx), code, oauth2.VerifierOption(login.Verifier))
	if err != nil {
		err = exchangeError(err)
	}
	c.p.observeToken(ctx, err)
	if err != nil {
		return nil, err
	}
	return c.result(ctx, meta, v, tok, tokenCheck{nonce: login.Nonce, acr: login.ACRValues})
}

// tokenCheck is what result checks a token response against besides the
// verifier: at login, the login's nonce (an ID token is required); on a
// refresh, the session's subject (the ID token is optional, Core §12.2).
type tokenCheck struct {
	refresh  bool
	nonce    string         // login
	acr      []string       // login: the acr values asked for, one of which the ID token must say
	subject  string         // refresh
	previous *verify.Claims // refresh: the session's ID token, when it has one
}

// result checks a token response and turns it into a Result, in named
// steps: the token type; the ID token; userinfo; the identity; the expiry.
// On a refresh the refresh token is already spent, so trouble with the ID
// token's keys or with userinfo keeps the new tokens and the old identity.
func (c *Client) result(ctx context.Context, meta *Metadata, v *verify.Verifier, tok *oauth2.Token, check tokenCheck) (*Result, error) {
	// The token_type as sent: x/oauth2's Type() says Bearer when it is
	// missing, which RFC 6749 §5.1 requires (review SA2-22).
	if !strings.EqualFold(tok.TokenType, "Bearer") {
		return nil, fmt.Errorf("%w: token_type %q is not Bearer", ErrTokenResponse, tok.TokenType)
	}
	if c.opts.UserAPI != nil {
		return c.userAPIResult(ctx, tok, check)
	}
	rawID, idc, err := c.idTokenOf(ctx, v, tok, check)
	unchecked := errors.Is(err, errIDTokenUnchecked)
	if err != nil && !unchecked {
		return nil, err
	}
	claims := map[string]any{}
	if !unchecked { // an ID token we could not check: the identity stays as it was
		if claims, err = c.claimsOf(ctx, meta, tok.AccessToken, idc, check); err != nil {
			return nil, err
		}
	}
	res := &Result{
		Tokens: Tokens{
			AccessToken:  tok.AccessToken,
			RefreshToken: tok.RefreshToken,
			IDToken:      rawID,
			Expiry:       c.expiryOf(tok),
		},
		IDToken: idc,
		Claims:  claims,
	}
	if len(claims) > 0 {
		id, err := c.opts.Mapper.Map(claims)
		if err != nil {
			return nil, err
		}
		res.Identity = &id
	}
	return res, nil
}

// idTokenOf verifies the response's ID token: required at login; on a
// refresh optional, and dropped (errIDTokenUnchecked) when its keys cannot
// be had right now.
func (c *Client) idTokenOf(ctx context.Context, v *verify.Verifier, tok *oauth2.Token, check tokenCheck) (string, *verify.Claims, error) {
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		if check.refresh {
			return "", nil, nil
		}
		return "", nil, fmt.Errorf("%w: no id_token", ErrTokenResponse)
	}
	idc, err := c.checkIDToken(ctx, v, rawID, check, tok.AccessToken)
	switch {
	case err == nil:
		return rawID, idc, nil
	case check.refresh && errors.Is(err, ErrProviderUnavailable):
		return "", nil, errIDTokenUnchecked
	default:
		return "", nil, err
	}
}

// errIDTokenUnchecked: a refreshed ID token could not be checked (its keys
// are unavailable); the refresh keeps its tokens but not that ID token.
var errIDTokenUnchecked = errors.New("flow: the refreshed ID token could not be checked")

// claimsOf is the ID token's claims completed by userinfo (when the
// provider has it), whose sub must equal the ID token's. Without a
// verified ID token a refresh reads no claims: the session keeps its
// identity; a userinfo hiccup on a refresh does the same.
func (c *Client) claimsOf(ctx context.Context, meta *Metadata, accessToken string, idc *verify.Claims, check tokenCheck) (map[string]any, error) {
	if idc == nil {
		return c.refreshedUserinfo(ctx, meta, accessToken, check)
	}
	claims := map[string]any{}
	for k, val := range idc.Map() {
		claims[k] = val
	}
	if meta.Endpoints.Userinfo == "" {
		return claims, nil
	}
	info, err := c.userinfo(ctx, meta.Endpoints.Userinfo, accessToken)
	c.p.observe(err)
	if err != nil {
		if check.refresh {
			return map[string]any{}, nil
		}
		return nil, err
	}
	if sub, _ := info["sub"].(string); sub != idc.Subject {
		return nil, fmt.Errorf("%w: sub differs from the ID token's", ErrUserinfo)
	}
	for k, val := range info {
		if _, ok := claims[k]; !ok {
			claims[k] = val
		}
	}
	return claims, nil
}

// refreshedUserinfo reads the claims of a refresh that brought no verified
// ID token from userinfo, so group changes still reach the session
// (Pomerium CVE-2021-41230, review SA2-13); its sub must be the session's.
// Without userinfo, or when it fails, the session keeps its identity.
func (c *Client) refreshedUserinfo(ctx context.Context, meta *Metadata, accessToken string, check tokenCheck) (map[string]any, error) {
	if !check.refresh || meta.Endpoints.Userinfo == "" {
		return map[string]any{}, nil
	}
	info, err := c.userinfo(ctx, meta.Endpoints.Userinfo, accessToken)
	c.p.observe(err)
	if err != nil {
		return map[string]any{}, nil
	}
	if sub, _ := info["sub"].(string); sub != check.subject {
		return nil, fmt.Errorf("%w: sub differs from the session's", ErrUserinfo)
	}
	return info, nil
}

// expiryOf is the access token's expiry from expires_in, on our clock
// (x/oauth2 uses time.Now).
func (c *Client) expiryOf(tok *oauth2.Token) time.Time {
	if tok.ExpiresIn > 0 {
		return c.opts.Now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	return tok.Expiry
}

// checkIDToken verifies an ID token as OpenID Connect Core §3.1.3.7 asks
// (and §12.2 after a refresh: the same subject, no nonce required).
func (c *Client) checkIDToken(ctx context.Context, v *verify.Verifier, raw string, check tokenCheck, accessToken string) (*verify.Claims, error) {
	idc, err := v.Verify(ctx, raw)
	if errors.Is(err, verify.ErrKeysUnavailable) {
		return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIDToken, err)
	}
	switch {
	case idc.Subject == "" || len(idc.Subject) > 255:
		return nil, fmt.Errorf("%w: sub missing or longer than 255 bytes", ErrIDToken)
	case idc.IssuedAt.IsZero():
		return nil, fmt.Errorf("%w: no iat", ErrIDToken)
	case idc.AuthorizedParty != "" && idc.AuthorizedParty != c.opts.ClientID:
		return nil, fmt.Errorf("%w: azp is another client", ErrIDToken)
	case len(idc.Audience) > 1 && idc.AuthorizedParty == "":
		// Several audiences need azp to say which client it was issued to
		// (Core §3.1.3.7 items 4–5).
		return nil, fmt.Errorf("%w: several audiences and no azp", ErrIDToken)
	case !c.trustsAudiences(idc.Audience):
		// Core §3.1.3.7 item 3: an audience the client does not trust.
		return nil, fmt.Errorf("%w: an audience is not trusted (trusted_audiences)", ErrIDToken)
	case check.refresh && idc.Subject != check.subject:
		return nil, fmt.Errorf("%w: a refreshed ID token names another subject", ErrIDToken)
	case check.refresh && !sameAsOriginal(idc, check.previous):
		return nil, fmt.Errorf("%w: a refreshed ID token is older than the last one, or its auth_time or nonce differs from the login's", ErrIDToken)
	case !check.refresh && (check.nonce == "" || subtle.ConstantTimeCompare([]byte(idc.Nonce), []byte(check.nonce)) != 1):
		return nil, fmt.Errorf("%w: nonce mismatch", ErrIDToken)
	}
	if idc.AccessTokenHash != "" && !atHashMatches(idc.Algorithm, idc.AccessTokenHash, accessToken) {
		return nil, fmt.Errorf("%w: at_hash does not match the access token", ErrIDToken)
	}
	if !check.refresh {
		if err := c.checkAuthentication(idc, check.acr); err != nil {
			return nil, err
		}
	}
	return idc, nil
}

// checkAuthentication checks how the user authenticated, at login (Core
// §3.1.3.7 items 12–13): the acr is one of those asked for, and with
// MaxAge the auth_time is recent enough.
func (c *Client) checkAuthentication(idc *verify.Claims, acr []string) error {
	if len(acr) > 0 {
		got, _ := idc.Claim("acr")
		if s, ok := got.(string); !ok || !slices.Contains(acr, s) {
			return fmt.Errorf("%w: acr %v is not one of the acr_values asked for (%s)", ErrACR, got, strings.Join(acr, " "))
		}
	}
	if c.opts.MaxAge > 0 {
		n, _ := idc.Claim("auth_time")
		num, _ := n.(json.Number)
		at, err := num.Int64()
		if err != nil {
			return fmt.Errorf("%w: max_age was sent but auth_time is missing", ErrACR)
		}
		if c.opts.Now().Sub(time.Unix(at, 0)) > c.opts.MaxAge+c.opts.ClockSkew {
			return fmt.Errorf("%w: auth_time is older than max_age", ErrACR)
		}
	}
	return nil
}

// sameAsOriginal checks a refreshed ID token against the session's previous
// one (Core §12.2): its iat is when it was issued, so not before the
// previous one's (an older token handed out again is not a new one; the
// provider's clock, not ours, says so); auth_time, when both have it, is
// the original login's; a nonce, which it should not have, must be the
// original one.
func sameAsOriginal(idc, previous *verify.Claims) bool {
	if previous == nil {
		return true
	}
	if idc.IssuedAt.Before(previous.IssuedAt) {
		return false
	}
	newAuth, _ := idc.Map()["auth_time"].(json.Number)
	oldAuth, _ := previous.Map()["auth_time"].(json.Number)
	if newAuth != "" && oldAuth != "" && newAuth != oldAuth {
		return false
	}
	return idc.Nonce == "" || idc.Nonce == previous.Nonce
}

// trustsAudiences reports whether every audience is the client or one of
// TrustedAudiences.
func (c *Client) trustsAudiences(auds []string) bool {
	for _, a := range auds {
		if a != c.opts.ClientID && !slices.Contains(c.opts.TrustedAudiences, a) {
			return false
		}
	}
	return true
}

// atHashMatches checks at_hash (Core §3.2.2.9): the left half of the hash
// of the access token, with the hash of the ID token's algorithm.
func atHashMatches(alg, atHash, accessToken string) bool {
	var h hash.Hash
	switch alg {
	case "RS256", "PS256", "ES256":
		h = sha256.New()
	case "RS384", "PS384", "ES384":
		h = sha512.New384()
	case "RS512", "PS512", "ES512", "EdDSA":
		h = sha512.New()
	default:
		return false
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	want := base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
	return subtle.ConstantTimeCompare([]byte(want), []byte(atHash)) == 1
}
