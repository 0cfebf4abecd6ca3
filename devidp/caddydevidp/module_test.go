package caddydevidp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func provisioned(t *testing.T, h *Handler) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return h.Provision(ctx)
}

func validHandler() *Handler {
	return &Handler{
		Issuer:    "http://127.0.0.1:9000",
		Clients:   []Client{{ID: "demo", Secret: "{env.GATEHOUSE_TEST_DEVIDP_SECRET}"}},
		Users:     []User{{Subject: "alice", Email: "{env.GATEHOUSE_TEST_DEVIDP_EMAIL}"}},
		Algorithm: "ES256",
	}
}

func TestModuleInfo(t *testing.T) {
	info := Handler{}.CaddyModule()
	if info.ID != "http.handlers.gatehouse_devidp" {
		t.Fatalf("ID = %q", info.ID)
	}
	if _, ok := info.New().(*Handler); !ok {
		t.Fatalf("New() returns %T", info.New())
	}
}

func TestProvisionErrors(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_DEVIDP_EMAIL", "alice@example.com")
	t.Setenv("GATEHOUSE_TEST_DEVIDP_SECRET", "")
	tests := []struct {
		name    string
		mutate  func(*Handler)
		wantErr string
	}{
		{"unset secret variable", func(*Handler) {}, `client "demo": secret`},
		{"secret with unknown placeholder", func(h *Handler) { h.Clients[0].Secret = "abc{xyz}" }, `client "demo": secret`},
		{"no issuer", func(h *Handler) { h.Issuer = ""; h.Clients[0].Secret = "s" }, "gatehouse_devidp: devidp: issuer is required"},
		{"unset issuer variable", func(h *Handler) { h.Issuer = "{env.GATEHOUSE_TEST_DEVIDP_UNSET}" }, "issuer"},
		{"bad algorithm", func(h *Handler) { h.Algorithm = "HS256"; h.Clients[0].Secret = "s" }, "unsupported algorithm"},
		{"no users", func(h *Handler) { h.Users = nil; h.Clients[0].Secret = "s" }, "at least one user"},
		{"negative TTL", func(h *Handler) { h.AccessTokenTTL = -1; h.Clients[0].Secret = "s" }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := validHandler()
			tc.mutate(h)
			err := provisioned(t, h)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "xyz") {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestServeHTTP(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_DEVIDP_SECRET", "s3cret value")
	t.Setenv("GATEHOUSE_TEST_DEVIDP_EMAIL", "alice@example.com")
	h := validHandler()
	if err := provisioned(t, h); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("next handler called: gatehouse_devidp is terminal")
		return nil
	})
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, req, next); err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
		return rec
	}

	rec := serve(httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9000/.well-known/openid-configuration", nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc["issuer"] != "http://127.0.0.1:9000" {
		t.Fatalf("discovery: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9000/elsewhere", nil)); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", rec.Code)
	}

	// The secret placeholder was resolved: the client authenticates with
	// the variable's value (and then fails on the grant type).
	for _, tc := range []struct {
		secret string
		want   int
	}{
		{"{env.GATEHOUSE_TEST_DEVIDP_SECRET}", http.StatusUnauthorized},
		{"s3cret value", http.StatusBadRequest},
	} {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9000/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("demo:"+strings.ReplaceAll(tc.secret, " ", "+"))))
		if rec := serve(req); rec.Code != tc.want {
			t.Fatalf("token with secret %q: %d %s", tc.secret, rec.Code, rec.Body)
		}
	}

	var unprovisioned Handler
	err := unprovisioned.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next)
	if err == nil {
		t.Fatalf("unprovisioned handler served")
	}
}

// TestRealisticAccessTokens checks that the flag reaches the provider.
func TestRealisticAccessTokens(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_DEVIDP_SECRET", "s3cret value")
	t.Setenv("GATEHOUSE_TEST_DEVIDP_EMAIL", "alice@example.com")
	for _, on := range []bool{false, true} {
		h := validHandler()
		h.RealisticAccessTokens = on
		if err := provisioned(t, h); err != nil {
			t.Fatal(err)
		}
		tok, err := h.provider.MintAccessToken("alice", []string{"demo"}, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(payload), `"realm_access"`); got != on {
			t.Errorf("realistic_access_tokens %v: token carries realm_access = %v: %s", on, got, payload)
		}
	}
}
