"""The runbook engine's tool client inside the server: a runbook a caller runs through
``run_runbook`` calls this server's own tools in-process, as that same caller.

Every step therefore meets the same policy gate, idempotency and audit as if the caller had made
the call themselves; nothing a runbook does can exceed its caller's role.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from contracts.client import ToolResult, ToolSpec
from contracts.refusal import Refusal
from mcp_server.gate.guard import DENIED
from mcp_server.gate.refused import READ_ONLY_POLICY
from mcp_server.surface import GpuOpsServer


class ServerToolClient:
    def __init__(self, server: MCPServer[Any]) -> None:
        self._server = server

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        if isinstance(self._server, GpuOpsServer) and tool in self._server.hidden_tools:
            # The step's tool exists but this server hides it: refuse it, as the gate would.
            why = "the server runs in read-only mode"
            refusal = Refusal(kind="read_only", rule=READ_ONLY_POLICY, reasons=[why])
            return ToolResult.refused(refusal, f"{DENIED} {tool}: {why}")
        try:
            result = await self._server.call_tool(tool, arguments)
        except ToolError as exc:
            return ToolResult(ok=False, text=str(exc))
        if not isinstance(result, CallToolResult):
            # A step cannot stop to ask a question mid-runbook; the runbook was confirmed as a whole.
            return ToolResult(ok=False, text=f"{tool} asked for input a runbook step cannot give")
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        return ToolResult.of(is_error=result.is_error, structured=result.structured_content, text=text)

    async def read_only_tools(self) -> set[str]:
        return {
            tool.name
            for tool in await self._server.list_tools()
            if tool.annotations is not None and tool.annotations.read_only_hint
        }

    async def tool_names(self) -> set[str]:
        return {tool.name for tool in await self._server.list_tools()}

    async def tool_specs(self) -> list[ToolSpec]:
        return [
            ToolSpec(
                name=t.name,
                description=t.description or "",
                input_schema=t.input_schema,
                read_only=bool(t.annotations is not None and t.annotations.read_only_hint),
            )
            for t in await self._server.list_tools()
        ]
