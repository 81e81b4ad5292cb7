"""The ``inject_fault`` tool: make the fleet twin fail the way the scenarios do (an Xid, an ECC
error, a hung job, a slow link, a throttled GPU, a slow workload), so a person can try the platform
(``aiops inject``) and the console. Refused on any backend but the twin: it is a simulator's lever,
never a production one. Operators and admins only; every call is audited."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events.models import AuditRecord
from mcp_server.backends.base import BackendError
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.backends.twin.faults import EccInjection, FaultKind, SdcMode, inject
from mcp_server.deps import ServerDeps
from mcp_server.tools._common import mutating

ROLES = ("operator", "admin")
RULE = "inject_fault: only operators and admins inject faults, and only into the fleet twin"


class Injected(BaseModel):
    kind: FaultKind
    target: str
    detail: str
    kernel_lines: list[str] = Field(default_factory=list, description="what the driver printed")


def register(server: MCPServer, deps: ServerDeps) -> None:
    @server.tool(annotations=mutating(destructive=True, idempotent=False))
    async def inject_fault(
        kind: Annotated[FaultKind, Field(description="what breaks")],
        node: Annotated[
            str | None, Field(description="xid, ecc, throttle, sdc, node_lost, nic_down: the node")
        ] = None,
        gpu: Annotated[
            int | None, Field(ge=0, le=15, description="xid, ecc, throttle, sdc: GPU index")
        ] = None,
        xid: Annotated[int | None, Field(ge=1, le=999, description="xid: the code, e.g. 79, 48, 13")] = None,
        ecc: Annotated[EccInjection, Field(description="ecc: which memory error")] = "dbe",
        count: Annotated[int, Field(ge=1, le=10_000, description="ecc sbe_burst: how many")] = 1,
        job: Annotated[str | None, Field(description="hang, slow_workload: the job")] = None,
        rank: Annotated[
            int | None, Field(ge=0, description="hang: the rank that hangs (default any)")
        ] = None,
        leaf: Annotated[str | None, Field(description="slow_link: the InfiniBand leaf switch")] = None,
        factor: Annotated[
            float,
            Field(
                gt=0, le=100, description="slow_link, throttle, slow_workload: how much slower (1 ends it)"
            ),
        ] = 2.0,
        mode: Annotated[
            SdcMode, Field(description="sdc: nan (the loss goes NaN) or spike (loss and grad norm jump)")
        ] = "nan",
        transient: Annotated[bool, Field(description="sdc: a one-off corruption (the GPU is fine)")] = False,
    ) -> Injected:
        """Inject a fault into the fleet twin, as the evaluation scenarios do: `xid` (node, gpu,
        xid), `ecc` (node, gpu, ecc, count), `hang` (job, rank), `slow_link` (leaf, factor),
        `throttle` (node, gpu, factor), `slow_workload` (job, factor), `sdc` (node, gpu, mode,
        transient: silent data corruption, no Xid, only the training numerics show it), `node_lost`
        (node: the host goes away, NotReady, its processes gone without a kernel line), `nic_down`
        (node: its InfiniBand link fails, the ranks there abort). The platform then sees it
        as it would see the real thing. Refused on a real cluster."""
        who = deps.identity()
        backend = deps.backend
        arguments = {
            k: v
            for k, v in {"kind": kind, "node": node, "gpu": gpu, "xid": xid, "job": job, "leaf": leaf}.items()
            if v is not None
        }
        allowed = who.role in ROLES and isinstance(backend, TwinBackend)

        async def audit(ok: bool, result: str) -> None:
            await deps.audit.record(
                AuditRecord(
                    time=deps.clock(),
                    cluster=backend.cluster,
                    principal=who.id,
                    role=who.role,
                    tool="inject_fault",
                    arguments=arguments,
                    decision="allow" if allowed else "deny",
                    reasons=[] if allowed else [RULE],
                    ok=ok,
                    result=result,
                )
            )

        if not isinstance(backend, TwinBackend):
            await audit(False, f"refused: the backend is {backend.kind}")
            raise ToolError(
                f"inject_fault is refused: the backend is {backend.kind}, not the fleet twin ({RULE})"
            )
        if who.role not in ROLES:
            await audit(False, "refused: role")
            raise ToolError(f"inject_fault is denied for {who.id} (role {who.role}): {RULE}")
        try:
            done = inject(
                backend, kind, node=node, gpu=gpu, xid=xid, ecc=ecc, count=count,
                job=job, rank=rank, leaf=leaf, factor=factor, mode=mode, transient=transient,
            )  # fmt: skip
        except BackendError as exc:
            await audit(False, str(exc))
            raise ToolError(str(exc)) from exc
        target, detail, lines = done.target, done.detail, done.lines
        await audit(True, detail)
        return Injected(kind=kind, target=target, detail=detail, kernel_lines=lines)
