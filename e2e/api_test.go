//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestProtectedResourceMetadata walks what an OAuth client that knows
// only the API's URL does (RFC 9728 §5, the MCP authorization flow): the
// 401 names the metadata, the metadata is a valid RFC 9728 document whose
// resource is the one the URL was derived from (§3.3), its authorization
// server is oidc-provider (its own metadata says so), and a token from
// that server for the API passes.
func TestProtectedResourceMetadata(t *testing.T) {
	get := func(target string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", target, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := insecureClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	resp, _ := get(env.api+"/api/orders", "Accept", "application/json")
	challenge := resp.Header.Get("WWW-Authenticate")
	m := regexp.MustCompile(`^Bearer realm="gatehouse", resource_metadata="([^"]+)"$`).FindStringSubmatch(challenge)
	if resp.StatusCode != http.StatusUnauthorized || m == nil {
		t.Fatalf("no token: %d, WWW-Authenticate %q", resp.StatusCode, challenge)
	}
	metadataURL := m[1]

	resp, body := get(metadataURL)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("metadata: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatalf("metadata is not a JSON object: %v", err)
	}
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("a member of the wrong type (RFC 9728 §2): %v: %s", err, body)
	}
	// §2: resource is required, an https URL without fragment; §3.3:
	// it is the identifier the metadata URL was built from.
	u, err := url.Parse(doc.Resource)
	if err != nil || u.Scheme != "https" || u.Fragment != "" || u.RawQuery != "" {
		t.Fatalf("resource %q", doc.Resource)
	}
	if want := u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/"); want != metadataURL {
		t.Fatalf("the metadata at %s names resource %s, whose metadata would be at %s (RFC 9728 §3.3)", metadataURL, doc.Resource, want)
	}
	if doc.Resource != env.api {
		t.Errorf("resource %q, want the API's origin %s", doc.Resource, env.api)
	}
	if !slices.Equal(doc.BearerMethods, []string{"header"}) || !slices.Contains(doc.ScopesSupported, "orders:read") {
		t.Errorf("bearer_methods_supported %v, scopes_supported %v", doc.BearerMethods, doc.ScopesSupported)
	}
	if len(doc.AuthorizationServers) != 1 {
		t.Fatalf("authorization_servers %v", doc.AuthorizationServers)
	}
	// The authorization server's own metadata names the same issuer.
	as := doc.AuthorizationServers[0]
	resp, body = get(as + "/.well-known/openid-configuration")
	var asMeta struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &asMeta) != nil || asMeta.Issuer != as || asMeta.TokenEndpoint == "" {
		t.Fatalf("the authorization server %s: %d %s", as, resp.StatusCode, body)
	}
	// A token from it passes.
	if resp, body := get(env.api+"/api/orders", "Authorization", "Bearer "+clientCredentialsToken(t, "orders:read")); resp.StatusCode != http.StatusOK {
		t.Fatalf("with a token: %d %s", resp.StatusCode, body)
	}
	// Only GET and HEAD read the document.
	req, _ := http.NewRequest("POST", metadataURL, nil)
	if resp, err := insecureClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
