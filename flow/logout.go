package flow

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-auth/gatehouse/internal/httpx"
)

// EndSessionURL returns the provider's RP-initiated logout URL (OpenID
// Connect RP-Initiated Logout 1.0): id_token_hint when idToken is known,
// else client_id; post_logout_redirect_uri; a fresh state. ok is false
// when the provider has no end_session_endpoint.
func (c *Client) EndSessionURL(ctx context.Context, idToken, postLogoutRedirect string) (u string, ok bool) {
	meta, err := c.p.Metadata(ctx)
	if err != nil || meta.Endpoints.EndSession == "" {
		return "", false
	}
	q := url.Values{}
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	} else {
		q.Set("client_id", c.opts.ClientID)
	}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
		if idToken != "" {
			q.Set("client_id", c.opts.ClientID)
		}
	}
	q.Set("state", rand.Text())
	sep := "?"
	if strings.Contains(meta.Endpoints.EndSession, "?") {
		sep = "&"
	}
	return meta.Endpoints.EndSession + sep + q.Encode(), true
}

// Revoke asks the provider to revoke token (RFC 7009), when it has a
// revocation endpoint. It is best effort: errors are returned for logging.
func (c *Client) Revoke(ctx context.Context, token, hint string) error {
	meta, err := c.p.Metadata(ctx)
	if err != nil {
		return err
	}
	if meta.Endpoints.Revocation == "" || token == "" {
		return nil
	}
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	req, err := c.authenticatedPost(httpx.WithEndpoint(ctx, httpx.EndpointRevocation), meta.Endpoints.Revocation, form)
	if err != nil {
		return err
	}
	resp, err := c.p.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("flow: revocation: %w", err)
	}
	if _, err := httpx.ReadAll(resp); err != nil {
		return fmt.Errorf("flow: revocation: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("flow: revocation endpoint answered %d", resp.StatusCode)
	}
	return nil
}
