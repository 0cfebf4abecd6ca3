// The OpenID provider the browser suite runs gatehouse against: the npm
// package oidc-provider (OpenID Certified), configured for the tests.
// Everything comes from the environment the Go suite sets:
//
//   E2E_ISSUER          issuer URL, e.g. http://localhost:41234
//   E2E_PORT            port to listen on (127.0.0.1 only)
//   E2E_REDIRECT_URIS   space-separated redirect URIs of the gatehouse clients
//   E2E_LOGOUT_URIS     space-separated post-logout redirect URIs
//   E2E_CLIENT_SECRET   secret of the gatehouse clients
//   E2E_ALG             signing algorithm: RS256 (default) or ES256
//   E2E_AT_TTL          access-token lifetime in seconds (default 3600)
//   E2E_API_AUDIENCE    resource (audience) of JWT access tokens (default api://e2e)
//
// Users: any login name works at the development login page; alice is in
// groups admins and staff, everyone else in staff. The provider logs one
// line per token-endpoint grant to stdout ("grant <type>"), which the suite
// counts.
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] ?? fallback;
const issuer = env('E2E_ISSUER');
const port = Number(env('E2E_PORT'));
if (!issuer || !port) {
  console.error('E2E_ISSUER and E2E_PORT are required');
  process.exit(2);
}
const alg = env('E2E_ALG', 'RS256');
const secret = env('E2E_CLIENT_SECRET', 'gatehouse-e2e-secret');
const redirectURIs = env('E2E_REDIRECT_URIS', '').split(' ').filter(Boolean);
const logoutURIs = env('E2E_LOGOUT_URIS', '').split(' ').filter(Boolean);
const accessTTL = Number(env('E2E_AT_TTL', '3600'));
const apiAudience = env('E2E_API_AUDIENCE', 'api://e2e');

// A fresh signing key per run; no private key is committed.
function signingKey() {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `e2e-${alg}-${Date.now()}` };
}

const client = (id, method) => ({
  client_id: id,
  client_secret: secret,
  token_endpoint_auth_method: method,
  redirect_uris: redirectURIs,
  post_logout_redirect_uris: logoutURIs,
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  id_token_signed_response_alg: alg,
});

const configuration = {
  clients: [
    client('gatehouse-basic', 'client_secret_basic'),
    client('gatehouse-post', 'client_secret_post'),
  ],
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'orders:read'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.com`,
          email_verified: true,
          name: id.charAt(0).toUpperCase() + id.slice(1),
          preferred_username: id,
          groups: id === 'alice' ? ['admins', 'staff'] : ['staff'],
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Logins get the default (opaque) access token, good at userinfo;
      // a token requested for the API resource is a JWT for it.
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== apiAudience) {
          throw new Error(`unknown resource ${resource}`);
        }
        return {
          scope: 'orders:read',
          audience: apiAudience,
          accessTokenTTL: accessTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  enabledJWA: {
    idTokenSigningAlgValues: [alg],
  },
  ttl: {
    AccessToken: accessTTL,
    ClientCredentials: accessTTL,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 3600,
  },
  rotateRefreshToken: true,
};

const provider = new Provider(issuer, configuration);
provider.on('grant.success', (ctx) => {
  console.log(`grant ${ctx.oidc.params.grant_type}`);
});
provider.on('server_error', (_ctx, err) => {
  console.error('server_error', err);
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
