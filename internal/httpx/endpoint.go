package httpx

import "context"

// Endpoint names the provider endpoint a request goes to, from a fixed
// set, so that what observes the provider client's requests (the latency
// histograms of caddymodule) can label them without looking at URLs.
type Endpoint uint8

// The provider endpoints gatehouse calls.
const (
	EndpointOther Endpoint = iota // a request no caller named
	EndpointDiscovery
	EndpointJWKS
	EndpointToken
	EndpointUserinfo
	EndpointRevocation
	EndpointIntrospection
	NumEndpoints // the number of Endpoint values, for arrays indexed by them
)

var endpointNames = [NumEndpoints]string{"other", "discovery", "jwks", "token", "userinfo", "revocation", "introspection"}

func (e Endpoint) String() string {
	if e >= NumEndpoints {
		return endpointNames[EndpointOther]
	}
	return endpointNames[e]
}

type endpointKey struct{}

// WithEndpoint returns ctx naming e as the endpoint of the requests made
// with it.
func WithEndpoint(ctx context.Context, e Endpoint) context.Context {
	return context.WithValue(ctx, endpointKey{}, e)
}

// EndpointOf returns the endpoint WithEndpoint put in ctx, or
// EndpointOther.
func EndpointOf(ctx context.Context) Endpoint {
	e, _ := ctx.Value(endpointKey{}).(Endpoint)
	return e
}
