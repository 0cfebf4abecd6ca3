package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// accessClaims is the payload of an access token (RFC 9068 shape).
type accessClaims struct {
	Issuer            string   `json:"iss"`
	Subject           string   `json:"sub"`
	Audience          []string `json:"aud"`
	Expiry            int64    `json:"exp"`
	IssuedAt          int64    `json:"iat"`
	JTI               string   `json:"jti"`
	ClientID          string   `json:"client_id"`
	Scope             string   `json:"scope"`
	Email             string   `json:"email,omitempty"`
	EmailVerified     *bool    `json:"email_verified,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups"`
	// The claims of Config.RealisticAccessTokens; nil adds none.
	*providerClaims
}

// providerClaims are claims real providers put into access tokens beyond
// the RFC 9068 set (Config.RealisticAccessTokens), in Keycloak's shape.
// gatehouse reads none of them; they give the tokens a realistic size.
type providerClaims struct {
	Type            string           `json:"typ"`
	AuthorizedParty string           `json:"azp"`
	SID             string           `json:"sid"`
	ACR             string           `json:"acr"`
	AllowedOrigins  []string         `json:"allowed-origins"`
	RealmAccess     roles            `json:"realm_access"`
	ResourceAccess  map[string]roles `json:"resource_access"`
}

// roles is a Keycloak realm_access or resource_access entry.
type roles struct {
	Roles []string `json:"roles"`
}

// providerClaimsFor returns the realistic extra claims of an access token
// for clientID; g is the login it comes from (nil when minted without
// one, which then gets a fresh session id).
func (p *Provider) providerClaimsFor(clientID string, g *grant) *providerClaims {
	sid := newUUID()
	if g != nil {
		sid = g.sid
	}
	return &providerClaims{
		Type:            "Bearer",
		AuthorizedParty: clientID,
		SID:             sid,
		ACR:             "1",
		AllowedOrigins:  []string{p.origin},
		RealmAccess:     roles{[]string{"offline_access", "uma_authorization"}},
		ResourceAccess:  map[string]roles{"account": {[]string{"manage-account", "view-profile"}}},
	}
}

// newUUID returns a random UUID (version 4) in its textual form, the
// shape of Keycloak's jti and sid.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// idClaims is the payload of an ID token.
type idClaims struct {
	Issuer          string `json:"iss"`
	Subject         string `json:"sub"`
	Audience        string `json:"aud"`
	AuthorizedParty string `json:"azp"`
	Expiry          int64  `json:"exp"`
	IssuedAt        int64  `json:"iat"`
	AuthTime        int64  `json:"auth_time"`
	ACR             string `json:"acr,omitempty"`
	Nonce           string `json:"nonce,omitempty"`
	SID             string `json:"sid"`
	AccessTokenHash string `json:"at_hash,omitempty"`
	profile
}

// profile is the user's claims, in ID tokens and userinfo responses alike.
type profile struct {
	Email             string   `json:"email,omitempty"`
	EmailVerified     *bool    `json:"email_verified,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups"`
}

// profileOf is u's profile claims.
func profileOf(u *User) profile {
	return profile{
		Email:             u.Email,
		EmailVerified:     emailVerified(u),
		Name:              u.Name,
		PreferredUsername: u.PreferredUsername,
		Groups:            groupsOf(u),
	}
}

// userinfoResponse is the body of a userinfo response.
type userinfoResponse struct {
	Subject string `json:"sub"`
	profile
}

// grant is what a code or refresh token stands for: one login of one user
// at one client.
type grant struct {
	clientID string
	user     *User
	scope    []string
	nonce    string // authorization code grants only
	sid      string
	authTime time.Time
	acr      string // the ID token's acr: how the user authenticated
}

// randomToken returns n random bytes, base64url-encoded without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// groupsOf returns a non-nil copy of u's groups, so the claim is always an
// array.
func groupsOf(u *User) []string {
	if u == nil || len(u.Groups) == 0 {
		return []string{}
	}
	return append([]string(nil), u.Groups...)
}

