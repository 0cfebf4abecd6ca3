package verify

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestAccessToken: the DPoP scheme gives its token with dpop true, as
// strictly as Bearer is read; Bearer is BearerToken's.
func TestAccessToken(t *testing.T) {
	tok := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	for _, tc := range []struct {
		name    string
		values  []string
		token   string
		dpop    bool
		wantErr error
	}{
		{"none", nil, "", false, ErrNoToken},
		{"Basic", []string{"Basic YTpi"}, "", false, ErrNoToken},
		{"Bearer", []string{"Bearer " + tok}, tok, false, nil},
		{"DPoP", []string{"DPoP " + tok}, tok, true, nil},
		{"dpop in any case", []string{"dPoP " + tok}, tok, true, nil},
		{"DPoP alone", []string{"DPoP"}, "", false, ErrMalformedAuthorization},
		{"DPoP with a tab", []string{"DPoP\t" + tok}, "", false, ErrMalformedAuthorization},
		{"two DPoP tokens", []string{"DPoP " + tok + " " + tok}, "", false, ErrMalformedAuthorization},
		{"DPoP in a list", []string{"Basic YTpi, DPoP " + tok}, "", false, ErrMalformedAuthorization},
		{"two headers", []string{"DPoP " + tok, "DPoP " + tok}, "", false, ErrMalformedAuthorization},
		{"Bearer and DPoP", []string{"Bearer " + tok, "DPoP " + tok}, "", false, ErrMalformedAuthorization},
		{"oversized", []string{"DPoP " + strings.Repeat("a", maxAuthorization)}, "", false, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, dpop, err := AccessToken(http.Header{"Authorization": tc.values})
			if token != tc.token || dpop != tc.dpop || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("AccessToken = %q, %v, %v; want %q, %v, %v", token, dpop, err, tc.token, tc.dpop, tc.wantErr)
			}
		})
	}
}
