"""The ``audit_log`` tool: read the audit trail (every call of a mutating tool, allowed or not) with
filters, newest first. ``aiops audit`` is its command line."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events.models import AuditRecord
from mcp_server.deps import ServerDeps
from mcp_server.tools._common import READ_ONLY

Decision = Literal["allow", "deny", "approval_required"]
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class AuditLog(BaseModel):
    records: list[AuditRecord] = Field(description="newest first, up to `limit`")
    matched: int = Field(description="records that pass the filters")
    total: int = Field(description="records in the trail")


def parse_since(since: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``1d`` back from now, or an ISO 8601 time (UTC when no zone is given)."""
    relative = _RELATIVE.match(since.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        at = datetime.fromisoformat(since.strip())
    except ValueError:
        raise ToolError(
            f"since {since!r} is neither a duration (30m, 2h, 1d) nor an ISO time (2026-11-29T08:00:00Z)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=now.tzinfo)


def touches_node(record: AuditRecord, node: str) -> bool:
    for value in record.arguments.values():
        if isinstance(value, str) and (value == node or value.startswith(f"{node}/")):
            return True
    return False


def register(server: MCPServer, deps: ServerDeps) -> None:
    @server.tool(annotations=READ_ONLY)
    async def audit_log(
        principal: Annotated[str | None, Field(description="only calls by this principal, e.g. olga")] = None,
        tool: Annotated[str | None, Field(description="only calls of this tool, e.g. isolate_gpu")] = None,
        decision: Annotated[Decision | None, Field(description="only this policy decision")] = None,
        node: Annotated[str | None, Field(description="only calls about this node (or a GPU on it)")] = None,
        since: Annotated[
            str | None, Field(description="only since then: 30m, 2h, 1d back from now, or an ISO time")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> AuditLog:
        """The audit trail, newest first: who called which mutating tool, with which arguments, what
        the policy decided and why, and whether it changed anything. Filter by principal, tool,
        decision, node and time."""
        start = parse_since(since, deps.clock()) if since else None
        trail = await deps.audit.read()
        found = [
            r
            for r in trail
            if (principal is None or r.principal == principal)
            and (tool is None or r.tool == tool)
            and (decision is None or r.decision == decision)
            and (node is None or touches_node(r, node))
            and (start is None or r.time >= start)
        ]
        found.reverse()
        return AuditLog(records=found[:limit], matched=len(found), total=len(trail))
