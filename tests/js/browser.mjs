// passgate in a real browser: headless Chromium (Debian's package) with the
// DevTools virtual authenticator, driven by playwright-core.
//
// Run by tests/browser.rs, which starts passgate on http://localhost:<port>
// (WebAuthn refuses IP origins) and creates an administrator's invitation.
// The person: enrolls from the invitation link, looks at the admin page
// (giving herself groups), finds the MCP URL, its copy button and the
// per-client steps on the account page, signs out, signs in with the passkey from autofill (conditional mediation)
// and, in a second browser profile, with the button, approves an MCP client
// on the consent page, sees it on the account page and disconnects it. The
// MCP client (plain fetch from here): registers, exchanges the code with its
// PKCE verifier, calls the `add` tool, and after the disconnect finds its
// refresh token refused (invalid_grant) and its access token rejected (401).
// Then a gateway route with personal keys (the TypeScript SDK's server behind
// it): the official SDK client is refused with a URL elicitation naming the
// account page; there the person saves their key (the backend then receives
// exactly it), replaces it and removes it (the client is refused again).
//
// Every page visited is saved as a PNG in <artifact dir>. The last line of
// stdout is {"ok":true,...} or {"ok":false,"error":...}; progress goes to
// stderr.
//
// Usage: node browser.mjs <base url> <invitation link> <artifact dir> <keyed route URL>
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [base, inviteLink, artifactDir, keyedUrl] = process.argv.slice(2);
assert.ok(
  base && inviteLink && artifactDir && keyedUrl,
  "usage: node browser.mjs <base url> <invitation link> <artifact dir> <keyed route URL>",
);
assert.match(base, /^http:\/\/localhost:\d+$/, "use http://localhost:PORT: WebAuthn refuses IP origins");
mkdirSync(artifactDir, { recursive: true });

const CHROMIUM = process.env.PASSGATE_CHROMIUM || "/usr/bin/chromium";
// Generous but bounded: a page of passgate answers in milliseconds.
const STEP_TIMEOUT_MS = 15_000;
const WHOLE_RUN_MS = 120_000;
const CLIENT_NAME = "Browser Test Client";
// Nothing listens here: the browser's request to it is intercepted.
const CALLBACK = "http://127.0.0.1:47813/callback";

const started = Date.now();
const log = (msg) => console.error(`[browser ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const watchdog = setTimeout(() => {
  finish({ ok: false, error: `the run took longer than ${WHOLE_RUN_MS / 1000} s` });
  process.exit(1);
}, WHOLE_RUN_MS);

let step = "starting";
const screenshots = [];
const problems = []; // console errors, CSP violations, uncaught exceptions
let browser;

function finish(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// --- the browser ---

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (e) => problems.push(`${label}: uncaught ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const where = m.location()?.url || "";
    // The browser's own favicon probe is not ours to answer.
    if (where.endsWith("/favicon.ico")) return;
    // Error pages are loaded on purpose; their status is logged, not a fault.
    if (/status of (400|410)/.test(m.text())) return;
    problems.push(`${label}: ${m.text()} (${where})`);
  });
  return page;
}

// A DevTools virtual authenticator on this page's target: a platform
// authenticator holding discoverable credentials and verifying the user.
async function attachAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    credentials: async () =>
      (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials,
    add: (credential) => cdp.send("WebAuthn.addCredential", { authenticatorId, credential }),
  };
}

async function shot(page, name) {
  const file = path.join(artifactDir, `${String(screenshots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
}

// Records the passkey JSON endpoints a page calls, in order.
function ceremonyLog(page) {
  const calls = [];
  page.on("request", (r) => {
    const p = new URL(r.url()).pathname;
    if (r.method() === "POST" && /\/passkey\/(options|finish)$/.test(p)) calls.push(p.split("/").pop());
  });
  return calls;
}

const heading = async (page) => (await page.locator("main h1").first().innerText()).trim();

// --- the MCP client's side, plain HTTP ---

const b64url = (buf) => Buffer.from(buf).toString("base64url");

async function postForm(url, fields) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields),
  });
  return { status: res.status, body: await res.json() };
}

async function callAdd(accessToken, a, b) {
  const res = await fetch(`${base}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${accessToken}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "add", arguments: { a, b } },
    }),
  });
  const text = await res.text();
  return { status: res.status, text };
}

