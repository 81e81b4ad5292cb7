"""The ``inject_fault`` tool: make the fleet twin fail the way the scenarios do (an Xid, an ECC
error, a hung job, a slow link, a throttled GPU, a slow workload), so a person can try the platform
(``aiops inject``) and the console. Refused on any backend but the twin: it is a simulator's lever,
never a production one. Operators and admins only; every call is audited."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from events.models import AuditRecord
from fleet.errors import FleetError
from fleet.telemetry import EccInjection
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.deps import ServerDeps
from mcp_server.tools._common import mutating

FaultKind = Literal["xid", "ecc", "hang", "slow_link", "throttle", "slow_workload"]
ROLES = ("operator", "admin")
RULE = "inject_fault: only operators and admins inject faults, and only into the fleet twin"


class Injected(BaseModel):
    kind: FaultKind
    target: str
    detail: str
    kernel_lines: list[str] = Field(default_factory=list, description="what the driver printed")


def _need(value: object, name: str, kind: str) -> None:
    if value is None:
        raise ToolError(f"a {kind} injection needs {name}")


def register(server: MCPServer, deps: ServerDeps) -> None:
    @server.tool(annotations=mutating(destructive=True, idempotent=False))
    async def inject_fault(
        kind: Annotated[FaultKind, Field(description="what breaks")],
        node: Annotated[str | None, Field(description="xid, ecc, throttle: the node")] = None,
        gpu: Annotated[int | None, Field(ge=0, le=15, description="xid, ecc, throttle: GPU index")] = None,
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
    ) -> Injected:
        """Inject a fault into the fleet twin, as the evaluation scenarios do: `xid` (node, gpu,
        xid), `ecc` (node, gpu, ecc, count), `hang` (job, rank), `slow_link` (leaf, factor),
        `throttle` (node, gpu, factor), `slow_workload` (job, factor). The platform then sees it
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
        twin = backend.twin
        lines: list[str] = []
        try:
            if kind in ("xid", "ecc", "throttle"):
                _need(node, "node", kind)
                _need(gpu, "gpu", kind)
                assert node is not None and gpu is not None
                target = f"{node}/gpu{gpu}"
                if kind == "xid":
                    _need(xid, "xid", kind)
                    assert xid is not None
                    lines = twin.inject_xid(node, gpu, xid)
                    detail = f"Xid {xid} on {target}"
                elif kind == "ecc":
                    lines = twin.inject_ecc(node, gpu, ecc, count)
                    detail = f"ECC {ecc} x{count} on {target}"
                else:
                    twin.throttle_gpu(node, gpu, factor)
                    detail = f"{target} throttled x{factor:g}"
            elif kind in ("hang", "slow_workload"):
                _need(job, "job", kind)
                assert job is not None
                target = job
                if kind == "hang":
                    hung = twin.inject_hang(job, rank)
                    detail = f"{job} hung at rank {hung}"
                else:
                    twin.slow_workload(job, factor)
                    detail = f"{job} computes x{factor:g} slower"
            else:
                _need(leaf, "leaf", kind)
                assert leaf is not None
                target = leaf
                twin.degrade_link(leaf, factor)
                detail = f"collectives through {leaf} x{factor:g} slower"
        except FleetError as exc:
            await audit(False, str(exc))
            raise ToolError(str(exc)) from exc
        await audit(True, detail)
        return Injected(kind=kind, target=target, detail=detail, kernel_lines=lines)
