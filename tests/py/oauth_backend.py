"""A FastMCP server with an OAuth authorization server of its own, as a
gateway backend with its own sign-in (tests/backend_oauth.rs).

The authorization server is FastMCP's InMemoryOAuthProvider (the MCP Python
SDK's authorization endpoints: metadata, dynamic registration only, PKCE,
refresh, revocation). It approves every sign-in by itself, with no page:
the flow under test is passgate's side of it. The `token_seen` tool says
which client and which access token (a hash of it) the call came with;
`POST /_revoke_all` makes the server forget every token it issued, as an
operator ending all access would.

Usage: python oauth_backend.py --port N
Exits when stdin closes.
"""

import argparse
import hashlib
import os
import sys
import threading

from fastmcp import FastMCP
from fastmcp.server.auth.providers.in_memory import InMemoryOAuthProvider
from fastmcp.server.dependencies import get_access_token
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from starlette.requests import Request
from starlette.responses import JSONResponse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    auth = InMemoryOAuthProvider(
        base_url=base,
        client_registration_options=ClientRegistrationOptions(enabled=True),
        revocation_options=RevocationOptions(enabled=True),
    )
    mcp = FastMCP("oauth-backend", auth=auth)

    @mcp.tool
    def token_seen() -> dict:
        """Which client and access token this call carried."""
        token = get_access_token()
        return {
            "client_id": token.client_id,
            "token": hashlib.sha256(token.token.encode()).hexdigest()[:16],
        }

    @mcp.custom_route("/_revoke_all", methods=["POST"])
    async def revoke_all(request: Request) -> JSONResponse:
        forgotten = len(auth.access_tokens) + len(auth.refresh_tokens)
        auth.access_tokens.clear()
        auth.refresh_tokens.clear()
        return JSONResponse({"forgotten": forgotten})

    # The test holds our stdin open: when it closes, we go.
    def watch_stdin() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    mcp.run(
        transport="http",
        host="127.0.0.1",
        port=args.port,
        path="/mcp",
        stateless_http=True,
        json_response=True,
        show_banner=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
