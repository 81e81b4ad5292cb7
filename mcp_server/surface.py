"""How the server looks to a client: the ``MCPServer`` the tools register on.

Three things set it apart from a plain ``MCPServer``:

- tool and prompt descriptions are docstrings with their indentation removed
  (``inspect.cleandoc``): a model and the MCP Inspector read them as written;
- output schemas are published compact: ``$defs`` inlined, ``anyOf [X, null]`` folded into
  ``type: [X, "null"]`` and pydantic's generated property titles dropped. The meaning is the same;
  the listing is shorter for a model to read, and a client that validates every result against the
  schema (the MCP SDK does, with ``jsonschema``) spends about half the time on it;
- it knows which tools can change something (annotations not read-only), so a read-only server
  can hide them;
- protocol errors carry the spec's codes: an unknown tool, an unknown prompt or a prompt called
  without a required argument is invalid-params (-32602), not an ``isError`` result (unknown tool)
  or the SDK's code 0 (prompts). A tool that exists but fails or is refused still answers
  ``isError``, which a model can read and act on — a mutating tool a read-only server hides
  included: it is known, and refused.
- a call the gate refused (``mcp_server.gate.refused.Refused``) is answered as an ``is_error``
  result whose structured content is the ``contracts.refusal.Refusal``, beside the sentence; a call
  to a tool read-only mode hid is refused as ``read_only`` (not "Unknown tool") and audited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import pydantic
from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    GetPromptResult,
    Icon,
    InputRequiredResult,
    LoggingLevel,
    TextContent,
    ToolAnnotations,
)
from mcp.types import Tool as MCPTool

from contracts.refusal import Refusal, refusal_of
from mcp_server.deps import ServerDeps
from mcp_server.gate.refused import READ_ONLY_POLICY, refusal_in, refused_result
from mcp_server.protocol import Live
from mcp_server.read_only import audit_hidden_call
from mcp_server.ui import ui_meta

_DEFS_PREFIX = "#/$defs/"
# Keys whose values are data, not sub-schemas: never rewrite inside them.
_DATA_KEYS = frozenset({"default", "const", "enum", "examples"})


class GpuOpsServer(MCPServer[Any]):
    """An ``MCPServer`` with clean descriptions, compact output schemas and a record of which
    tools mutate."""

    def __init__(self, *args: Any, deps: ServerDeps | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deps = deps  # what the resolvers of a call reach through ``ctx.mcp_server``
        self.mutating_tools: set[str] = set()
        self.hidden_tools: set[str] = set()
        self._listed: dict[str, tuple[int, MCPTool]] = {}
        self.live: Live | None = None  # completions, logging levels, subscriptions (protocol.install)

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        text = inspect.cleandoc(description if description is not None else fn.__doc__ or "")
        meta = meta or ui_meta(name or fn.__name__)  # the MCP App a tool shows (mcp_server/ui)
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=text,
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )
        if annotations is None or annotations.read_only_hint is not True:
            self.mutating_tools.add(name or fn.__name__)

    def remove_tool(self, name: str) -> None:
        super().remove_tool(name)
        self.mutating_tools.discard(name)
        self._listed.pop(name, None)

    def add_prompt(self, prompt: Prompt) -> None:
        if prompt.description:
            prompt.description = inspect.cleandoc(prompt.description)
        super().add_prompt(prompt)

    def hide_mutating_tools(self) -> None:
        """Remove every tool that could change something (read-only mode)."""
        for name in sorted(self.mutating_tools):
            self.remove_tool(name)
            self.hidden_tools.add(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        result: CallToolResult | InputRequiredResult
        if name in self.hidden_tools and self.deps is not None:
            # A tool this read-only server hides is known, and refused (and audited), not unknown.
            reason = await audit_hidden_call(self.deps, name, arguments or {})
            result = refused_result(
                Refusal(kind="read_only", rule=READ_ONLY_POLICY, reasons=[reason]), reason
            )
        else:
            try:
                result = await super().call_tool(name, arguments, context)
            except ToolError as exc:
                refused = refusal_in(exc)
                if refused is None:
                    await self._log_call(context, name, "error", f"{name} failed: {exc}")
                    raise
                result = refused_result(refused.refusal, str(exc))
        if isinstance(result, CallToolResult):
            await self._log_outcome(context, name, result)
        return result

    async def _log_outcome(
        self, context: Context[Any, Any] | None, name: str, result: CallToolResult
    ) -> None:
        """What a tool call did, as a log notification to a caller who asked (``logging/setLevel``):
        a change at info, a read at debug, a refusal at warning, a failure at error."""
        text = " ".join(b.text for b in result.content if isinstance(b, TextContent))[:300]
        refusal = refusal_of(result.is_error, result.structured_content)
        if refusal is not None:
            level: LoggingLevel = "warning"
            message = f"{name} refused ({refusal.kind}{', ' + refusal.rule if refusal.rule else ''}): {text}"
        elif result.is_error:
            level, message = "error", f"{name} failed: {text}"
        elif name in self.mutating_tools:
            level, message = "info", f"{name}: {text}"
        else:
            level, message = "debug", f"{name} answered"
        await self._log_call(context, name, level, message)

    async def _log_call(
        self, context: Context[Any, Any] | None, tool: str, level: LoggingLevel, message: str
    ) -> None:
        if self.live is None or context is None:
            return
        try:
            session = context.request_context.session
        except (ValueError, AttributeError):  # no request behind this call (in process)
            return
        await self.live.notify(session, level, {"tool": tool, "message": message})

    async def _handle_call_tool(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        if params.name not in self.hidden_tools and self._tool_manager.get_tool(params.name) is None:
            raise MCPError(
                code=INVALID_PARAMS, message=f"Unknown tool: {params.name}", data={"name": params.name}
            )
        return await super()._handle_call_tool(ctx, params)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}", data={"name": name})
        given = arguments or {}
        missing = [a.name for a in prompt.arguments or [] if a.required and given.get(a.name) is None]
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"prompt {name!r} needs: {', '.join(missing)}")
        try:
            return await super().get_prompt(name, arguments, context)
        except MCPError:
            raise
        except ValueError as exc:
            bad_argument = _caused_by(exc, pydantic.ValidationError)
            raise MCPError(code=INVALID_PARAMS if bad_argument else INTERNAL_ERROR, message=str(exc)) from exc

    async def list_tools(self) -> list[MCPTool]:
        listed = []
        for tool in await super().list_tools():
            # Compacting costs a little; do it once per schema object, not per listing.
            key = id(tool.output_schema)
            cached = self._listed.get(tool.name)
            if cached is None or cached[0] != key:
                schema = compact_schema(tool.output_schema) if tool.output_schema is not None else None
                cached = (key, tool.model_copy(update={"output_schema": schema}))
                self._listed[tool.name] = cached
            listed.append(cached[1])
        return listed


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__
    return False


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON schema, cheaper to read and to validate against (see the module docstring).

    A schema with a recursive ``$ref`` is only stripped of titles: inlining it would not end."""
    defs: dict[str, Any] = schema.get("$defs", {})
    if any(_refers_to_itself(name, defs) for name in defs):
        return cast(dict[str, Any], _walk(schema, None))
    body = {key: value for key, value in schema.items() if key != "$defs"}
    compact = cast(dict[str, Any], _walk(body, defs))
    if "title" in schema:
        compact["title"] = schema["title"]  # the root's title names the type; keep it
    return compact


