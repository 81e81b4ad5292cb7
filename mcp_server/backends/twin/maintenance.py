"""The fleet twin's remediation actions as the backend protocol speaks them (``fleet.maintenance``).

A mixin of ``TwinBackend``: the spare pool, job progress, service status, and the mutations the
remediation tools call. Cordons carry the platform's owner tag, so ``uncordon_node`` lifts only
cordons this platform set, whoever set the others.
"""

from __future__ import annotations

from contracts.tools import (
    ActionChange,
    JobProgress,
    ServiceStatus,
    SparePool,
    SpareView,
    owned_by_platform,
    platform_owner,
)
from fleet import FleetError, FleetTwin
from fleet.errors import UnknownGpuError, UnknownJobError, UnknownNodeError
from fleet.results import ActionResult
from mcp_server.backends.base import BackendError, NotFound

AT_BASELINE = 1.10
"""A job whose step time is within 10% of its baseline trains at full speed (noise, not a fault)."""


def _fail(exc: FleetError) -> BackendError:
    if isinstance(exc, UnknownNodeError | UnknownGpuError | UnknownJobError):
        return NotFound(str(exc))
    return BackendError(str(exc))


def _change(result: ActionResult) -> ActionChange:
    return ActionChange(changed=result.changed, detail=result.detail, data=dict(result.data))


class TwinMaintenance:
    twin: FleetTwin

    async def spare_pool(self, job: str | None = None, node: str | None = None) -> SparePool:
        per_node = self.twin.spec.gpus_per_node
        maintenance = self.twin.maintenance
        spares = [
            SpareView(
                name=n.name,
                rack=n.rack,
                leaf_switch=n.leaf,
                fit=n in maintenance.fit_spares(),
                why_unfit=n.unfit_reason(per_node) or maintenance.activity(n.name),
            )
            for n in maintenance.spares()
        ]
        pool = SparePool(spares=spares, fit=sum(1 for s in spares if s.fit))
        if job and node:
            try:
                choice = maintenance.choose_spare(job, node)
            except FleetError as exc:
                raise _fail(exc) from exc
            if choice is not None:
                pool.candidate, pool.candidate_why = choice.node.name, choice.why
        return pool

    async def job_progress(self, job: str) -> JobProgress:
        try:
            target = self.twin.job(job)
        except FleetError as exc:
            raise _fail(exc) from exc
        baseline = self.twin.telemetry.base_step_s(target)
        observed = self.twin.telemetry.step_profile(target)[0]
        slowdown = round(observed / baseline, 4) if baseline > 0 else 1.0
        at_baseline = slowdown <= AT_BASELINE
        return JobProgress(
            job=target.name,
            state=target.state,
            step=target.step,
            nodes=list(target.nodes),
            restarts=target.restarts,
            baseline_step_s=baseline,
            observed_step_s=round(observed, 4),
            slowdown=slowdown,
            at_baseline=at_baseline,
            resumed=target.state == "running" and at_baseline,
            resumes_at=target.restart_ready_at,
        )

    async def service_status(self, node: str) -> ServiceStatus:
        try:
            target = self.twin.node(node)
        except FleetError as exc:
            raise _fail(exc) from exc
        maintenance = self.twin.maintenance.activity(node)
        unhealthy = [g.index for g in target.gpus if g.health != "healthy"]
        isolated = [g.index for g in target.gpus if g.isolated]
        ours = owned_by_platform(target.cordon_owner)
        why_not = []
        if target.state != "ready" or maintenance:
            why_not.append(f"{node} is {maintenance or target.state}")
        if unhealthy:
            why_not.append(f"GPU {', '.join(map(str, unhealthy))} not healthy")
        if target.cordoned and not ours:
            why_not.append(f"cordoned by {target.cordon_owner!r}, not by this platform: left to its owner")
        in_service = target.state == "ready" and not target.cordoned and not unhealthy and not isolated
        return ServiceStatus(
            node=node,
            state=target.state,
            ready=target.state == "ready",
            all_gpus_healthy=not unhealthy,
            unhealthy_gpus=unhealthy,
            isolated_gpus=isolated,
            cordoned=target.cordoned,
            cordon_owner=target.cordon_owner,
            cordoned_by_platform=target.cordoned and ours,
            maintenance=maintenance,
            jobs=[j.name for j in self.twin.jobs_on_node(node)],
            spare=target.spare,
            in_service=in_service,
            can_return=not why_not,
            why_not=why_not,
        )

    async def swap_spare(self, job: str, node: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.maintenance.swap_spare(job, node, f"{reason} (by {actor})"))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def cordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.cordon_node(node, platform_owner(actor)))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def uncordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        try:
            target = self.twin.node(node)
            # Any principal of this platform may lift the platform's cordon (the agent took the node
            # out, an operator puts it back); a cordon somebody else set is theirs alone.
            owner = target.cordon_owner if owned_by_platform(target.cordon_owner) else platform_owner(actor)
            return _change(self.twin.maintenance.uncordon_node(node, owner or platform_owner(actor)))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def drain_node(self, node: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.maintenance.drain_node(node, platform_owner(actor), reason))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def reset_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.maintenance.reset_gpu(node, gpu, f"{reason} (by {actor})"))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def reboot_node(self, node: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.maintenance.reboot_node(node, f"{reason} (by {actor})"))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def restore_gpus(self, node: str, reason: str, actor: str) -> ActionChange:
        try:
            return _change(self.twin.maintenance.restore_gpus(node, f"{reason} (by {actor})"))
        except FleetError as exc:
            raise _fail(exc) from exc
