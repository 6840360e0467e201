"""The official Python MCP SDK calling examples/notes.rs with access tokens
that tests/library.rs obtained by signing in.

Usage: python notes_client.py <mcp url> <token with scope mcp> <token with mcp notes.delete>
Prints one JSON object with what each call answered.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def session(mcp_url: str, token: str, calls):
    headers = {"authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
            return await calls(client)


async def main(mcp_url: str, plain: str, deleting: str) -> None:
    out: dict = {}

    async def first(client):
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        added = await client.call_tool("add_note", {"text": "buy milk"})
        out["added"] = added.structured_content
        listed = await client.call_tool("list_notes", {})
        out["listed"] = listed.structured_content

    await session(mcp_url, plain, first)

    async def refused(client):
        await client.call_tool("delete_note", {"id": out["added"]["note"]["id"]})

    try:
        await session(mcp_url, plain, refused)
        out["delete_without_scope"] = "answered"
    except BaseException as e:  # the SDK raises (in an exception group) on HTTP 403
        out["delete_without_scope"] = f"refused: {e!r}"

    async def with_scope(client):
        deleted = await client.call_tool("delete_note", {"id": out["added"]["note"]["id"]})
        out["deleted"] = deleted.structured_content
        listed = await client.call_tool("list_notes", {})
        out["after"] = listed.structured_content

    await session(mcp_url, deleting, with_scope)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