// emailVerified returns the email_verified claim: true when u has an email.
func emailVerified(u *User) *bool {
	if u == nil || u.Email == "" {
		return nil
	}
	t := true
	return &t
}

// accessAudience returns the aud of access tokens issued to c.
func accessAudience(c *Client) []string {
	aud := []string{c.ID}
	if c.Audience != "" && c.Audience != c.ID {
		aud = append(aud, c.Audience)
	}
	return aud
}

// mintAccess signs an access token for sub (user may be nil for an unknown
// subject); g is the login it is issued for, nil when minted without one.
func (p *Provider) mintAccess(sub string, user *User, g *grant, clientID string, aud, scope []string, now time.Time, ttl time.Duration) (string, error) {
	c := accessClaims{
		Issuer:   p.issuer,
		Subject:  sub,
		Audience: aud,
		Expiry:   now.Add(ttl).Unix(),
		IssuedAt: now.Unix(),
		JTI:      randomToken(16),
		ClientID: clientID,
		Scope:    strings.Join(scope, " "),
		Groups:   groupsOf(user),
	}
	if user != nil {
		c.Email, c.EmailVerified = user.Email, emailVerified(user)
		c.PreferredUsername = user.PreferredUsername
	}
	if p.realistic {
		c.JTI = newUUID()
		c.providerClaims = p.providerClaimsFor(clientID, g)
	}
	return p.sign(c, typAccessToken)
}

// mintID signs an ID token for g, bound to accessToken by at_hash.
func (p *Provider) mintID(g *grant, nonce, accessToken string, now time.Time) (string, error) {
	c := idClaims{
		Issuer:          p.issuer,
		Subject:         g.user.Subject,
		Audience:        g.clientID,
		AuthorizedParty: g.clientID,
		Expiry:          now.Add(p.idTTL).Unix(),
		IssuedAt:        now.Unix(),
		AuthTime:        g.authTime.Unix(),
		ACR:             g.acr,
		Nonce:           nonce,
		SID:             g.sid,
		AccessTokenHash: leftHalfHash(accessToken),
		profile:         profileOf(g.user),
	}
	return p.sign(c, typIDToken)
}

// leftHalfHash is the at_hash of token: the left half of its SHA-256,
// base64url-encoded (OpenID Connect Core §3.1.3.6, for RS256 and ES256).
func leftHalfHash(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// MintAccessToken signs an access token with the current key, in the same
// shape the token endpoint issues: aud = audience, client_id =
// audience[0], scope = scopes joined by spaces, and, when sub names a
// configured user, that user's email, preferred_username and groups. An
// unknown sub is allowed (the token then carries no profile claims).
// A zero ttl selects the configured access token TTL; a negative ttl mints an
// already expired token. With Config.RealisticAccessTokens the token also
// carries the provider-style claims, with a fresh session id. Test and
// benchmark helper: it skips the login.
func (p *Provider) MintAccessToken(sub string, audience []string, scopes []string, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", errors.New("devidp: mint: subject is required")
	}
	if len(audience) == 0 || audience[0] == "" {
		return "", errors.New("devidp: mint: at least one audience is required")
	}
	if ttl == 0 {
		ttl = p.accessTTL
	}
	return p.mintAccess(sub, p.users[sub], nil, audience[0], append([]string(nil), audience...),
		append([]string(nil), scopes...), p.now(), ttl)
}

// backchannelLogoutEvent is the events member of a logout token.
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// MintLogoutToken signs a back-channel logout token (OpenID Connect
// Back-Channel Logout 1.0 §2.4) for clientID, naming the provider
// session sid and/or the subject sub, typ logout+jwt. Test helper:
// devidp does not deliver logout tokens itself.
func (p *Provider) MintLogoutToken(clientID, sub, sid string) (string, error) {
	if clientID == "" || sub == "" && sid == "" {
		return "", errors.New("devidp: mint: a client and a subject or session are required")
	}
	now := p.now()
	claims := map[string]any{
		"iss": p.issuer, "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomToken(16), "events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	return p.sign(claims, "logout+jwt")
}
