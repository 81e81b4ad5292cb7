"""The fleet twin's side of silent data corruption: stopping a job to free its GPUs, and DCGM
diagnostics on a node (``fleet.diagnostics``). A mixin of ``TwinBackend``."""

from __future__ import annotations

from contracts.tools import ActionChange, DiagnosticLevel, DiagnosticsReport, GpuDiagnosisView
from fleet import FleetError, FleetTwin
from mcp_server.backends.base import BackendError
from mcp_server.backends.twin.maintenance import _change, _fail


class TwinDiagnostics:
    twin: FleetTwin

    async def stop_job(self, job: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.stop_job(job, f"{reason} (by {actor})"))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def run_diagnostics(
        self, node: str, level: DiagnosticLevel, reason: str, actor: str
    ) -> ActionChange:
        if level not in (1, 2, 3, 4):
            raise BackendError(f"DCGM diagnostics run at level 1, 2, 3 or 4, not {level}")
        try:
            run, started = self.twin.run_diagnostics(node, level, f"{reason} (by {actor})")
        except FleetError as exc:
            raise _fail(exc) from exc
        verb = "started" if started else f"already running (level {run.level}); nothing changed:"
        detail = (
            f"DCGM diagnostics level {level} {verb} on {node}: {', '.join(run.tests)}; "
            f"finishes at {run.finishes_at.isoformat()} ({run.duration_s:.0f} s); read diagnostics_report"
        )
        data: dict[str, str | int | float | bool | None] = {
            "node": node,
            "level": run.level,
            "duration_s": run.duration_s,
            "finishes_at": run.finishes_at.isoformat(),
        }
        return ActionChange(changed=started, detail=detail, data=data)

    async def diagnostics_report(self, node: str) -> DiagnosticsReport:
        try:
            self.twin.node(node)
        except FleetError as exc:
            raise _fail(exc) from exc
        run, finished = self.twin.diagnostics.latest(node, self.twin.now())
        if run is None:
            return DiagnosticsReport(node=node, state="none")
        state = "running" if not finished else ("failed" if run.failing else "passed")
        return DiagnosticsReport(
            node=node,
            state=state,
            level=run.level,
            tests=list(run.tests),
            started_at=run.started_at,
            finishes_at=run.finishes_at,
            duration_s=run.duration_s,
            gpus=[GpuDiagnosisView(**g.model_dump()) for g in run.gpus] if finished else [],
            failing_gpus=run.failing if finished else [],
        )
