"""The official Python MCP SDK as the client of a gateway test backend.

Run by tests/gateway_backends.rs twice per backend: once at the backend's
direct URL, once at passgate's route for it with an access token (and
planted credentials passgate must strip). Prints one JSON transcript of
everything the backend answered; the test compares the two.

Usage: python gateway_client.py <mcp url> <mode> [<access token>]
  mode: "auto" (2026-07-28 when the server speaks it) or "legacy"
  (2025-11-25: initialize, Mcp-Session-Id, requests on the SSE stream)
"""

import asyncio
import json
import sys

from urllib.parse import urlparse

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult

# tests/py/backend.py reports any header value carrying this marker.
PLANTED = "planted-by-client"


def content_of(result) -> dict:
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
    }


async def main(url: str, mode: str, token: str | None) -> None:
    headers = {}
    if token:
        headers = {
            "authorization": f"Bearer {token}",
            # A client trying to pass as someone else, or to hand the
            # backend its own cookies: passgate must drop all of these.
            "x-passgate-identity": PLANTED,
            "x-forwarded-user": PLANTED,
            "x-forwarded-email": f"{PLANTED}@example.com",
            "x-forwarded-groups": PLANTED,
            "x-passgate-user": PLANTED,
            "cookie": f"session={PLANTED}",
            "forwarded": f"for={PLANTED}",
            # A valid Origin (passgate's own), which passgate must accept
            # and must not pass on.
            "origin": f"{urlparse(url).scheme}://{urlparse(url).netloc}",
        }
    elicitations: list[str] = []

    async def on_elicit(context, params) -> ElicitResult:
        elicitations.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada"})

    transcript: dict = {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), elicitation_callback=on_elicit, mode=mode) as client:
            transcript["protocol_version"] = client.protocol_version
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            transcript["tools"] = names
            transcript["add"] = content_of(await client.call_tool("add", {"a": 40, "b": 2}))
            transcript["echo"] = content_of(await client.call_tool("echo", {"text": "héllo, wörld"}))
            transcript["unknown_tool"] = await _error_or_result(client, "no_such_tool", {})
            if "count" in names:
                transcript["count"] = [
                    content_of(await client.call_tool("count", {}))["structured"] for _ in range(3)
                ]
            if "progress" in names:
                seen: list = []

                async def on_progress(progress, total, message):
                    seen.append([progress, total, message])

                result = await client.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
                transcript["progress"] = {"result": content_of(result), "notifications": seen}
            if "greet" in names:
                transcript["greet"] = content_of(await client.call_tool("greet", {}))
                transcript["elicitations"] = elicitations
            transcript["whoami"] = json.loads(content_of(await client.call_tool("whoami", {}))["text"][0])
    print(json.dumps(transcript, sort_keys=True))


async def _error_or_result(client, name, args):
    try:
        return content_of(await client.call_tool(name, args))
    except Exception as e:  # noqa: BLE001 - the error itself is the answer
        return {"error": str(e)}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
