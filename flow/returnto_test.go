package flow

import (
	"bufio"
	"net/url"
	"os"
	"strings"
	"testing"
)

var testTrusted, _ = NewHostPatterns([]string{"trusted.example", "*.corp.example", "pinned.example:8443"})

func TestValidateReturnToRefusesCorpus(t *testing.T) {
	for _, payload := range corpus(t) {
		t.Run(payload, func(t *testing.T) {
			if err := ValidateReturnTo(payload, "good.example", testTrusted); err == nil {
				t.Fatalf("%q accepted", payload)
			}
			if got := SafeReturnTo(payload, "good.example", testTrusted); got != "/" {
				t.Fatalf("SafeReturnTo(%q) = %q", payload, got)
			}
		})
	}
}

func TestValidateReturnToAccepts(t *testing.T) {
	for _, target := range []string{
		"/",
		"/app",
		"/app/page?x=1&y=2",
		"/app/page?next=//not-a-host-here",
		"/a/b/c.html?q=%2F%2F#frag",
		"/reports/2026/11?sort=-date",
		"/search?q=a+b&lang=en",
		// Issue 10, defect 1: encoded characters in the query are the
		// page's business, not a redirect trick.
		"/search?q=hello%20world",
		"/search?q=a%2Fb%2F%2Fc&path=%2F%2Fevil.example&x=%0A%09%5C",
		"/reports?filter=%E2%80%AE&empty=",
		"https://good.example/search?q=hello%20world#top",
		"/%E2%82%AC",
		"/caf%C3%A9?q=%E6%97%A5",
		"/..well-named/..x",
		"https://good.example/after-login",
		"HTTPS://GOOD.EXAMPLE/x",
		"http://good.example/",
		"https://trusted.example/x?y=1",
		"https://trusted.example:9443/x",
		"https://a.corp.example/",
		"https://a.b.corp.example/x",
		"https://pinned.example:8443/",
	} {
		t.Run(target, func(t *testing.T) {
			if err := ValidateReturnTo(target, "good.example", testTrusted); err != nil {
				t.Fatalf("%q refused", target)
			}
			if got := SafeReturnTo(target, "good.example", testTrusted); got != target {
				t.Fatalf("SafeReturnTo changed %q to %q", target, got)
			}
		})
	}
	if ValidateReturnTo("https://pinned.example:9000/", "good.example", testTrusted) == nil {
		t.Fatal("pinned port ignored")
	}
	if ValidateReturnTo("https://good.example:8443/", "good.example", testTrusted) == nil {
		t.Fatal("another port on the request host accepted")
	}
	if ValidateReturnTo("https://good.example:8443/", "good.example:8443", testTrusted) != nil {
		t.Fatal("request host with its port refused")
	}
	if ValidateReturnTo("https://"+strings.Repeat("a", maxReturnTo), "good.example", testTrusted) == nil {
		t.Fatal("oversized return-to accepted")
	}
}

func TestNewHostPatterns(t *testing.T) {
	// Review SA2-19: wildcards over public suffixes are refused.
	for _, bad := range []string{"", "https://x.example", "x.example/path", "user@x.example", "*", "*.", "*.com", "x.*.example", "**.example.com", "x.example:port", "x.example:99999999", "ex ample.com", "x..example",
		"*.co.uk", "*.github.io", "*.azurewebsites.net", "*.CO.UK", "*.s3.amazonaws.com"} {
		if _, err := NewHostPatterns([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"x.example", "X.Example", "x.example:8443", "*.example.com", "*.example.co.uk", "*.corp.example", "*.myorg.github.io", "localhost", "127.0.0.1"} {
		if _, err := NewHostPatterns([]string{good}); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
}

func corpus(t testing.TB) []string {
	f, err := os.Open("testdata/openredirects.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "# ") || line == "#" {
			continue
		}
		out = append(out, line)
	}
	return out
}

// FuzzSafeReturnTo checks, for any input, that the result is "/" or a
// target a browser resolves on this site. The oracle mimics WHATWG URL
// parsing: tabs and newlines are dropped, "\" is "/", and the result is
// resolved against the callback URL (CVE-2020-4037: differential check).
func FuzzSafeReturnTo(f *testing.F) {
	for _, p := range corpus(f) {
		f.Add(p)
	}
	f.Add("/app?x=1")
	f.Add("https://a.corp.example/x")
	base, _ := url.Parse("https://good.example/oauth2/callback")
	f.Fuzz(func(t *testing.T, target string) {
		got := SafeReturnTo(target, "good.example", testTrusted)
		if got == "/" {
			return
		}
		if got != target {
			t.Fatalf("SafeReturnTo rewrote %q to %q", target, got)
		}
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		if browser != got {
			t.Fatalf("accepted %q, which a browser reads differently", got)
		}
		ref, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("accepted unparseable %q", got)
		}
		u := base.ResolveReference(ref)
		host := strings.ToLower(u.Hostname())
		if u.Scheme != "https" && u.Scheme != "http" {
			t.Fatalf("accepted %q: scheme %q", got, u.Scheme)
		}
		if u.User != nil {
			t.Fatalf("accepted %q: user info", got)
		}
		if host != "good.example" && !testTrusted.match(host, u.Port()) {
			t.Fatalf("accepted %q: resolves to host %q", got, host)
		}
		if strings.HasPrefix(got, "/") {
			if strings.HasPrefix(got, "//") {
				t.Fatalf("accepted protocol-relative %q", got)
			}
			if d, err := url.PathUnescape(got); err == nil && strings.HasPrefix(d, "//") {
				t.Fatalf("accepted %q, which decodes to %q", got, d)
			}
		}
	})
}
