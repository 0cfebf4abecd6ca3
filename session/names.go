package session

import (
	"fmt"
	"strings"
)

// CheckCookieName accepts an RFC 6265 token of at most 64 bytes.
func CheckCookieName(name string) error {
	bad := name == "" || len(name) > 64
	for _, c := range []byte(name) {
		bad = bad || c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0
	}
	if bad {
		return fmt.Errorf("session: invalid cookie name %q: want up to 64 letters, digits and -_.!#$%%&'*+^`|~", name)
	}
	return nil
}

// CheckCookieDomain accepts "" (host-only) or a DNS name, optionally with a
// leading dot.
func CheckCookieDomain(domain string) error {
	if domain == "" {
		return nil
	}
	d := strings.TrimPrefix(domain, ".")
	bad := d == "" || len(d) > 253 || !strings.Contains(d, ".") && d != "localhost"
	for label := range strings.SplitSeq(d, ".") {
		bad = bad || label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-'
		for _, c := range []byte(label) {
			bad = bad || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
		}
	}
	if bad {
		return fmt.Errorf("session: invalid cookie domain %q: want a DNS name like example.com", domain)
	}
	return nil
}
