package httpx

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBodyCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		wantErr bool
	}{
		{"under the cap", 99, false, false},
		{"exactly the cap", 100, false, false},
		{"exactly the cap, chunked", 100, true, false},
		{"one over, with Content-Length", 101, false, true},
		{"one over, chunked", 101, true, true},
		{"far over, chunked", 1 << 20, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.chunked {
					w.(http.Flusher).Flush() // no Content-Length
				}
				w.Write([]byte(strings.Repeat("x", tc.size)))
			}))
			defer srv.Close()
			c := NewClient(nil, time.Second, 100)
			resp, err := c.Get(srv.URL)
			var body []byte
			if err == nil {
				body, err = ReadAll(resp)
			}
			if tc.wantErr {
				if !errors.Is(err, ErrBodyTooLarge) {
					t.Fatalf("err = %v, want ErrBodyTooLarge", err)
				}
				return
			}
			if err != nil || len(body) != tc.size {
				t.Fatalf("read %d bytes, err %v", len(body), err)
			}
		})
	}
}

func TestTimeoutAndRedirects(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	resp, err := NewClient(nil, 200*time.Millisecond, 0).Get(slow.URL)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a response that never ends did not time out")
	}

	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+"/again", http.StatusFound)
	}))
	defer loop.Close()
	if _, err := NewClient(nil, time.Second, 0).Get(loop.URL); !errors.Is(err, ErrRedirect) {
		t.Fatalf("redirect loop: %v", err)
	}
}

// TestRedirectsFollowedOnlyWhereSafe (review SA2-10): a token or
// revocation POST is never re-sent to wherever a 307/308 points (its body
// holds the code, verifier, refresh token, maybe the client secret), nor
// is any request sent to another host.
func TestRedirectsFollowedOnlyWhereSafe(t *testing.T) {
	var leaked atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked.Add(1) }))
	defer sink.Close()
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			w.Write([]byte("ok"))
		default:
			http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		}
	}))
	defer srv.Close()
	c := NewClient(nil, time.Second, 0)

	target = sink.URL + "/token"
	if _, err := c.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("code=c&code_verifier=v")); !errors.Is(err, ErrRedirect) {
		t.Fatalf("POST redirected to another host: %v", err)
	}
	if _, err := c.Get(srv.URL + "/jwks"); !errors.Is(err, ErrRedirect) {
		t.Fatalf("GET redirected to another host: %v", err)
	}
	target = srv.URL + "/same"
	if _, err := c.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("refresh_token=r")); !errors.Is(err, ErrRedirect) {
		t.Fatalf("POST redirected on the same host: %v", err)
	}
	if resp, err := c.Get(srv.URL + "/jwks"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET redirected on the same host: %v", err)
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("%d requests reached the other host", n)
	}
}
