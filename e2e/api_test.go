//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
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

// tokenRequest posts a client_credentials grant for gatehouse-basic to the
// provider (with dpopProof, as a DPoP token request) and returns the
// token and its type.
func tokenRequest(t *testing.T, form url.Values, dpopProof string) (token, tokenType string) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	req, _ := http.NewRequest("POST", env.opURL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gatehouse-basic", clientSecret)
	if dpopProof != "" {
		req.Header.Set("DPoP", dpopProof)
	}
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token request: %d %s", resp.StatusCode, body)
	}
	return tok.AccessToken, tok.TokenType
}

// dpopKey is a client's DPoP key pair.
type dpopKey struct {
	private *ecdsa.PrivateKey
	public  jwk.Key
}

func newDPoPKey(t *testing.T) *dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.FromRaw(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{private: k, public: pub}
}

// proof is a DPoP proof (RFC 9449 §4.2) for method and htu, bound to
// accessToken (ath) when one is given.
func (k *dpopKey) proof(t *testing.T, method, htu, accessToken string) string {
	t.Helper()
	jti := make([]byte, 16)
	rand.Read(jti)
	claims := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(jti), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, _ := json.Marshal(claims)
	hdrs := jws.NewHeaders()
	for name, v := range map[string]any{"typ": "dpop+jwt", "jwk": k.public} {
		if err := hdrs.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, k.private, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// apiCall sends GET target with the Authorization and DPoP headers given
// ("" for none) and returns the status and WWW-Authenticate.
func apiCall(t *testing.T, target, authorization, dpop string) (int, []string) {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Values("WWW-Authenticate")
}

// TestDPoP: oidc-provider binds a token to a client's DPoP key; gatehouse
// (`dpop optional`) lets it through with a valid proof and refuses it
// without one, as a plain Bearer token, with a replayed proof, with a
// proof for another URL, and with a proof by another key.
func TestDPoP(t *testing.T) {
	key := newDPoPKey(t)
	token, tokenType := tokenRequest(t, url.Values{"resource": {"api://e2e"}, "scope": {"orders:read"}}, key.proof(t, "POST", env.opURL+"/token", ""))
	if tokenType != "DPoP" {
		t.Fatalf("token_type %q: the provider did not bind the token", tokenType)
	}
	target := env.api + "/api/orders"
	first := key.proof(t, "GET", target, token)
	if status, ch := apiCall(t, target+"?page=1", "DPoP "+token, first); status != http.StatusOK {
		t.Fatalf("with its proof: %d %v", status, ch)
	}
	other := newDPoPKey(t)
	for _, tc := range []struct {
		name, authorization, proof, want string
	}{
		{"no proof", "DPoP " + token, "", `error="invalid_dpop_proof"`},
		{"as a Bearer token", "Bearer " + token, "", `error="invalid_token"`},
		{"a replayed proof", "DPoP " + token, first, `error="invalid_dpop_proof"`},
		{"a proof for another URL", "DPoP " + token, key.proof(t, "GET", env.api+"/api/admin", token), `error="invalid_dpop_proof"`},
		{"a proof for another method", "DPoP " + token, key.proof(t, "POST", target, token), `error="invalid_dpop_proof"`},
		{"a proof for another token", "DPoP " + token, key.proof(t, "GET", target, token+"x"), `error="invalid_dpop_proof"`},
		{"a proof by another key", "DPoP " + token, other.proof(t, "GET", target, token), `error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, challenges := apiCall(t, target, tc.authorization, tc.proof)
			if status != http.StatusUnauthorized || !slices.ContainsFunc(challenges, func(c string) bool { return strings.Contains(c, tc.want) }) {
				t.Fatalf("%d %q, want 401 with %s", status, challenges, tc.want)
			}
			if !slices.ContainsFunc(challenges, func(c string) bool { return strings.HasPrefix(c, `DPoP algs="`) }) {
				t.Errorf("no DPoP challenge (RFC 9449 §7.1): %q", challenges)
			}
		})
	}
	// A fresh proof still works: the refusals spent nothing.
	if status, ch := apiCall(t, target, "DPoP "+token, key.proof(t, "GET", target, token)); status != http.StatusOK {
		t.Fatalf("a fresh proof: %d %v", status, ch)
	}
}

// TestOpaqueTokenIntrospection: oidc-provider's opaque access token (no
// resource indicator) passes through introspection; once revoked at the
// provider it is refused as soon as the cached answer lapses (cache_ttl
// 2s in the suite's Caddyfile), and never before the revocation.
func TestOpaqueTokenIntrospection(t *testing.T) {
	token, _ := tokenRequest(t, url.Values{"scope": {"orders:read"}}, "")
	if strings.Count(token, ".") == 2 {
		t.Fatalf("the provider issued a JWT, not an opaque token: %.20s…", token)
	}
	target := env.api + "/api/orders"
	for range 3 {
		if status, ch := apiCall(t, target, "Bearer "+token, ""); status != http.StatusOK {
			t.Fatalf("opaque token: %d %v", status, ch)
		}
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest("POST", env.opURL+"/token/revocation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gatehouse-basic", clientSecret)
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %d", resp.StatusCode)
	}
	// Bounded: the cache holds an answer 2 s; 40 tries 250 ms apart.
	for i := 0; ; i++ {
		status, ch := apiCall(t, target, "Bearer "+token, "")
		if status == http.StatusUnauthorized && slices.ContainsFunc(ch, func(c string) bool { return strings.Contains(c, `error="invalid_token"`) }) {
			break
		}
		if status != http.StatusOK || i == 40 {
			t.Fatalf("after revocation, try %d: %d %v", i, status, ch)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A made-up opaque token is refused too.
	if status, _ := apiCall(t, target, "Bearer not-a-token-the-provider-issued", ""); status != http.StatusUnauthorized {
		t.Fatalf("a made-up token: %d", status)
	}
}
