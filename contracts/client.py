"""A client's view of the MCP server: call a tool, know which tools mutate.

``McpToolClient`` adapts a connected ``mcp.Client`` (in-process, stdio or HTTP — the engine does not
care), so runbook steps go through the same server, policy gate and audit as a person's calls.

A refused call's ``ToolResult`` carries the parsed ``Refusal`` (``contracts.refusal``): clients
branch on its fields, never on the text, which is for people.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp import Client
from pydantic import BaseModel, Field

from contracts.refusal import Refusal, refusal_of


class ToolResult(BaseModel):
    ok: bool
    structured: Any = None
    text: str = ""
    refusal: Refusal | None = None
    """Set when the server refused the call (policy, approval, breaker, a key in flight, read-only)."""

    @classmethod
    def of(cls, *, is_error: bool, structured: Any, text: str) -> ToolResult:
        """The result of one call as the server sent it: an error's structured content is its refusal."""
        refusal = refusal_of(is_error, structured)
        return cls(ok=not is_error, structured=None if refusal else structured, text=text, refusal=refusal)

    @classmethod
    def refused(cls, refusal: Refusal, text: str) -> ToolResult:
        return cls(ok=False, text=text, refusal=refusal)


class ToolSpec(BaseModel):
    """A tool as the server lists it: what a model needs to call it, and whether it changes anything."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    read_only: bool = False


class ToolClient(Protocol):
    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult: ...

    async def read_only_tools(self) -> set[str]:
        """Names of the tools whose annotations say they change nothing."""
        ...

    async def tool_names(self) -> set[str]:
        """Every tool the server offers to this caller."""
        ...

    async def tool_specs(self) -> list[ToolSpec]:
        """Every tool with its input schema and whether its annotations say it is read-only."""
        ...


class McpToolClient:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._read_only: set[str] | None = None
        self._names: set[str] | None = None
        self._specs: list[ToolSpec] | None = None

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        res = await self._client.call_tool(tool, arguments)
        text = "\n".join(getattr(block, "text", "") for block in res.content)
        return ToolResult.of(is_error=res.is_error, structured=res.structured_content, text=text)

    async def read_only_tools(self) -> set[str]:
        if self._read_only is None:
            await self._list()
        assert self._read_only is not None
        return self._read_only

    async def tool_names(self) -> set[str]:
        if self._names is None:
            await self._list()
        assert self._names is not None
        return self._names

    async def tool_specs(self) -> list[ToolSpec]:
        """Every tool with its input schema and whether its annotations say it is read-only."""
        if self._specs is None:
            await self._list()
        assert self._specs is not None
        return self._specs

    async def _list(self) -> None:
        listed = await self._client.list_tools()
        self._specs = [
            ToolSpec(
                name=t.name,
                description=t.description or "",
                input_schema=t.input_schema,
                read_only=bool(t.annotations is not None and t.annotations.read_only_hint),
            )
            for t in listed.tools
        ]
        self._names = {t.name for t in listed.tools}
        self._read_only = {
            t.name for t in listed.tools if t.annotations is not None and t.annotations.read_only_hint
        }
