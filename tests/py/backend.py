"""Python MCP servers for the gateway tests (tests/gateway_backends.rs).

One process serves one backend on two loopback ports:

- the *gateway* port, which only passgate calls: every request is inspected
  (no client credential, the identity JWT verifies against passgate's JWKS
  with this backend's URL as audience) and each problem is recorded;
- the *direct* port, which the test calls without passgate to learn what the
  backend answers by itself; it also serves GET /_report, the gateway
  port's request count and recorded problems, which the test asserts on.

Kinds:
  fastmcp-stateless  FastMCP (PyPI), stateless, JSON responses
  fastmcp-sessions   FastMCP with sessions (Mcp-Session-Id), SSE, progress, elicitation
  mcp-modern         the official Python SDK's MCPServer, 2026-07-28 first, stateless;
                     its elicitation comes back as an InputRequiredResult

Usage: python backend.py KIND --direct-port N --gateway-port M --issuer URL
           [--static-header NAME=VALUE]... [--user-headers]
Prints "ready" on stdout once both ports listen; exits when stdin closes.
"""


import argparse
import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
from typing import Annotated, Any

import jwt
import uvicorn
from pydantic import BaseModel

# Header values the test client plants; none may ever reach a backend.
PLANTED_MARKER = "planted-by-client"


class Inspector:
    """Checks what passgate forwards; remembers every problem it sees."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.issuer = args.issuer.rstrip("/")
        self.audience = f"http://127.0.0.1:{args.gateway_port}/mcp"
        self.host = f"127.0.0.1:{args.gateway_port}"
        self.static = {}
        for item in args.static_header:
            name, _, value = item.partition("=")
            self.static[name.lower()] = value
        self.user_headers = args.user_headers
        self.requests = 0
        self.problems: list[str] = []
        self._jwks: jwt.PyJWKClient | None = None

    def jwks(self) -> jwt.PyJWKClient:
        # Discovered from passgate's own metadata on first use: the backend
        # starts before passgate does.
        if self._jwks is None:
            with urllib.request.urlopen(f"{self.issuer}/.well-known/oauth-authorization-server") as r:
                jwks_uri = json.load(r)["jwks_uri"]
            self._jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True)
        return self._jwks

    def verify(self, token: str) -> dict[str, Any]:
        key = self.jwks().get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "sub", "jti"]},
        )

    def inspect(self, method: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.requests += 1
        seen: dict[str, list[str]] = {}
        for name, value in headers:
            seen.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        problems = []

        def one(name: str) -> str | None:
            values = seen.get(name, [])
            if len(values) > 1:
                problems.append(f"{name} sent {len(values)} times")
            return values[0] if values else None

        for name, values in seen.items():
            if any(PLANTED_MARKER in v for v in values):
                problems.append(f"a client's planted value reached the backend in {name}")
        for name, value in self.static.items():
            if one(name) != value and not method.startswith(("OPTIONS ", "HEAD ")):
                problems.append(f"static header {name} missing or wrong")
        if "authorization" not in self.static and "authorization" in seen:
            problems.append("an Authorization header reached the backend")
        for name in ("cookie", "forwarded", "x-forwarded-for", "x-forwarded-host", "proxy-authorization"):
            if name in seen:
                problems.append(f"{name} reached the backend")
        if "origin" in seen:
            problems.append("the client's Origin reached the backend")
        if one("host") != self.host:
            problems.append(f"Host is {one('host')!r}, not the backend's authority")

        claims = None
        token = one("x-passgate-identity")
        # passgate's readiness probe carries no MCP message and nobody's identity.
        probe = method.split()[0] in ("OPTIONS", "HEAD")
        if token is None and probe:
            pass
        elif token is None:
            problems.append("no X-Passgate-Identity")
        else:
            try:
                claims = self.verify(token)
                # Never an access token passed along: its typ is at+jwt.
                if jwt.get_unverified_header(token).get("typ") != "passgate-identity+jwt":
                    problems.append("the identity JWT's typ is not passgate-identity+jwt")
                if not claims.get("client_id"):
                    problems.append("identity JWT without client_id")
                lifetime = claims["exp"] - claims["iat"]
                if not 0 < lifetime <= 300:
                    problems.append(f"identity JWT lives {lifetime} s")
                if claims["exp"] < time.time():
                    problems.append("identity JWT expired on arrival")
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                problems.append(f"identity JWT does not verify: {type(e).__name__}: {e}")

        user_headers = ("x-forwarded-user", "x-forwarded-email", "x-forwarded-groups")
        if self.user_headers and claims is not None:
            if one("x-forwarded-user") != claims.get("name"):
                problems.append("X-Forwarded-User does not match the identity JWT")
            if one("x-forwarded-email") != claims.get("email"):
                problems.append("X-Forwarded-Email does not match the identity JWT")
            if (one("x-forwarded-groups") or "") != ",".join(claims.get("groups") or []):
                problems.append("X-Forwarded-Groups does not match the identity JWT")
        elif not self.user_headers:
            for name in user_headers:
                if name in seen:
                    problems.append(f"{name} reached a backend that did not ask for it")
        self.problems.extend(f"{method}: {p}" for p in problems)

    def whoami(self, headers: dict[str, str] | None) -> dict[str, Any]:
        """What the identity JWT of the current request says (nothing when direct)."""
        token = (headers or {}).get("x-passgate-identity")
        if not token:
            return {"anonymous": True}
        claims = self.verify(token)
        return {k: claims.get(k) for k in ("sub", "name", "email", "groups", "client_id", "aud", "iss")}


class Inspected:
    """ASGI wrapper: inspects gateway-port requests, serves /_report on the direct port."""

    def __init__(self, app, inspector: Inspector, gateway_port: int) -> None:
        self.app = app
        self.inspector = inspector
        self.gateway_port = gateway_port

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            port = scope["server"][1]
            if port == self.gateway_port:
                self.inspector.inspect(f'{scope["method"]} {scope["path"]}', scope["headers"])
            elif scope["path"] == "/_report":
                body = json.dumps(
                    {"requests": self.inspector.requests, "problems": self.inspector.problems}
                ).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class Name(BaseModel):
    name: str


def fastmcp_app(kind: str, inspector: Inspector):
    from fastmcp import Context, FastMCP
    from fastmcp.server.dependencies import get_http_headers

    mcp = FastMCP(kind)
    counters: dict[str, int] = {}

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @mcp.tool
    def whoami() -> str:
        """The identity passgate presented for this request, as JSON."""
        return json.dumps(inspector.whoami(get_http_headers(include_all=True)))

    if kind == "fastmcp-sessions":

        @mcp.tool
        async def count(ctx: Context) -> int:
            """Counts calls within this MCP session."""
            counters[ctx.session_id] = counters.get(ctx.session_id, 0) + 1
            return counters[ctx.session_id]

        @mcp.tool
        async def progress(steps: int, ctx: Context) -> str:
            """Reports progress `steps` times, then finishes."""
            for i in range(1, steps + 1):
                await ctx.report_progress(i, steps, f"step {i}")
            return f"done after {steps} steps"

        @mcp.tool
        async def greet(ctx: Context) -> str:
            """Asks the user's name (an elicitation), then greets them."""
            answer = await ctx.elicit("What is your name?", response_type=Name)
            if answer.action != "accept":
                return f"no name ({answer.action})"
            return f"Hello, {answer.data.name}!"

        return mcp.http_app(path="/mcp", stateless_http=False, json_response=False)
    return mcp.http_app(path="/mcp", stateless_http=True, json_response=True)