def _walk(node: Any, defs: dict[str, Any] | None) -> Any:
    if isinstance(node, list):
        return [_walk(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if defs is not None and isinstance(node.get("$ref"), str) and node["$ref"].startswith(_DEFS_PREFIX):
        target = _walk(defs[node["$ref"].removeprefix(_DEFS_PREFIX)], defs)
        siblings = {k: _walk(v, defs) for k, v in node.items() if k not in ("$ref", "title")}
        return {**target, **siblings}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _DATA_KEYS:
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            # Property *names* may be anything (a field may be called "title"); only their schemas walk.
            out[key] = {name: _walk(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _walk(value, defs)
    return _fold_nullable(out)


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """``{anyOf: [S, {type: null}], ...}`` -> ``{...S, type: [S.type, "null"], ...}`` when S has a
    single plain type (an enum gains ``null`` as a member)."""
    arms = node.get("anyOf")
    if not isinstance(arms, list) or len(arms) != 2:
        return node
    nulls = [arm for arm in arms if arm == {"type": "null"}]
    others = [arm for arm in arms if arm != {"type": "null"}]
    if len(nulls) != 1 or len(others) != 1:
        return node
    arm = others[0]
    if not isinstance(arm, dict) or not isinstance(arm.get("type"), str) or "const" in arm:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if set(rest) & (set(arm) - {"description"}):
        return node  # a sibling would clash with a key of the arm; leave it as it was
    folded = {**arm, **rest, "type": [arm["type"], "null"]}
    if "enum" in arm:
        folded["enum"] = [*arm["enum"], None]
    return folded


def _refers_to_itself(name: str, defs: dict[str, Any]) -> bool:
    seen: set[str] = set()
    pending = [defs[name]]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
                target = ref.removeprefix(_DEFS_PREFIX)
                if target == name:
                    return True
                if target not in seen and target in defs:
                    seen.add(target)
                    pending.append(defs[target])
            pending.extend(v for k, v in node.items() if k not in _DATA_KEYS)
        elif isinstance(node, list):
            pending.extend(node)
    return False