// The official SDK client on a gateway route, with passgate's token: the
// text of the `personal_key` tool (the key the backend received), or the
// JSON-RPC error that refused the connection.
async function personalKeySeen(accessToken) {
  const client = new Client({ name: "browser-test-sdk-client", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(keyedUrl), {
    requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
  });
  try {
    await client.connect(transport);
    const result = await client.callTool({ name: "personal_key", arguments: {} });
    return { key: result.content[0].text };
  } catch (e) {
    return { error: { code: e.code, message: e.message, data: e.data } };
  } finally {
    await client.close().catch(() => {});
  }
}

// Registers an MCP client, has the person approve it in `page` for
// `resource` and exchanges the code: the client's id and tokens.
async function connectClient(page, resource, screenshot, name = CLIENT_NAME) {
  step = "register client";
  const reg = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [CALLBACK],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  assert.equal(reg.status, 201, `registration answered ${reg.status}`);
  const { client_id: clientId } = await reg.json();

  step = "consent";
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash("sha256").update(verifier).digest());
  const state = b64url(randomBytes(12));
  const authorizeUrl = new URL(`${base}/authorize`);
  authorizeUrl.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: CALLBACK,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
    scope: "mcp",
    resource,
  }).toString();
  let callbackUrl = null;
  await page.route(`${CALLBACK}*`, (route) => {
    callbackUrl = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/plain", body: "The client received the code." });
  });
  await page.goto(authorizeUrl.toString());
  await page.waitForURL(/\/consent\?request=/);
  assert.equal(await heading(page), `Allow ${name} to use your account?`);
  await page.getByText("the application on this computer").waitFor();
  // Keyboard focus on the default action, to see the focus ring.
  await page.keyboard.press("Tab");
  await page.getByRole("button", { name: "Allow" }).focus();
  await shot(page, screenshot);
  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL(`${CALLBACK}*`);
  assert.ok(callbackUrl, "the redirect to the client reached the intercepted callback");
  const back = new URL(callbackUrl);
  assert.equal(back.searchParams.get("state"), state);
  assert.equal(back.searchParams.get("iss"), base);
  const code = back.searchParams.get("code");
  assert.ok(code, `no code in ${callbackUrl}`);
  log("consent approved");

  step = "token exchange";
  const tokens = await postForm(`${base}/token`, {
    grant_type: "authorization_code",
    code,
    redirect_uri: CALLBACK,
    client_id: clientId,
    code_verifier: verifier,
    resource,
  });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const { access_token: accessToken, refresh_token: refreshToken } = tokens.body;
  assert.ok(accessToken && refreshToken, "an access token and a refresh token");
  await page.unroute(`${CALLBACK}*`);
  return { clientId, accessToken, refreshToken };
}

// --- the run ---

