package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-auth/gatehouse/flow"
	"github.com/gatehouse-auth/gatehouse/verify"
)

// OAuth 2.0 Protected Resource Metadata (RFC 9728) for a block with a
// bearer block: a client that meets a 401 (an MCP client, say) finds the
// metadata URL in the challenge's resource_metadata parameter (§5.1) and
// learns from it which authorization server issues tokens for this API
// and with which scopes.
//
// The resource identifier is `bearer { resource <url> }`, or else the
// request's origin. Its metadata lives at /.well-known/oauth-protected-resource
// followed by the identifier's path (§3.1): resource https://api.example.com/mcp
// is described at https://api.example.com/.well-known/oauth-protected-resource/mcp.
const resourceMetadataPrefix = "/.well-known/oauth-protected-resource"

// resourceMetadata is what a block publishes under RFC 9728, built once
// at provisioning but for the resource identifier when it is the
// request's origin.
type resourceMetadata struct {
	resource string // the configured identifier; "" means the request's origin
	path     string // where the document is served
	doc      protectedResource
}

// protectedResource is the metadata document (RFC 9728 §2).
type protectedResource struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	BearerMethods        []string `json:"bearer_methods_supported"`
	// RFC 9728 §2 members for DPoP (RFC 9449), with bearer { dpop }.
	DPoPAlgorithms    []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPBoundRequired bool     `json:"dpop_bound_access_tokens_required,omitempty"`
}

// newResourceMetadata describes the bearer block b of a block whose
// provider is issuer. resource was validated by checkResource.
func newResourceMetadata(b *BearerConfig, issuer string) *resourceMetadata {
	m := &resourceMetadata{resource: b.Resource, path: resourceMetadataPrefix}
	if b.Resource != "" {
		u, _ := url.Parse(b.Resource)
		m.path += strings.TrimSuffix(u.EscapedPath(), "/")
	}
	m.doc = protectedResource{
		AuthorizationServers: []string{issuer},
		ScopesSupported:      b.RequiredScopes,
		// Tokens are taken from the Authorization header only (RFC 6750
		// §2.1); never from a form body or the query.
		BearerMethods: []string{"header"},
	}
	if b.Issuer != "" {
		m.doc.AuthorizationServers = []string{b.Issuer}
	}
	if b.DPoP != "" {
		m.doc.DPoPAlgorithms = verify.DPoPAlgorithms
		m.doc.DPoPBoundRequired = b.DPoP == dpopRequired
	}
	return m
}

// checkResource accepts a resource identifier RFC 9728 §1.2 allows: an
// absolute http(s) URL with a host, without query or fragment.
func checkResource(raw string) error {
	if err := flow.CheckEndpointURL(raw); err != nil {
		return err
	}
	if u, _ := url.Parse(raw); u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("%q has a query; a resource identifier has none (RFC 9728 §1.2)", raw)
	}
	return nil
}

// metadataURL is the absolute URL of the metadata for r's resource.
func (m *resourceMetadata) metadataURL(r *http.Request) string {
	if m.resource == "" {
		return origin(r) + m.path
	}
	u, _ := url.Parse(m.resource)
	return u.Scheme + "://" + u.Host + m.path
}

// serve answers GET (and HEAD) with the metadata document.
func (m *resourceMetadata) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			title: "Method not allowed", message: "The resource metadata is read with GET."}, fmt.Errorf("gatehouse: resource metadata method %s", r.Method))
	}
	doc := m.doc
	doc.Resource = m.resource
	if doc.Resource == "" {
		doc.Resource = origin(r)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// challenge is a Bearer WWW-Authenticate challenge with params (`error="…"`
// and the like, already quoted; "" for none) and, for a block that
// publishes resource metadata, resource_metadata (RFC 9728 §5.1).
func (g *Gatehouse) challenge(r *http.Request, params string) string {
	c := `Bearer realm="gatehouse"`
	if params != "" {
		c += ", " + params
	}
	if g.resourceMeta != nil {
		c += `, resource_metadata="` + g.resourceMeta.metadataURL(r) + `"`
	}
	return c
}
