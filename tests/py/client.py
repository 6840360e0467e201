"""The official Python MCP SDK as a real OAuth client of passgate.

Run by tests/real_clients.rs with the MCP URL and a signed-in browser session
cookie. The callback handler plays the browser on the consent page; the SDK
does discovery, registration, PKCE, the token exchange and the MCP calls.

Usage: python client.py <mcp url> <session cookie>
"""

import asyncio
import json
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

REDIRECT = "http://localhost:33419/callback"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def main(mcp_url: str, cookie: str) -> None:
    origin = f"{urlparse(mcp_url).scheme}://{urlparse(mcp_url).netloc}"
    redirected: dict[str, str] = {}

    async def redirect_handler(authorization_url: str) -> None:
        async with httpx2.AsyncClient(headers={"cookie": cookie}) as browser:
            r = await browser.get(authorization_url)
            assert r.status_code == 303, f"authorize answered {r.status_code}: {r.text[:300]}"
            r = await browser.get(urljoin(origin, r.headers["location"]))
            assert r.status_code == 200, f"consent page answered {r.status_code}"
            assert "passgate Python test client" in r.text

            def field(name: str) -> str:
                return re.search(f'name="{name}" value="([^"]+)"', r.text).group(1)

            r = await browser.post(
                urljoin(origin, "/consent"),
                data={"request": field("request"), "csrf": field("csrf"), "decision": "approve"},
            )
            assert r.status_code == 303, f"consent decision answered {r.status_code}"
            back = urlparse(r.headers["location"])
            assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
            redirected.update({k: v[0] for k, v in parse_qs(back.query).items()})

    async def callback_handler() -> AuthorizationCodeResult:
        assert redirected.get("iss") == origin, redirected
        return AuthorizationCodeResult(
            code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
        )

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="passgate Python test client",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider) as http:
        async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
            result = await client.call_tool("add", {"a": 40, "b": 2})
            assert result.structured_content == {"result": 42}, result
            overflow = await client.call_tool("add", {"a": 2**63 - 1, "b": 1})
            assert overflow.is_error, overflow
            who = await client.call_tool("whoami", {})
            assert who.structured_content["client_id"] == storage.client_info.client_id, who
    assert storage.tokens is not None and storage.tokens.refresh_token
    print(json.dumps({"ok": True, "client_id": storage.client_info.client_id}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