async function run() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives each launch a fresh, temporary user-data-dir.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 30_000,
  });
  log(`Chromium ${browser.version()}`);

  // 1. Enroll from the invitation link.
  step = "enroll";
  const page = await newPage("first profile");
  const device = await attachAuthenticator(page);
  const calls = ceremonyLog(page);
  await page.goto(inviteLink);
  assert.equal(await heading(page), "Create your passkey");
  await page.getByLabel("Your name").fill("Alice Example");
  await shot(page, "enroll");
  await page.getByRole("button", { name: "Create a passkey" }).click();
  await page.waitForURL(`${base}/account?notice=welcome`);
  await page.getByText("Your account is ready").waitFor();
  assert.equal(await heading(page), "Alice Example");
  const [credential] = await device.credentials();
  assert.ok(credential?.isResidentCredential, "enrollment made a discoverable credential");
  await shot(page, "account-welcome");
  log("enrolled");

  // 2. The admin page: groups for alice, and an invitation made from it.
  step = "admin";
  await page.getByRole("link", { name: "Manage users" }).click();
  await page.waitForURL(`${base}/admin`);
  await page.getByText("alice", { exact: true }).waitFor();
  await shot(page, "admin");
  await page.getByRole("textbox", { name: "Groups of alice" }).fill("research, eng");
  await page.getByRole("button", { name: "Save groups of alice" }).click();
  await page.waitForURL(`${base}/admin?notice=groups-saved`);
  assert.equal(await page.getByRole("textbox", { name: "Groups of alice" }).inputValue(), "eng, research");
  await page.getByLabel("User name").fill("bob");
  await page.getByRole("button", { name: "Create invitation link" }).click();
  await page.waitForURL(`${base}/admin/invite`);
  const bobLink = await page.getByLabel("Invitation link").inputValue();
  assert.ok(bobLink.startsWith(`${base}/enroll?token=`), `invitation link ${bobLink}`);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  await page.getByRole("button", { name: "Copy link" }).click();
  await page.getByText("Copied.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), bobLink);
  await shot(page, "admin-invitation");

  // 2b. The account page: the MCP URL with a working copy button, how to
  //     connect each client, and the groups.
  step = "account page";
  await page.goto(`${base}/account`);
  const connect = page.getByRole("region", { name: "Connect an application" });
  // passgate's own /mcp first, then the gateway's route.
  const urls = connect.getByLabel("MCP server URL");
  assert.equal(await urls.count(), 2);
  assert.equal(await urls.first().inputValue(), `${base}/mcp`);
  assert.equal(await urls.nth(1).inputValue(), keyedUrl);
  await connect.getByRole("button", { name: "Copy URL" }).first().click();
  await connect.getByText("Copied. Paste it into your MCP client.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${base}/mcp`);
  for (const client of ["Claude (web and desktop)", "ChatGPT", "VS Code", "Claude Code", "Cursor"]) {
    await connect.getByText(client, { exact: true }).first().waitFor();
  }
  await connect.getByText("Claude Code", { exact: true }).first().click();
  await connect.getByText(`claude mcp add --transport http passgate ${base}/mcp`).waitFor();
  assert.equal(await page.locator("[data-groups]").innerText(), "Groups: eng research");
  await shot(page, "account-connect");

  // 3. An error page: the used invitation link.
  step = "used invitation";
  const used = await page.goto(inviteLink);
  assert.equal(used.status(), 410);
  await page.getByText("This invitation link is not valid").waitFor();
  await shot(page, "error-invitation-used");

  // 4. Sign out.
  step = "sign out";
  await page.goto(`${base}/account`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${base}/logout`);
  assert.equal(await heading(page), "You are signed out");
  await shot(page, "signed-out");
  log("signed out");

  // 5. Sign in from autofill: the page offers the passkey through a
  //    conditional request as soon as it loads, and the virtual authenticator
  //    answers it with its only credential, as a person picking it would.
  step = "sign in (autofill)";
  calls.length = 0;
  await page.getByRole("link", { name: "Sign in again" }).click();
  await page.waitForURL(`${base}/account`);
  assert.deepEqual(calls, ["options", "finish"], "autofill: one ceremony, no button");
  assert.equal(await heading(page), "Alice Example");
  log("signed in from autofill");

  // 6. Sign in with the button, in a second profile (no cookies). Its page
  //    loads without an authenticator, so the autofill request started at
  //    load has nothing to answer it; the authenticator (holding a copy of
  //    the passkey) arrives before the click, and the button's own ceremony
  //    is the one that signs in.
  step = "sign in (button)";
  const page2 = await newPage("second profile");
  const calls2 = ceremonyLog(page2);
  // The autofill request is pending only once the page has called
  // navigator.credentials.get; an authenticator attached before that call
  // (even after the options response) would answer it, and no button
  // would be left to press. So the page reports the call itself.
  await page2.addInitScript(() => {
    const get = navigator.credentials.get.bind(navigator.credentials);
    navigator.credentials.get = (options) => {
      if (options && options.mediation === "conditional") window.passgateAutofillPending = true;
      return get(options);
    };
  });
  await page2.goto(`${base}/login`);
  await page2.waitForFunction(() => window.passgateAutofillPending === true);
  const device2 = await attachAuthenticator(page2);
  const [latest] = await device.credentials();
  await device2.add(latest);
  assert.equal(await heading(page2), "Sign in");
  await shot(page2, "sign-in");
  await page2.getByRole("button", { name: "Sign in with a passkey" }).click();
  await page2.waitForURL(`${base}/account`);
  assert.deepEqual(calls2, ["options", "options", "finish"], "button: the autofill ceremony, then the button's");
  assert.equal(await heading(page2), "Alice Example");
  log("signed in with the button");

  // 7. An MCP client: registration, consent in the browser, the code
  //    exchange, a tool call.
  const { clientId, accessToken, refreshToken } = await connectClient(page, `${base}/mcp`, "consent");

  step = "tool call";
  const sum = await callAdd(accessToken, 20, 22);
  assert.equal(sum.status, 200, sum.text);
  assert.match(sum.text, /"text":"42"/, sum.text);
  log("called add: 42");

  // 7b. A gateway route with personal keys: refused until the person sets
  //     their key on the account page, where the refusal sends them.
  step = "personal key: refused";
  const keyed = await connectClient(page, keyedUrl, "consent-keyed-route", "Browser Test Keyed Client");
  const refused = await personalKeySeen(keyed.accessToken);
  assert.equal(refused.error?.code, -32042, JSON.stringify(refused));
  const [elicitation] = refused.error.data.elicitations;
  assert.equal(elicitation.mode, "url");
  assert.equal(elicitation.url, `${base}/account#key-mcp-keyed`);
  assert.match(refused.error.message, /Example API token/);

  step = "personal key: saved";
  await page.goto(elicitation.url);
  const keys = page.getByRole("region", { name: "Your keys for MCP servers" });
  const keyField = keys.getByRole("textbox", { name: /^Your Example API token/ });
  await keys.getByText("Not set yet").waitFor();
  await shot(page, "account-key-not-set");
  const firstKey = `key-${b64url(randomBytes(12))}`;
  await keyField.fill(firstKey);
  await keys.getByRole("button", { name: "Save key" }).click();
  await page.waitForURL(`${base}/account?notice=key-saved`);
  await page.getByText("Your key was saved").waitFor();
  assert.equal(await keyField.inputValue(), "", "the key is not shown again");
  assert.ok(!(await page.content()).includes(firstKey), "the key is nowhere on the page");
  await keys.getByText(/^Set /).waitFor();
  await shot(page, "account-key-set");
  assert.deepEqual(await personalKeySeen(keyed.accessToken), { key: `Bearer ${firstKey}` });
  log("personal key saved and sent");

  step = "personal key: replaced";
  const secondKey = `key-${b64url(randomBytes(12))}`;
  await keyField.fill(secondKey);
  await keys.getByRole("button", { name: "Replace key" }).click();
  await page.waitForURL(`${base}/account?notice=key-saved`);
  assert.deepEqual(await personalKeySeen(keyed.accessToken), { key: `Bearer ${secondKey}` });

  step = "personal key: removed";
  await keys.getByRole("button", { name: "Remove your Example API token" }).click();
  await page.waitForURL(`${base}/account?notice=key-removed`);
  await keys.getByText("Not set yet").waitFor();
  assert.equal((await personalKeySeen(keyed.accessToken)).error?.code, -32042);
  log("personal key replaced and removed");
  await page
    .getByRole("region", { name: "Connected applications" })
    .getByRole("button", { name: "Disconnect Browser Test Keyed Client" })
    .click();
  await page.waitForURL(`${base}/account?notice=client-revoked`);

  // 8. The account page lists the client; disconnect it.
  step = "disconnect";
  await page.goto(`${base}/account`);
  const clients = page.getByRole("region", { name: "Connected applications" });
  await clients.getByText(CLIENT_NAME, { exact: true }).waitFor();
  await shot(page, "account-with-client");
  await page.setViewportSize({ width: 390, height: 800 });
  await shot(page, "account-with-client-narrow");
  await page.setViewportSize({ width: 1024, height: 800 });
  await clients.getByRole("button", { name: `Disconnect ${CLIENT_NAME}` }).click();
  await page.waitForURL(`${base}/account?notice=client-revoked`);
  assert.equal(await clients.getByText(CLIENT_NAME, { exact: true }).count(), 0);
  await clients.getByText("No applications are connected").waitFor();
  await shot(page, "account-after-disconnect");
  await page.emulateMedia({ colorScheme: "dark" });
  await shot(page, "account-after-disconnect-dark");
  await page.emulateMedia({ colorScheme: "light" });
  log("client disconnected");

  // 9. The client's credentials are dead.
  step = "after disconnect";
  const refreshed = await postForm(`${base}/token`, {
    grant_type: "refresh_token",
    refresh_token: refreshToken,
    client_id: clientId,
  });
  assert.equal(refreshed.status, 400, JSON.stringify(refreshed.body));
  assert.equal(refreshed.body.error, "invalid_grant");
  const after = await callAdd(accessToken, 1, 2);
  assert.equal(after.status, 401, `the access token still works: ${after.text}`);

  // 10. Another error page: an authorization request from an unknown client.
  step = "unknown client";
  const unknown = await page.goto(`${base}/authorize?client_id=nobody&response_type=code`);
  assert.equal(unknown.status(), 400);
  await shot(page, "error-unknown-client");

  assert.deepEqual(problems, [], "no console errors, CSP violations or uncaught exceptions");
  return { ok: true, seconds: (Date.now() - started) / 1000, screenshots };
}

try {
  const result = await run();
  finish(result);
  process.exitCode = 0;
} catch (e) {
  log(`failed at "${step}": ${e.stack || e}`);
  const pages = (browser?.contexts() ?? []).flatMap((c) => c.pages());
  for (const [i, p] of pages.entries()) {
    const file = path.join(artifactDir, `failure-${step.replace(/\W+/g, "-")}-${i + 1}.png`);
    await p.screenshot({ path: file, fullPage: true }).catch(() => {});
  }
  finish({ ok: false, step, error: String(e.message || e), problems, screenshots });
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
}
