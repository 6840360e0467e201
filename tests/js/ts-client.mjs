// The official TypeScript MCP SDK as a real OAuth client of passgate.
//
// Run by tests/real_clients.rs, which starts passgate, signs a person in with
// a software passkey and passes the browser session cookie here. Playing the
// browser, redirectToAuthorization follows /authorize to the consent page and
// approves it; the SDK does everything else itself: discovery, dynamic
// registration, PKCE, the token exchange, the MCP calls and the refresh.
//
// Usage: node ts-client.mjs <mcp url> <session cookie>
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [mcpUrl, cookie] = process.argv.slice(2);
assert.ok(mcpUrl && cookie, "usage: node ts-client.mjs <mcp url> <session cookie>");
const origin = new URL(mcpUrl).origin;
const redirectUrl = "http://127.0.0.1:33418/callback";

// Approves the consent page as the signed-in person would, and returns the
// parameters passgate sent back to the redirect URI.
async function approve(authorizationUrl) {
  let res = await fetch(authorizationUrl, { redirect: "manual", headers: { cookie } });
  assert.equal(res.status, 303, `authorize answered ${res.status}`);
  const consentUrl = new URL(res.headers.get("location"), origin);
  res = await fetch(consentUrl, { redirect: "manual", headers: { cookie } });
  assert.equal(res.status, 200, `consent page answered ${res.status}`);
  const html = await res.text();
  assert.match(html, /Allow <strong>passgate TS test client<\/strong>/);
  const field = (name) => html.match(new RegExp(`name="${name}" value="([^"]+)"`))[1];
  res = await fetch(new URL("/consent", origin), {
    method: "POST",
    redirect: "manual",
    headers: { cookie, "content-type": "application/x-www-form-urlencoded", origin },
    body: new URLSearchParams({ request: field("request"), csrf: field("csrf"), decision: "approve" }),
  });
  assert.equal(res.status, 303, `consent decision answered ${res.status}`);
  const back = new URL(res.headers.get("location"));
  assert.equal(`${back.origin}${back.pathname}`, redirectUrl);
  return back.searchParams;
}

let clientInformation;
let tokens;
let codeVerifier;
let tokenSaves = 0;
let lastRedirect;
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: "passgate TS test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  state: () => "ts-state-123",
  clientInformation: () => clientInformation,
  saveClientInformation: (info) => { clientInformation = info; },
  tokens: () => tokens,
  saveTokens: (t) => { tokens = t; tokenSaves += 1; },
  redirectToAuthorization: async (url) => { lastRedirect = await approve(url); },
  saveCodeVerifier: (v) => { codeVerifier = v; },
  codeVerifier: () => codeVerifier,
};

async function connect() {
  const client = new Client({ name: "passgate-ts-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  return { client, transport };
}

// First attempt: no token, so the SDK discovers, registers and redirects.
try {
  await connect();
  assert.fail("connecting without a token must need authorization");
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
}
assert.ok(clientInformation?.client_id, "the SDK registered a client");
assert.equal(lastRedirect.get("state"), "ts-state-123");
assert.equal(lastRedirect.get("iss"), origin, "RFC 9207 iss in the authorization response");
{
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await transport.finishAuth(lastRedirect.get("code"));
}
assert.ok(tokens?.access_token && tokens?.refresh_token, "tokens were issued");

let { client } = await connect();
const sum = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
assert.equal(sum.structuredContent.result, 42);
const big = await client.callTool({ name: "add", arguments: { a: Number.MAX_SAFE_INTEGER, b: 1 } });
assert.equal(big.structuredContent.result, Number.MAX_SAFE_INTEGER + 1);
const notAnInteger = await client.callTool({ name: "add", arguments: { a: 1.5, b: 1 } }).then(
  (r) => r.isError === true,
  (e) => e.code === -32602,
);
assert.ok(notAnInteger, "a non-integer argument is refused, not rounded");
await client.close();

// Make the access token unusable: the SDK must refresh (rotating the
// refresh token) and carry on.
const oldRefresh = tokens.refresh_token;
tokens = { ...tokens, access_token: "expired-or-garbage" };
const savesBefore = tokenSaves;
({ client } = await connect());
const again = await client.callTool({ name: "add", arguments: { a: -5, b: 3 } });
assert.equal(again.structuredContent.result, -2);
assert.ok(tokenSaves > savesBefore, "the SDK refreshed its tokens");
assert.notEqual(tokens.refresh_token, oldRefresh, "the refresh token was rotated");
await client.close();

console.log(JSON.stringify({ ok: true, client_id: clientInformation.client_id, refresh_token: tokens.refresh_token }));
