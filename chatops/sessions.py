"""MCP sessions acting as a given principal, for front doors that serve many people (chat).

Each principal gets its own server instance over the shared dependencies (backend, gate, audit,
stores), whose identity is fixed to that principal; a session is an in-process MCP client of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp import Client
from mcp.server import MCPServer

from contracts.client import McpToolClient, ToolClient
from mcp_server.gate.policy import Principal


class PrincipalSessions:
    def __init__(self, build: Callable[[Principal], MCPServer]) -> None:
        self._build = build
        self._servers: dict[tuple[str, str, str], MCPServer] = {}

    def server_for(self, principal: Principal) -> MCPServer:
        key = (principal.id, principal.role, principal.kind)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = self._build(principal)
        return server

    @asynccontextmanager
    async def session(self, principal: Principal) -> AsyncIterator[ToolClient]:
        async with Client(self.server_for(principal)) as client:
            yield McpToolClient(client)
