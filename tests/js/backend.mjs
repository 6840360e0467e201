// The official TypeScript SDK's MCP server as a gateway test backend
// (tests/gateway_backends.rs): sessions (Mcp-Session-Id), SSE responses,
// progress notifications and an elicitation, on 2025-11-25.
//
// Like tests/py/backend.py it listens twice: the gateway port, which only
// passgate calls and where every request is inspected (no client credential,
// the identity JWT verifies against passgate's JWKS with this backend's URL
// as audience), and the direct port, for the test's own comparison and for
// GET /_report (the gateway port's request count and problems, and the
// session ids this backend issued).
//
// With --personal-key-header NAME, every MCP request through the gateway
// must carry a person's own key in NAME (passgate's personal keys), and the
// `personal_key` tool says which key it received.
//
// Usage: node backend.mjs --direct-port N --gateway-port M --issuer URL
//            [--static-header NAME=VALUE]... [--user-headers]
//            [--personal-key-header NAME]
// Prints "ready" once both ports listen; exits when stdin closes.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { z } from "zod";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";

const PLANTED_MARKER = "planted-by-client";

const { values: args } = parseArgs({
  options: {
    "direct-port": { type: "string" },
    "gateway-port": { type: "string" },
    issuer: { type: "string" },
    "static-header": { type: "string", multiple: true, default: [] },
    "user-headers": { type: "boolean", default: false },
    "personal-key-header": { type: "string" },
  },
});
const personalKeyHeader = args["personal-key-header"]?.toLowerCase();
const gatewayPort = Number(args["gateway-port"]);
const directPort = Number(args["direct-port"]);
const issuer = args.issuer.replace(/\/$/, "");
const audience = `http://127.0.0.1:${gatewayPort}/mcp`;
const staticHeaders = Object.fromEntries(
  args["static-header"].map((item) => {
    const at = item.indexOf("=");
    return [item.slice(0, at).toLowerCase(), item.slice(at + 1)];
  }),
);

let requests = 0;
const problems = [];
let jwks = null;

// Discovered from passgate's metadata on first use: we start before it does.
async function keySet() {
  if (!jwks) {
    const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
    jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
  }
  return jwks;
}

async function verifyIdentity(token) {
  const { payload } = await jwtVerify(token, await keySet(), {
    issuer,
    audience,
    algorithms: ["ES256"],
    requiredClaims: ["exp", "iat", "sub", "jti"],
    // Never an access token passed along: its typ is at+jwt.
    typ: "passgate-identity+jwt",
  });
  return payload;
}

// Every problem with what passgate forwarded; recorded, never thrown.
async function inspect(req) {
  requests += 1;
  const found = [];
  const seen = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    (seen[name] ??= []).push(req.rawHeaders[i + 1]);
  }
  const one = (name) => {
    const values = seen[name] ?? [];
    if (values.length > 1) found.push(`${name} sent ${values.length} times`);
    return values[0];
  };
  for (const [name, values] of Object.entries(seen)) {
    if (values.some((v) => v.includes(PLANTED_MARKER)))
      found.push(`a client's planted value reached the backend in ${name}`);
  }
  // passgate's readiness probe carries no MCP message and nobody's identity.
  const probe = req.method === "OPTIONS" || req.method === "HEAD";
  for (const [name, value] of Object.entries(staticHeaders)) {
    if (one(name) !== value && !probe) found.push(`static header ${name} missing or wrong`);
  }
  if (personalKeyHeader && !probe && !one(personalKeyHeader))
    found.push(`no personal key in ${personalKeyHeader}`);
  if (!("authorization" in staticHeaders) && personalKeyHeader !== "authorization" && seen.authorization)
    found.push("an Authorization header reached the backend");
  for (const name of ["cookie", "forwarded", "x-forwarded-for", "x-forwarded-host", "proxy-authorization"]) {
    if (seen[name]) found.push(`${name} reached the backend`);
  }
  if (seen.origin) found.push("the client's Origin reached the backend");
  if (one("host") !== `127.0.0.1:${gatewayPort}`)
    found.push(`Host is ${JSON.stringify(one("host"))}, not the backend's authority`);

  let claims = null;
  const token = one("x-passgate-identity");
  if (!token) {
    if (!probe) found.push("no X-Passgate-Identity");
  } else {
    try {
      claims = await verifyIdentity(token);
      if (!claims.client_id) found.push("identity JWT without client_id");
      const lifetime = claims.exp - claims.iat;
      if (!(lifetime > 0 && lifetime <= 300)) found.push(`identity JWT lives ${lifetime} s`);
    } catch (e) {
      found.push(`identity JWT does not verify: ${e.code ?? e.name}: ${e.message}`);
    }
  }
  const userHeaders = ["x-forwarded-user", "x-forwarded-email", "x-forwarded-groups"];
  if (args["user-headers"] && claims) {
    if (one("x-forwarded-user") !== claims.name) found.push("X-Forwarded-User does not match the identity JWT");
    if (one("x-forwarded-email") !== claims.email) found.push("X-Forwarded-Email does not match the identity JWT");
    if ((one("x-forwarded-groups") ?? "") !== (claims.groups ?? []).join(","))
      found.push("X-Forwarded-Groups does not match the identity JWT");
  } else if (!args["user-headers"]) {
    for (const name of userHeaders) if (seen[name]) found.push(`${name} reached a backend that did not ask for it`);
  }
  problems.push(...found.map((p) => `${req.method} ${req.url}: ${p}`));
}

