package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// Endpoints are the provider URLs gatehouse calls or sends users to.
type Endpoints struct {
	Authorization string
	Token         string
	Userinfo      string
	JWKS          string
	EndSession    string
	// Revocation is the RFC 7009 revocation endpoint (discovery only).
	Revocation string
	// Introspection is the RFC 7662 introspection endpoint (discovery only;
	// IntrospectorOptions.Endpoint configures one).
	Introspection string
}

// complete reports whether discovery can be skipped.
func (e Endpoints) complete() bool {
	return e.Authorization != "" && e.Token != "" && e.JWKS != ""
}

// overlay returns e with every non-empty field of o replacing e's.
func (e Endpoints) overlay(o Endpoints) Endpoints {
	pick := func(a, b string) string {
		if b != "" {
			return b
		}
		return a
	}
	return Endpoints{
		Authorization: pick(e.Authorization, o.Authorization),
		Token:         pick(e.Token, o.Token),
		Userinfo:      pick(e.Userinfo, o.Userinfo),
		JWKS:          pick(e.JWKS, o.JWKS),
		EndSession:    pick(e.EndSession, o.EndSession),
		Revocation:    pick(e.Revocation, o.Revocation),
		Introspection: pick(e.Introspection, o.Introspection),
	}
}

// Metadata is what gatehouse uses of the provider's discovery document
// (OpenID Connect Discovery 1.0 §3), with configured overrides applied.
type Metadata struct {
	Issuer    string
	Endpoints Endpoints
	// IDTokenAlgorithms the provider signs ID tokens with.
	IDTokenAlgorithms []string
	// IssParameter is true when the provider sends `iss` in authorization
	// responses (RFC 9207), which gatehouse then requires.
	IssParameter bool
}

// discoveryDoc is the wire form of the discovery document.
type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	IDTokenAlgs           []string `json:"id_token_signing_alg_values_supported"`
	IssParameter          bool     `json:"authorization_response_iss_parameter_supported"`
}

// discover fetches and checks the provider's discovery document.
func discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(httpx.WithEndpoint(ctx, httpx.EndpointDiscovery), http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := httpx.ReadAll(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", wellKnown, resp.Status)
	}
	var doc discoveryDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("GET %s: decoding: %w", wellKnown, err)
	}
	// Discovery §4.3: the document's issuer must be exactly the one we
	// asked for, or a mix-up is possible.
	if doc.Issuer != issuer {
		return nil, fmt.Errorf("discovery document at %s names issuer %q, not the configured %q", wellKnown, doc.Issuer, issuer)
	}
	return &Metadata{
		Issuer: issuer,
		Endpoints: Endpoints{
			Authorization: doc.AuthorizationEndpoint,
			Token:         doc.TokenEndpoint,
			Userinfo:      doc.UserinfoEndpoint,
			JWKS:          doc.JWKSURI,
			EndSession:    doc.EndSessionEndpoint,
			Revocation:    doc.RevocationEndpoint,
			Introspection: doc.IntrospectionEndpoint,
		},
		IDTokenAlgorithms: doc.IDTokenAlgs,
		IssParameter:      doc.IssParameter,
	}, nil
}

// checkEndpoints requires the endpoints gatehouse needs, as absolute URLs;
// with an https issuer every endpoint must be https too, so a document
// cannot downgrade the token endpoint (and the client secret) to plain HTTP.
func checkEndpoints(issuer string, e Endpoints, withKeys bool) error {
	secure := strings.HasPrefix(issuer, "https://")
	for _, ep := range []struct {
		name, url string
		required  bool
	}{
		{"authorization_endpoint", e.Authorization, true},
		{"token_endpoint", e.Token, true},
		{"jwks_uri", e.JWKS, withKeys},
		{"userinfo_endpoint", e.Userinfo, false},
		{"end_session_endpoint", e.EndSession, false},
		{"revocation_endpoint", e.Revocation, false},
		{"introspection_endpoint", e.Introspection, false},
	} {
		if ep.url == "" {
			if ep.required {
				return fmt.Errorf("the provider has no %s", ep.name)
			}
			continue
		}
		if err := CheckEndpointURL(ep.url); err != nil {
			return fmt.Errorf("%s: %w", ep.name, err)
		}
		if secure && !strings.HasPrefix(ep.url, "https://") {
			return fmt.Errorf("%s %q is not https, but the issuer is", ep.name, ep.url)
		}
	}
	return nil
}

// CheckEndpointURL accepts an absolute http(s) URL with a host and without
// user info or fragment.
func CheckEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q", raw)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute http(s) URL without user info or fragment", raw)
	}
	return nil
}

// Discovery backoff: the first retry after 1s, doubling up to a minute.
const (
	backoffFirst = time.Second
	backoffMax   = time.Minute
)

func backoff(failures int) time.Duration {
	d := backoffFirst
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// ErrProviderUnavailable: the provider could not be reached or answered
// unusably; requests that need it should get a 502/503 and retry later.
var ErrProviderUnavailable = errors.New("flow: the OpenID provider is unavailable")
