// A real OAuth 2.0 / OpenID Connect authorization server (oidc-provider) for the test suite.
//
// Usage: node server.js [PORT] [--exit-on-stdin-close]
//   PORT (or env PORT) defaults to 0, which picks a free port. The issuer is http://127.0.0.1:<port>.
//   Once listening, prints exactly one line: "oidc-provider ready at http://127.0.0.1:<port>".
//
// Environment (all optional):
//   REDIRECT_URIS            comma-separated callback URLs (default http://127.0.0.1:5000/oauth/callback)
//   ACCESS_TOKEN_TTL         seconds (default 60)
//   CLIENT_CREDENTIALS_TTL   seconds (default 60)
//   REFRESH_TOKEN_TTL        seconds (default 86400)
//   ID_TOKEN_TTL             seconds (default 3600)
//
// Test-only endpoints: GET /__stats (request counters as JSON), POST /__stats/reset.
// State is in memory only and lost on restart.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const port = Number(args.find((arg) => /^\d+$/.test(arg)) ?? process.env.PORT ?? 0);
const exitOnStdinClose = args.includes('--exit-on-stdin-close');

const seconds = (name, fallback) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
};

const ttl = {
  AccessToken: seconds('ACCESS_TOKEN_TTL', 60),
  AuthorizationCode: 60,
  ClientCredentials: seconds('CLIENT_CREDENTIALS_TTL', 60),
  IdToken: seconds('ID_TOKEN_TTL', 3600),
  RefreshToken: seconds('REFRESH_TOKEN_TTL', 24 * 3600),
  Grant: 14 * 24 * 3600,
  Interaction: 3600,
  Session: 14 * 24 * 3600,
};

const redirectUris = (process.env.REDIRECT_URIS || 'http://127.0.0.1:5000/oauth/callback')
  .split(',').map((uri) => uri.trim()).filter(Boolean);

const SCOPES = ['openid', 'offline_access', 'api:read', 'api:write'];
const scope = SCOPES.join(' ');
const codeGrants = ['authorization_code', 'refresh_token'];

const clients = [
  {
    client_id: 'basic-client',
    client_secret: 'basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', ...codeGrants],
  },
  {
    client_id: 'post-client',
    client_secret: 'post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials', ...codeGrants],
  },
  {
    client_id: 'public-client',
    token_endpoint_auth_method: 'none',
    grant_types: codeGrants,
  },
  {
    client_id: 'confidential-pkce-client',
    client_secret: 'confidential-pkce-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: codeGrants,
  },
].map((client) => ({
  ...client, redirect_uris: redirectUris, response_types: ['code'], scope,
}));

// PKCE is mandatory for these clients; the others may use it but need not.
const PKCE_REQUIRED = new Set(['public-client', 'confidential-pkce-client']);

// One fresh RSA key per run signs ID tokens.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

// oidc-provider's default endpoint paths.
const routes = {
  authorization: '/auth', token: '/token', revocation: '/token/revocation', introspection: '/token/introspection',
};

const newStats = () => ({
  token: 0, token_by_grant_type: {}, revocation: 0, introspection: 0, authorization: 0,
});
let stats = newStats();

const server = http.createServer();

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients,
    scopes: SCOPES,
    responseTypes: ['code'],
    ttl,
    jwks: { keys: [signingKey] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none'
          || token.clientId === client.clientId,
      },
    },
    pkce: { required: (ctx, client) => PKCE_REQUIRED.has(client.clientId) },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    clientBasedCORS: () => true,
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>oops</title><pre>${JSON.stringify(out)
        .replace(/</g, '&lt;')}</pre>`;
    },
  });

  // Count the requests that reach the token, revocation, introspection and authorization endpoints.
  provider.use(async (ctx, next) => {
    try {
      await next();
    } finally {
      if (ctx.path === routes.token && ctx.method === 'POST') {
        const grantType = ctx.oidc?.params?.grant_type || 'unknown';
        stats.token += 1;
        stats.token_by_grant_type[grantType] = (stats.token_by_grant_type[grantType] || 0) + 1;
      } else if (ctx.path === routes.revocation && ctx.method === 'POST') {
        stats.revocation += 1;
      } else if (ctx.path === routes.introspection && ctx.method === 'POST') {
        stats.introspection += 1;
      } else if (ctx.path === routes.authorization) {
        stats.authorization += 1;
      }
    }
  });

  const handle = provider.callback();
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/__stats' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(stats));
    } else if (path === '/__stats/reset' && req.method === 'POST') {
      stats = newStats();
      res.writeHead(204);
      res.end();
    } else {
      handle(req, res);
    }
  });

  console.log(`oidc-provider ready at ${issuer}`);
});

if (exitOnStdinClose) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
