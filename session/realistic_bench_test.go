package session

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// jwtOfSize is a JWT-shaped token of about n bytes: three base64url
// segments of random bytes (a signature and claims that do not compress),
// as Keycloak, Entra ID and Auth0 issue them.
func jwtOfSize(n int) string {
	seg := func(k int) string {
		b := make([]byte, k)
		rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	sig := seg(256) // RS256
	return seg(60) + "." + seg((n-len(sig)-82)*3/4) + "." + sig
}

// keycloakSession is what a login at a Keycloak-like provider leaves: a
// 1.2 KB JWT access token, a 1 KB ID token, a 700-byte JWT refresh token,
// and 30 groups (department-NNN-…, as directory groups are named).
func keycloakSession(groups int) *Session {
	s := testSession(epoch)
	s.AccessToken, s.IDToken, s.RefreshToken = jwtOfSize(1200), jwtOfSize(1000), jwtOfSize(700)
	s.Groups = nil
	for i := range groups {
		s.Groups = append(s.Groups, fmt.Sprintf("department-%03d-engineering-group", i))
	}
	return s
}

// benchRealistic decodes (no cache) the cookie of a Keycloak-like session,
// with or without the access token, and reports the cookie's size.
func benchRealistic(b *testing.B, groups int, accessToken bool) {
	c := &clock{epoch}
	m, err := New(Options{Secrets: [][]byte{secretA}, Now: c.now, Lifetime: DefaultLifetime, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	s := keycloakSession(groups)
	if !accessToken {
		s.AccessToken = ""
	}
	cookies := save(b, m, request(nil), s)
	var header []string
	for _, c := range cookies {
		header = append(header, c.Name+"="+c.Value)
	}
	r := request(cookies)
	r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Load(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(strings.Join(header, "; "))), "cookie-bytes")
	b.ReportMetric(float64(len(cookies)), "chunks")
}

func BenchmarkRealisticSession(b *testing.B)              { benchRealistic(b, 2, false) }
func BenchmarkRealisticSessionAccessToken(b *testing.B)   { benchRealistic(b, 2, true) }
func BenchmarkRealisticSession30Groups(b *testing.B)      { benchRealistic(b, 30, false) }
func BenchmarkRealisticSession30GroupsToken(b *testing.B) { benchRealistic(b, 30, true) }
