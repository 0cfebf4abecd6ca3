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
//   E2E_BACKCHANNEL_URI the clients' backchannel_logout_uri (OpenID Connect
//                       Back-Channel Logout 1.0, with sid); none when empty
//   E2E_PKJWT_JWK       a public JWK: adds client gatehouse-pkjwt, which
//                       authenticates with private_key_jwt (ES256) by it
//   E2E_EMAIL_DOMAIN    the domain of the users' e-mails (default
//                       example.com), to tell one provider's users from
//                       another's
//   E2E_GOLD_USERS      space-separated logins that can authenticate with
//                       acr "gold" (default alice); everyone else gets "1"
//
// Step-up: a login asked for acr_values (voluntary, as gatehouse sends
// them) that the provider session does not have shows the login page
// again, like a provider that asks for a second factor; the new session's
// acr is "gold" when asked for and the user has it, else "1".
//
// Users: any login name works at the development login page; a user's
// e-mail is <login>@<E2E_EMAIL_DOMAIN>; alice is in groups admins and
// staff, everyone else in staff. The provider logs lines
// to stdout that the suite counts:
//
//   grant <type>                        a token-endpoint grant succeeded
//   grant-client <type> <client_id>     the same, with the client
//   grant error <type> <error>          a token-endpoint grant was refused
//   grant revoked                       a grant was revoked (logout, refresh-token reuse)
//   backchannel success <client_id>     a back-channel logout was delivered
//   backchannel error <client_id> <why> a back-channel logout failed
//
// A session ends at the provider with its end_session_endpoint
// (/session/end): a GET shows a confirmation page whose button
// name="logout" value="yes" posts the form (to /session/end/confirm); that
// ends the provider's session, revokes its grants and, before redirecting,
// delivers a back-channel logout to every client of the session that has a
// backchannel_logout_uri.
import crypto from 'node:crypto';
import Provider, { interactionPolicy } from 'oidc-provider';

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
const backchannelURI = env('E2E_BACKCHANNEL_URI', '');
const pkjwtJWK = env('E2E_PKJWT_JWK', '');
const emailDomain = env('E2E_EMAIL_DOMAIN', 'example.com');
const goldUsers = env('E2E_GOLD_USERS', 'alice').split(' ').filter(Boolean);

// The base policy, with a login prompt when the client asks for an acr
// the session lacks (unless the user has just logged in: then the
// ID token says what they got).
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'step_up_acr',
  'the session does not have an acr the client asked for',
  (ctx) => {
    const values = ctx.oidc.claims?.id_token?.acr?.values;
    if (!Array.isArray(values) || values.includes(ctx.oidc.acr) || ctx.oidc.result?.login) {
      return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }
    return interactionPolicy.Check.REQUEST_PROMPT;
  },
));

if (backchannelURI) {
  // Test only: the back-channel logout goes to gatehouse over https, and
  // Caddy's `tls internal` certificates come from a CA of its own that this
  // machine does not trust. Only a provider given a back-channel URI turns
  // certificate checks off, and all it calls is that gatehouse on 127.0.0.1.
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
}

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
  ...(backchannelURI ? {
    backchannel_logout_uri: backchannelURI,
    backchannel_logout_session_required: true,
  } : {}),
});

const configuration = {
  clients: [
    client('gatehouse-basic', 'client_secret_basic'),
    client('gatehouse-post', 'client_secret_post'),
    ...(pkjwtJWK ? [{
      ...client('gatehouse-pkjwt', 'private_key_jwt'),
      client_secret: undefined,
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [JSON.parse(pkjwtJWK)] },
    }] : []),
  ],
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  acrValues: ['1', 'gold'],
  interactions: { policy },
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
          email: `${id}@${emailDomain}`,
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
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    // For the API tests: opaque access tokens checked by introspection
    // (RFC 7662) and revoked (RFC 7009) by any of the confidential
    // clients. DPoP (RFC 9449) is on by default: a token request with a
    // DPoP proof gets a token bound to its key (cnf.jkt).
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true, allowedPolicy: async () => true },
    dPoP: { enabled: true },
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
  // oidc-provider refuses outgoing calls to special-use addresses (SSRF
  // protection, by the dispatcher it passes in), loopback included; the
  // test's gatehouse listens on 127.0.0.1 only, so the back-channel call
  // goes without it. Nothing else is fetched by this provider.
  ...(backchannelURI ? {
    fetch: (url, { dispatcher: _ssrfGuard, ...options }) => globalThis.fetch(url, options),
  } : {}),
};

const provider = new Provider(issuer, configuration);
// The development login page finishes its interaction here: the login
// gets its acr.
const finishInteraction = provider.interactionFinished.bind(provider);
provider.interactionFinished = async (req, res, result, options) => {
  if (result?.login) {
    const { params } = await provider.interactionDetails(req, res);
    const asked = String(params.acr_values ?? '').split(' ');
    result.login.acr = asked.includes('gold') && goldUsers.includes(result.login.accountId) ? 'gold' : '1';
  }
  return finishInteraction(req, res, result, options);
};
provider.on('grant.success', (ctx) => {
  console.log(`grant ${ctx.oidc.params.grant_type}`);
  console.log(`grant-client ${ctx.oidc.params.grant_type} ${ctx.oidc.client?.clientId}`);
});
provider.on('grant.error', (ctx, err) => {
  console.log(`grant error ${ctx.oidc.params?.grant_type} ${err.error ?? err.message}`);
});
provider.on('grant.revoked', () => {
  console.log('grant revoked');
});
provider.on('backchannel.success', (_ctx, client) => {
  console.log(`backchannel success ${client.clientId}`);
});
provider.on('backchannel.error', (_ctx, err, client) => {
  console.log(`backchannel error ${client.clientId} ${err.message}${err.cause ? `: ${err.cause.message ?? err.cause}` : ''}`);
});
provider.on('server_error', (_ctx, err) => {
  console.error('server_error', err);
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
