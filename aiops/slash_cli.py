"""``aiops slash "/gpu ..."``: the on-call commands from a terminal, for engineers without chat.

Against a running platform when ``AIOPS_MCP_URL`` (and ``AIOPS_MCP_TOKEN``) are set — the token's
principal acts — else against a fleet twin of its own as ``AIOPS_MCP_PRINCIPAL``/``AIOPS_MCP_ROLE``.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aiops.settings import Settings
from aiops.standalone import build_standalone_server
from mcp_server.chatops.blocks import Reply
from mcp_server.chatops.commands import SlashRunner
from runbooks.client import McpToolClient


async def run_slash(text: str, settings: Settings) -> Reply:
    async with AsyncExitStack() as stack:
        if settings.mcp_url:
            headers = {"Authorization": f"Bearer {settings.mcp_token}"} if settings.mcp_token else {}
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
            client = await stack.enter_async_context(
                Client(streamable_http_client(settings.mcp_url, http_client=http))
            )
            caller = "terminal"
        else:
            server = build_standalone_server(settings, run_the_clock=False)
            client = await stack.enter_async_context(Client(server))
            caller = settings.mcp_principal
        return await SlashRunner(McpToolClient(client), caller=caller).run_text(text)


def render(reply: Reply, as_json: bool) -> str:
    return json.dumps(reply.slack(), indent=2) if as_json else reply.text
