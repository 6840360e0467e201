// A test-side proxy that plays a signed-in MCP client's credential for a
// client that has none: the official conformance suite, which tests MCP
// servers without authorization. Every request is passed to passgate with
// `Authorization: Bearer <token>` added (the token minted by
// examples/bench_token for passgate's data directory); the response is
// streamed back chunk by chunk, and a client that goes away closes the
// request to passgate (2026-07-28's cancellation). Host and Origin naming
// this proxy are rewritten to passgate's, so passgate judges them as it
// would the client's own. Used by scripts/test.d/20-conformance.sh; never
// part of passgate.
//
// Usage: node bearer-proxy.mjs <passgate origin> <token file> <port file>
// Writes the port it listens on (loopback) to <port file>.
import http from "node:http";
import { readFileSync, writeFileSync } from "node:fs";

const [target, tokenFile, portFile] = process.argv.slice(2);
if (!target || !tokenFile || !portFile) {
  console.error("usage: node bearer-proxy.mjs <passgate origin> <token file> <port file>");
  process.exit(2);
}
const upstream = new URL(target);
const token = readFileSync(tokenFile, "utf8").trim();

const server = http.createServer((req, res) => {
  const own = `localhost:${server.address().port}`;
  const headers = { ...req.headers };
  if (headers.host === own || headers.host === `127.0.0.1:${server.address().port}`) headers.host = upstream.host;
  if (headers.origin === `http://${own}`) headers.origin = upstream.origin;
  headers.authorization = `Bearer ${token}`;
  const forward = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.rawHeaders);
      res.flushHeaders();
      answer.on("data", (chunk) => res.write(chunk));
      answer.on("end", () => res.end());
      answer.on("error", () => res.destroy());
    },
  );
  forward.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(`proxy: ${e.message}`);
    else res.destroy();
  });
  // The client went away before the answer ended: so does the request.
  res.on("close", () => {
    if (!res.writableFinished) forward.destroy();
  });
  req.pipe(forward);
});
server.listen(0, "127.0.0.1", () => writeFileSync(portFile, String(server.address().port)));
