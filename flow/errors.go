package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// Errors of a login callback. Those from the user's side (a forged,
// replayed or stale callback) are ErrStateMismatch, ErrIssuerMismatch,
// ErrMissingCode and *ProviderError; those from the provider's side are
// ErrProviderUnavailable, *ExchangeError, ErrTokenResponse, ErrIDToken and
// ErrUserinfo.
var (
	ErrStateMismatch  = errors.New("flow: no login in progress matches this callback's state")
	ErrIssuerMismatch = errors.New("flow: the callback's iss parameter is not the issuer (RFC 9207)")
	// ErrACR: the ID token's acr or auth_time is not what the login asked
	// for (acr_values, max_age).
	ErrACR           = errors.New("flow: the user did not authenticate as the login asked")
	ErrMissingCode   = errors.New("flow: the callback carries no authorization code")
	ErrTokenResponse = errors.New("flow: unusable token response")
	ErrIDToken       = errors.New("flow: ID token rejected")
	ErrUserinfo      = errors.New("flow: userinfo response rejected")
)

// ProviderError is an error the provider returned in the authorization
// response (RFC 6749 §4.1.2.1), e.g. access_denied when the user cancels.
type ProviderError struct {
	// Code is the error code, or "invalid_error" when the provider sent
	// one that is not a valid RFC 6749 error code.
	Code string
	// Description is the provider's error_description, kept only when it
	// is plain text within the RFC 6749 character set.
	Description string
}

func (e *ProviderError) Error() string {
	return "flow: the provider returned error " + e.Code
}

func newProviderError(code, desc string) *ProviderError {
	if !errorCode(code) {
		code = "invalid_error"
	}
	if !errorDescription(desc) {
		desc = ""
	}
	return &ProviderError{Code: code, Description: desc}
}

// errorCode accepts the error codes providers really send: letters,
// digits, "_", "." and "-" (a subset of RFC 6749's set), up to 64 bytes.
func errorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// errorDescription checks an error_description against RFC 6749 §4.1.2.1
// (%x20-21 / %x23-5B / %x5D-7E), capped at 256 bytes.
func errorDescription(s string) bool {
	if len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ExchangeError is a token endpoint refusal (RFC 6749 §5.2).
type ExchangeError struct {
	// Status is the HTTP status of the token response.
	Status int
	// Code is the OAuth error code, e.g. invalid_grant.
	Code string
}

func (e *ExchangeError) Error() string {
	return fmt.Sprintf("flow: the token endpoint refused the request: %d %s", e.Status, e.Code)
}

// exchangeError classifies an x/oauth2 error: a refusal with a status is an
// *ExchangeError; a transport failure is ErrProviderUnavailable. The raw
// response body is never kept (it might echo secrets).
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if !errorCode(code) {
			code = ""
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if status >= 500 {
			return fmt.Errorf("%w: token endpoint answered %d", ErrProviderUnavailable, status)
		}
		return &ExchangeError{Status: status, Code: code}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) || errors.Is(err, httpx.ErrBodyTooLarge) {
		return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	// x/oauth2 reports unparsable responses and a missing access_token
	// as plain errors.
	return fmt.Errorf("%w: %v", ErrTokenResponse, err)
}

// userinfo fetches the userinfo endpoint with the access token.
func (c *Client) userinfo(ctx context.Context, endpoint, accessToken string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(httpx.WithEndpoint(ctx, httpx.EndpointUserinfo), http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUserinfo, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.p.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %v", ErrProviderUnavailable, err)
	}
	body, err := httpx.ReadAll(resp)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %v", ErrProviderUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrUserinfo, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/jwt" {
		return nil, fmt.Errorf("%w: signed userinfo responses are not supported; configure the client for JSON userinfo", ErrUserinfo)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var info map[string]any
	if err := dec.Decode(&info); err != nil || info == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrUserinfo)
	}
	return info, nil
}
