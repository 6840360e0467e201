// A real OpenID provider (the certified `oidc-provider` package) configured
// like Amazon Cognito for tests/oidc.rs: one confidential client with a
// secret, PKCE required, email + email_verified in the ID token, no dev
// interactions. The tiny login/consent interaction below stands in for the
// provider's sign-in page: a form that takes an account name, and an
// automatic consent.
//
// Environment: PORT, REDIRECT_URIS (comma-separated), ISS_AUTH_RESP: `off`
// makes it a provider without RFC 9207 (the library always has it, so the
// discovery field and the `iss` of authorization responses are removed).
// Like Cognito, it accepts only authenticated clients at /token (no `none`).
// Test control: GET /_test/fault?mode=<m>&delay=<ms>, where mode is one of
// none, wrong-issuer, expired, wrong-nonce, unknown-kid, bad-signature,
// wrong-audience, rotated (a new key, also published in /jwks),
// schemeless-issuer (`iss` without `http://`). The ID token
// in /token answers is then re-signed with that fault (the library itself is
// not modified), and /token waits `delay` ms.

import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const issAuthResp = process.env.ISS_AUTH_RESP !== 'off';

const main = await jose.generateKeyPair('RS256', { extractable: true });
const mainJwk = { ...(await jose.exportJWK(main.privateKey)), kid: 'main', alg: 'RS256', use: 'sig' };
const other = await jose.generateKeyPair('RS256', { extractable: true });

// Entra-like accounts (erin, frank) send no email_verified, but a
// preferred_username and an upn.
const accounts = {
  alice: { email: 'alice@example.com', verified: true, name: 'Alice Example', groups: ['staff'] },
  bob: { email: 'bob@other.example', verified: true, name: 'Bob Other', groups: [] },
  carol: { email: 'carol@example.com', verified: false, name: 'Carol Unverified', groups: ['staff'] },
  dave: { email: 'dave@example.com', verified: true, name: 'Dave Nogroup', groups: [] },
  erin: {
    email: 'erin@contoso.example', name: 'Erin Entra', groups: ['staff'],
    preferred_username: 'erin.e@contoso.example', upn: 'erin.e@contoso.example',
  },
  frank: { name: 'Frank Only-Name', groups: ['staff'] },
};

let fault = 'none';
let delayMs = 0;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'passgate',
      client_secret: 'test-secret',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [mainJwk] },
  cookies: { keys: ['test-cookie-key'] },
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  claims: {
    openid: ['sub', 'cognito:groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'upn'],
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) =>
    accounts[id] && {
      accountId: id,
      claims: async () => ({
        sub: id,
        email: accounts[id].email,
        email_verified: accounts[id].verified,
        name: accounts[id].name,
        preferred_username: accounts[id].preferred_username,
        upn: accounts[id].upn,
        'cognito:groups': accounts[id].groups,
      }),
    },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

async function tamper(token) {
  const payload = jose.decodeJwt(token);
  const now = Math.floor(Date.now() / 1000);
  let key = main.privateKey;
  let kid = 'main';
  switch (fault) {
    case 'wrong-issuer': payload.iss = 'http://evil.example'; break;
    case 'wrong-audience': payload.aud = 'someone-else'; break;
    case 'expired': payload.iat = now - 7200; payload.exp = now - 3600; break;
    case 'wrong-nonce': payload.nonce = 'not-the-nonce'; break;
    case 'unknown-kid': key = other.privateKey; kid = 'unknown'; break;
    case 'bad-signature': key = other.privateKey; break;
    case 'rotated': key = other.privateKey; kid = 'rotated'; break;
    case 'schemeless-issuer': payload.iss = issuer.replace(/^https?:\/\//, ''); break;
    default: return token;
  }
  return new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid }).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/token' && delayMs > 0) {
    await new Promise((r) => setTimeout(r, delayMs));
  }
  await next();
  if (!issAuthResp) {
    if (ctx.path === '/.well-known/openid-configuration' && ctx.body) {
      delete ctx.body.authorization_response_iss_parameter_supported;
    }
    const location = ctx.response.get('location');
    if (location && redirectUris.some((u) => location.startsWith(u))) {
      const u = new URL(location);
      u.searchParams.delete('iss');
      ctx.response.set('location', u.href);
    }
  }
  if (ctx.path === '/token' && fault !== 'none' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token) };
  }
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

async function interaction(req, res, action) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    if (action === 'login' && req.method === 'POST') {
      const login = new URLSearchParams(await readBody(req)).get('login');
      if (accounts[login]) {
        return provider.interactionFinished(req, res, { login: { accountId: login } }, {
          mergeWithLastSubmission: false,
        });
      }
    }
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${uid}/login"><input name="login"><button>Sign in</button></form>
<form method="post" action="/interaction/${uid}/abort"><button>Cancel</button></form>`);
    return;
  }
  // Consent: approved automatically.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const d = prompt.details;
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  if (d.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, {
    mergeWithLastSubmission: true,
  });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/_test/fault') {
    fault = url.searchParams.get('mode') || 'none';
    delayMs = Number(url.searchParams.get('delay') || 0);
    res.end('ok');
    return;
  }
  if (url.pathname === '/jwks' && fault === 'rotated') {
    // The provider has rotated to a new key and publishes both.
    const pub = async (k, kid) => ({ ...(await jose.exportJWK(k)), kid, alg: 'RS256', use: 'sig' });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [await pub(main.publicKey, 'main'), await pub(other.publicKey, 'rotated')] }));
    return;
  }
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (m) {
    try {
      await interaction(req, res, m[2]);
    } catch (e) {
      res.statusCode = 400;
      res.end(String(e));
    }
    return;
  }
  callback(req, res);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
