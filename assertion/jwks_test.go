package assertion

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJWKSContent: public keys only, each with kty, kid, alg and use sig;
// generated keys of every algorithm verify.
func TestJWKSContent(t *testing.T) {
	for _, alg := range []string{"", "ES256", "RS256", "PS256", "EdDSA"} {
		t.Run("alg "+alg, func(t *testing.T) {
			clk := newClock()
			s := newRingSigner(t, &MemoryStorage{}, clk, func(o *Options) { o.Algorithm = alg })
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(s.JWKS(), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("%d keys", len(set.Keys))
			}
			k := set.Keys[0]
			want := alg
			if want == "" {
				want = DefaultAlgorithm
			}
			if k["alg"] != want || k["use"] != "sig" || k["kid"] == "" || k["kty"] == "" {
				t.Errorf("key = %v", k)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Errorf("the JWKS publishes the private member %q", private)
				}
			}
			tok := token(t, s, "", claims())
			if h := headerOf(t, tok); h.Alg != want || h.Kid != k["kid"] {
				t.Errorf("header = %+v", h)
			}
			if _, err := verifyJWX(s.JWKS(), tok, clk.Now()); err != nil {
				t.Errorf("jwx: %v", err)
			}
			if _, err := verifyStdlib(s.JWKS(), tok, clk.Now()); err != nil {
				t.Errorf("stdlib: %v", err)
			}
		})
	}
}

// TestServeJWKS: the handler's status, validators and caching headers.
func TestServeJWKS(t *testing.T) {
	clk := newClock()
	s := newRingSigner(t, &MemoryStorage{}, clk)
	p := s.Published()
	serve := func(method string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/oauth2/jwks", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		s.ServeJWKS(w, r)
		return w
	}
	tests := []struct {
		name   string
		method string
		hdr    []string
		status int
		body   bool
	}{
		{name: "POST", method: http.MethodPost, status: http.StatusMethodNotAllowed},
		{name: "DELETE", method: http.MethodDelete, status: http.StatusMethodNotAllowed},
		{name: "other ETag", method: http.MethodGet, hdr: []string{"If-None-Match", `"other"`}, status: http.StatusOK, body: true},
		{name: "unquoted ETag", method: http.MethodGet, hdr: []string{"If-None-Match", strings.Trim(p.ETag, `"`)}, status: http.StatusOK, body: true},
		{name: "GET", method: http.MethodGet, status: http.StatusOK, body: true},
		{name: "HEAD", method: http.MethodHead, status: http.StatusOK},
		{name: "same ETag", method: http.MethodGet, hdr: []string{"If-None-Match", p.ETag}, status: http.StatusNotModified},
		{name: "weak ETag in a list", method: http.MethodGet, hdr: []string{"If-None-Match", `"x", W/` + p.ETag}, status: http.StatusNotModified},
		{name: "any", method: http.MethodGet, hdr: []string{"If-None-Match", "*"}, status: http.StatusNotModified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(tc.method, tc.hdr...)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if tc.status == http.StatusMethodNotAllowed {
				if w.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow = %q", w.Header().Get("Allow"))
				}
				return
			}
			if w.Header().Get("ETag") != p.ETag || w.Header().Get("Cache-Control") != p.CacheControl {
				t.Errorf("headers = %v", w.Header())
			}
			if got := w.Body.String(); (got != "") != tc.body || (tc.body && got != string(p.JWKS)) {
				t.Errorf("body = %q", got)
			}
			if tc.status == http.StatusOK {
				if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Content-Length") != strconv.Itoa(len(p.JWKS)) {
					t.Errorf("headers = %v", w.Header())
				}
			}
		})
	}
	// A verifier's cache expires well before a new key signs.
	if !strings.HasPrefix(p.CacheControl, "public, max-age=") {
		t.Fatalf("Cache-Control = %q", p.CacheControl)
	}
	maxAge, err := strconv.Atoi(strings.TrimPrefix(p.CacheControl, "public, max-age="))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(maxAge)*time.Second+DefaultRefreshInterval >= DefaultPublishAhead {
		t.Errorf("max-age %ds is too long for publish-ahead %s", maxAge, DefaultPublishAhead)
	}
	// A new key changes the tag.
	clk.Set(epoch.Add(DefaultRotationPeriod - DefaultPublishAhead))
	refresh(t, s)
	if s.Published().ETag == p.ETag {
		t.Error("the ETag did not change with the keys")
	}
	if w := serve(http.MethodGet, "If-None-Match", p.ETag); w.Code != http.StatusOK {
		t.Errorf("the old ETag got %d", w.Code)
	}
}