async function whoami(headers) {
  const token = headers?.["x-passgate-identity"];
  if (!token) return { anonymous: true };
  const c = await verifyIdentity(token);
  return Object.fromEntries(["sub", "name", "email", "groups", "client_id", "aud", "iss"].map((k) => [k, c[k] ?? null]));
}

function newServer() {
  const server = new McpServer({ name: "ts-sdk-backend", version: "1.0.0" });
  let calls = 0;
  const text = (value) => ({ content: [{ type: "text", text: String(value) }], structuredContent: { result: value } });
  server.registerTool(
    "add",
    { description: "Add two integers.", inputSchema: { a: z.number().int(), b: z.number().int() }, outputSchema: { result: z.number() } },
    async ({ a, b }) => text(a + b),
  );
  server.registerTool(
    "echo",
    { description: "Echo the text back.", inputSchema: { text: z.string() }, outputSchema: { result: z.string() } },
    async ({ text: t }) => text(t),
  );
  server.registerTool(
    "count",
    { description: "Counts calls within this MCP session.", outputSchema: { result: z.number() } },
    async () => text(++calls),
  );
  server.registerTool(
    "progress",
    { description: "Reports progress `steps` times, then finishes.", inputSchema: { steps: z.number().int() }, outputSchema: { result: z.string() } },
    async ({ steps }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken, progress: i, total: steps, message: `step ${i}` },
          });
        }
      }
      return text(`done after ${steps} steps`);
    },
  );
  server.registerTool(
    "greet",
    { description: "Asks the user's name (an elicitation), then greets them.", outputSchema: { result: z.string() } },
    async (extra) => {
      // On the call's own SSE stream (not the standalone GET stream): the
      // answer comes back as a new POST, which must reach this session.
      const answer = await server.server.elicitInput(
        {
          mode: "form",
          message: "What is your name?",
          requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
        },
        { relatedRequestId: extra.requestId },
      );
      if (answer.action !== "accept") return text(`no name (${answer.action})`);
      return text(`Hello, ${answer.content.name}!`);
    },
  );
  server.registerTool(
    "personal_key",
    { description: "The personal key passgate sent with this request (a test backend's tool)." },
    async (extra) => ({
      content: [{ type: "text", text: String(extra.requestInfo?.headers?.[personalKeyHeader] ?? "none") }],
    }),
  );
  server.registerTool(
    "whoami",
    { description: "The identity passgate presented for this request, as JSON." },
    async (extra) => ({
      content: [{ type: "text", text: JSON.stringify(await whoami(extra.requestInfo?.headers)) }],
    }),
  );
  return server;
}

// One set of sessions behind both listeners.
const transports = new Map();

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString("utf8");
  return raw ? JSON.parse(raw) : undefined;
}

async function handle(req, res, viaGateway) {
  if (viaGateway) await inspect(req);
  const url = new URL(req.url, "http://127.0.0.1");
  if (!viaGateway && url.pathname === "/_report") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ requests, problems, sessions: [...transports.keys()] }));
    return;
  }
  if (url.pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = req.method === "POST" ? await readBody(req) : undefined;
    const sessionId = req.headers["mcp-session-id"];
    let transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId || req.method !== "POST" || !isInitializeRequest(body)) {
        res.writeHead(sessionId ? 404 : 400, { "content-type": "application/json" }).end(
          JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: sessionId ? "Session not found" : "No session" } }),
        );
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500).end(String(e));
  }
}

const listening = [directPort, gatewayPort].map(
  (port) =>
    new Promise((resolve, reject) => {
      const server = http.createServer((req, res) => handle(req, res, port === gatewayPort));
      server.on("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    }),
);
await Promise.all(listening);
// The test holds our stdin open: when it ends, so do we.
process.stdin.on("end", () => process.exit(0)).resume();
console.log("ready");