def modern_app(inspector: Inspector):
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.resolve import Elicit, Resolve

    mcp = MCPServer("mcp-modern")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @mcp.tool()
    def whoami(ctx: Context) -> str:
        """The identity passgate presented for this request, as JSON."""
        return json.dumps(inspector.whoami({k.lower(): v for k, v in (ctx.headers or {}).items()}))

    @mcp.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Reports progress `steps` times, then finishes."""
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
        return f"done after {steps} steps"

    def ask_name() -> Elicit[Name]:
        return Elicit("What is your name?", Name)

    @mcp.tool()
    def greet(who: Annotated[Name, Resolve(ask_name)]) -> str:
        """Asks the user's name (an elicitation), then greets them."""
        return f"Hello, {who.name}!"

    return mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["fastmcp-stateless", "fastmcp-sessions", "mcp-modern"])
    p.add_argument("--direct-port", type=int, required=True)
    p.add_argument("--gateway-port", type=int, required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--static-header", action="append", default=[])
    p.add_argument("--user-headers", action="store_true")
    args = p.parse_args()

    # The test holds our stdin open: when it ends, so do we.
    def exit_at_eof() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_at_eof, daemon=True).start()

    inspector = Inspector(args)
    app = modern_app(inspector) if args.kind == "mcp-modern" else fastmcp_app(args.kind, inspector)
    app = Inspected(app, inspector, args.gateway_port)
    # One app (one set of sessions) behind two listeners; the lifespan runs once.
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                      lifespan="on" if port == args.direct_port else "off"))
        for port in (args.direct_port, args.gateway_port)
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
            sys.exit("a listener stopped before starting")
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
