"""The fleet-twin backend: the embedded default, an adapter from ``fleet.FleetTwin`` to the views
the tools speak. The twin is synchronous and lives in the same event loop, so calls are direct."""

from __future__ import annotations

from datetime import timedelta

from contracts.tools import (
    ActionChange,
    CheckpointStatus,
    CheckpointView,
    FleetContext,
    GpuView,
    JobView,
    NodeDetail,
    NodeQuery,
    NodeSummary,
)
from fleet import FleetError, FleetTwin, Node, TrainingJob
from fleet.errors import UnknownGpuError, UnknownJobError, UnknownNodeError
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.twin.diagnostics import TwinDiagnostics
from mcp_server.backends.twin.maintenance import TwinMaintenance


def _fail(exc: FleetError) -> BackendError:
    if isinstance(exc, UnknownNodeError | UnknownGpuError | UnknownJobError):
        return NotFound(str(exc))
    return BackendError(str(exc))


class TwinBackend(TwinMaintenance, TwinDiagnostics):
    def __init__(self, twin: FleetTwin) -> None:
        self.twin = twin
        self._summaries: dict[str, tuple[tuple[object, ...], NodeSummary]] = {}

    @property
    def kind(self) -> str:
        return "twin"

    @property
    def cluster(self) -> str:
        return self.twin.name

    def _jobs_by_node(self) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for job in self.twin.jobs.values():
            if job.active:
                for name in job.nodes:
                    by_node.setdefault(name, []).append(job.name)
        return by_node

    def _summary(self, node: Node, jobs: list[str]) -> NodeSummary:
        # The twin's values already have the views' types: construct without re-validating
        # (a describe_node on a 12,000-GPU twin stays well under a millisecond).
        return NodeSummary.model_construct(
            name=node.name,
            state=node.state,
            rack=node.rack,
            leaf_switch=node.leaf,
            cordoned=node.cordoned,
            cordon_owner=node.cordon_owner,
            spare=node.spare,
            gpus_total=len(node.gpus),
            gpus_healthy=sum(1 for g in node.gpus if g.health == "healthy"),
            gpus_isolated=sum(1 for g in node.gpus if g.isolated),
            jobs=jobs,
        )

    def _node_view(self, node: Node) -> NodeDetail:
        summary = self._summary(node, [j.name for j in self.twin.jobs_on_node(node.name)])
        return NodeDetail.model_construct(
            **summary.__dict__,
            labels=dict(node.labels),
            gpus=[
                GpuView.model_construct(
                    index=g.index,
                    uuid=g.uuid,
                    pci_bus_id=g.pci_bus_id,
                    health=g.health,
                    isolated=g.isolated,
                    isolation_reason=g.isolation_reason,
                    last_xid=g.last_xid,
                )
                for g in sorted(node.gpus, key=lambda g: g.index)
            ],
        )

    async def node_summaries(self, query: NodeQuery | None = None) -> list[NodeSummary]:
        query = query or NodeQuery()
        by_node = self._jobs_by_node()
        cache = self._summaries
        out = []
        for node in self.twin.nodes.values():
            # Cheap attribute filters first: most of a big fleet never becomes a model.
            if (query.rack and node.rack != query.rack) or (
                query.leaf_switch and node.leaf != query.leaf_switch
            ):
                continue
            jobs = by_node.get(node.name, [])
            # A summary is rebuilt only when something it shows changed (listing 1,500 nodes
            # otherwise spends most of its time constructing identical models).
            key = (
                node.state,
                node.cordoned,
                node.cordon_owner,
                node.spare,
                tuple((g.health, g.isolated) for g in node.gpus),
                tuple(jobs),
            )
            cached = cache.get(node.name)
            if cached is None or cached[0] != key:
                cached = cache[node.name] = (key, self._summary(node, jobs))
            if query.admits(cached[1], node.labels):
                out.append(cached[1])
        return out

    def _job_view(self, job: TrainingJob) -> JobView:
        return JobView(
            name=job.name,
            state=job.state,
            nodes=list(job.nodes),
            gpus=job.gpus,
            step=job.step,
            step_time_s=job.step_time_s,
            checkpoint_interval_s=job.checkpoint_interval_s,
            last_checkpoint_at=job.last_checkpoint_at,
            last_checkpoint_step=job.last_checkpoint_step,
            restarts=job.restarts,
            gpu_hours_lost=round(job.gpu_hours_lost, 4),
            baseline_step_s=self.twin.telemetry.base_step_s(job),
        )

    async def list_nodes(self) -> list[NodeDetail]:
        return [self._node_view(n) for n in self.twin.nodes.values()]

    async def get_node(self, name: str) -> NodeDetail:
        try:
            return self._node_view(self.twin.node(name))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def list_jobs(self) -> list[JobView]:
        return [self._job_view(j) for j in self.twin.jobs.values()]

    async def get_job(self, name: str) -> JobView:
        try:
            return self._job_view(self.twin.job(name))
        except FleetError as exc:
            raise _fail(exc) from exc

    async def job_for_gpu(self, node: str, gpu: int) -> JobView | None:
        try:
            self.twin.gpu(node, gpu)
            job = self.twin.job_for_gpu(node, gpu)
        except FleetError as exc:
            raise _fail(exc) from exc
        return self._job_view(job) if job is not None else None

    async def checkpoint_status(self, job: str) -> CheckpointStatus:
        try:
            target = self.twin.job(job)
        except FleetError as exc:
            raise _fail(exc) from exc
        age = target.checkpoint_age_s(self.twin.now())
        return CheckpointStatus(
            job=target.name,
            state=target.state,
            has_checkpoint=target.last_checkpoint_at is not None,
            last_checkpoint_at=target.last_checkpoint_at,
            last_checkpoint_step=target.last_checkpoint_step,
            current_step=target.step,
            checkpoint_age_s=round(age, 3) if age is not None else None,
            checkpoint_interval_s=target.checkpoint_interval_s,
            gpus=target.gpus,
            gpu_hours_at_risk=round(target.work_since_checkpoint_s * target.gpus / 3600, 4),
            checkpoints=[CheckpointView(step=c.step, at=c.at) for c in target.checkpoints],
        )

    async def fleet_context(self) -> FleetContext:
        now = self.twin.now()
        nodes = self.twin.nodes.values()
        out = sum(1 for n in nodes if n.cordoned or n.state != "ready" or any(g.isolated for g in n.gpus))
        return FleetContext(
            now=now,
            isolations_last_hour=len(self.twin.isolations_since(now - timedelta(hours=1))),
            cluster_nodes=len(self.twin.nodes),
            nodes_out_of_service=out,
        )

    async def isolate_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        try:
            result = self.twin.isolate_gpu(node, gpu, f"{reason} (by {actor})")
        except FleetError as exc:
            raise _fail(exc) from exc
        return ActionChange(changed=result.changed, detail=result.detail, data=dict(result.data))

    async def restart_from_checkpoint(
        self, job: str, reason: str, actor: str, at_or_before_step: int | None = None
    ) -> ActionChange:
        try:
            target = self.twin.job(job)
            now = self.twin.now()
            stalled_s = (now - target.stalled_since).total_seconds() if target.stalled_since else 0.0
            result = self.twin.restart_from_checkpoint(job, f"{reason} (by {actor})", at_or_before_step)
        except FleetError as exc:
            raise _fail(exc) from exc
        data = dict(result.data)
        if result.changed:
            gpus = target.gpus
            # What this fault costs the job: idle since the fault, work since the checkpoint redone,
            # and the restart overhead still to come.
            lost = (stalled_s + result.lost_work_s + target.restart_overhead_s) * gpus / 3600
            data |= {
                "state": result.state,
                "resume_step": result.resume_step,
                "lost_steps": result.lost_steps,
                "lost_work_s": round(result.lost_work_s, 3),
                "stalled_s": round(stalled_s, 3),
                "restart_overhead_s": target.restart_overhead_s,
                "gpu_hours_lost": round(lost, 4),
                "replaced": ", ".join(f"{r.old}->{r.new}" for r in result.replacements) or None,
                "discarded_checkpoints": ", ".join(map(str, result.discarded_checkpoints)) or None,
            }
        return ActionChange(changed=result.changed, detail=result.detail, data=data)
