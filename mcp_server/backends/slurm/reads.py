"""What the Slurm backend reads: nodes from ``sinfo --json``, jobs from ``squeue --json``, spares
from the site's partition or reservation, and the views the tools speak built from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.tools import (
    CheckpointStatus,
    FleetContext,
    GpuHealth,
    GpuView,
    JobProgress,
    JobView,
    NodeDetail,
    NodeQuery,
    NodeSummary,
    ServiceStatus,
    SparePool,
    owned_by_platform,
)
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.slurm.commands import SlurmCommands, SlurmConfig
from mcp_server.backends.slurm.conventions import (
    Json,
    ParseError,
    drain_owner,
    fact_float,
    fact_time,
    node_record,
)
from mcp_server.backends.slurm.parse import (
    SlurmJob,
    SlurmNode,
    expand_hostlist,
    parse_jobs,
    parse_nodes,
    scontrol_records,
)
from mcp_server.backends.spares import pool_of, spare_view

AT_BASELINE = 1.10


def now() -> datetime:
    return datetime.now(UTC)


class SlurmReads:
    def __init__(self, commands: SlurmCommands) -> None:
        self.cmd = commands
        self.config: SlurmConfig = commands.config

    @property
    def kind(self) -> str:
        return "slurm"

    @property
    def cluster(self) -> str:
        return self.config.cluster

    # -- Slurm's answers ----------------------------------------------------------------------------

    async def _nodes(self) -> list[SlurmNode]:
        try:
            return parse_nodes(await self.cmd.json("sinfo"))
        except ParseError as exc:
            raise BackendError(str(exc)) from exc

    async def _node(self, name: str) -> SlurmNode:
        nodes = await self._nodes()
        for node in nodes:
            if node.name == name:
                return node
        raise NotFound(f"no node named {name!r} in Slurm cluster {self.cluster} ({len(nodes)} nodes)")

    async def _jobs(self) -> list[SlurmJob]:
        try:
            return parse_jobs(await self.cmd.json("squeue"))
        except ParseError as exc:
            raise BackendError(str(exc)) from exc

    async def _job(self, name: str) -> SlurmJob:
        """By job id, or by job name when one live job has it."""
        jobs = await self._jobs()
        if name.isdigit():
            for job in jobs:
                if job.job_id == int(name):
                    return job
        named = [j for j in jobs if j.name == name]
        live = [j for j in named if j.state not in ("completed", "failed")] or named
        if len(live) == 1:
            return live[0]
        if len(live) > 1:
            ids = ", ".join(str(j.job_id) for j in live)
            raise BackendError(f"several Slurm jobs are named {name!r} (ids {ids}): name the job by its id")
        raise NotFound(f"no Slurm job {name!r} (by id or name) in the queue of {self.cluster}")

    async def _spare_names(self, nodes: list[SlurmNode] | None = None) -> set[str]:
        if self.config.spare_partition:
            nodes = nodes if nodes is not None else await self._nodes()
            return {n.name for n in nodes if self.config.spare_partition in n.partitions}
        if self.config.spare_reservation:
            records = scontrol_records(
                await self.cmd.run("scontrol", "show", "reservation", self.config.spare_reservation, "-o")
            )
            return {name for r in records for name in expand_hostlist(r.get("Nodes"))}
        return set()

    # -- views ----------------------------------------------------------------------------------------

    def _gpus(self, node: SlurmNode) -> list[GpuView]:
        record = node_record(node.comment)
        isolated: dict[str, dict[str, str]] = record.get("isolated") or {}
        extra = node.extra
        inventory = extra.get("gpus") if isinstance(extra.get("gpus"), list) else None
        if not inventory:
            count = int(record.get("gres") or node.gpus)
            inventory = [{"index": i} for i in range(count)]
        health: Json = extra["gpu_health"] if isinstance(extra.get("gpu_health"), dict) else {}
        last_xid: Json = extra["last_xid"] if isinstance(extra.get("last_xid"), dict) else {}
        views = []
        for entry in inventory:
            index = str(entry["index"])
            state: GpuHealth = health.get(index, "healthy")
            xid = last_xid.get(index)
            views.append(
                GpuView.model_construct(
                    index=int(entry["index"]),
                    uuid=str(entry.get("uuid", "unknown")),
                    pci_bus_id=str(entry.get("pci_bus_id", "unknown")),
                    health=state if state in ("healthy", "fallen_off_bus", "error") else "unknown",
                    isolated=index in isolated,
                    isolation_reason=(isolated.get(index) or {}).get("reason"),
                    last_xid=int(xid) if isinstance(xid, int | str) and str(xid).isdigit() else None,
                )
            )
        return sorted(views, key=lambda g: g.index)

    def _owner(self, node: SlurmNode) -> str | None:
        if not node.drained:
            return None
        return drain_owner(node.reason) or node.reason_by or "slurm"

    def _summary(self, node: SlurmNode, jobs: list[str], spares: set[str]) -> NodeSummary:
        gpus = self._gpus(node)
        return NodeSummary.model_construct(
            name=node.name,
            state=node.view_state,
            rack=str(node.extra.get("rack", "unknown")),
            leaf_switch=str(node.extra.get("leaf_switch", "unknown")),
            cordoned=node.drained,
            cordon_owner=self._owner(node),
            spare=node.name in spares,
            gpus_total=len(gpus),
            gpus_healthy=sum(1 for g in gpus if g.health == "healthy"),
            gpus_isolated=sum(1 for g in gpus if g.isolated),
            jobs=jobs,
        )

    def _labels(self, node: SlurmNode) -> dict[str, str]:
        labels = {feature: "" for feature in node.features}
        labels["slurm/partitions"] = ",".join(node.partitions)
        labels["slurm/state"] = node.state + "".join(f"+{f}" for f in sorted(node.flags))
        if node.reason:
            labels["slurm/reason"] = node.reason
        return labels

    def _detail(self, node: SlurmNode, jobs: list[str], spares: set[str]) -> NodeDetail:
        summary = self._summary(node, jobs, spares)
        return NodeDetail.model_construct(
            **summary.__dict__, labels=self._labels(node), gpus=self._gpus(node)
        )

    @staticmethod
    def _jobs_by_node(jobs: list[SlurmJob]) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for job in jobs:
            if job.active:
                for name in job.nodes:
                    by_node.setdefault(name, []).append(str(job.job_id))
        return by_node

    async def list_nodes(self) -> list[NodeDetail]:
        nodes, jobs = await self._nodes(), self._jobs_by_node(await self._jobs())
        spares = await self._spare_names(nodes)
        return [self._detail(n, jobs.get(n.name, []), spares) for n in nodes]

    async def node_summaries(self, query: NodeQuery | None = None) -> list[NodeSummary]:
        query = query or NodeQuery()
        nodes, jobs = await self._nodes(), self._jobs_by_node(await self._jobs())
        spares = await self._spare_names(nodes)
        out = []
        for node in nodes:
            summary = self._summary(node, jobs.get(node.name, []), spares)
            if query.admits(summary, self._labels(node)):
                out.append(summary)
        return out

    async def get_node(self, name: str) -> NodeDetail:
        node = await self._node(name)
        jobs = self._jobs_by_node(await self._jobs())
        return self._detail(node, jobs.get(name, []), await self._spare_names())

    def _job_view(self, job: SlurmJob) -> JobView:
        facts = job.facts
        # A pending or requeued job has no nodes yet: it will take node_count of them.
        gpus = sum(len(v) for v in job.gpus_by_node.values()) or job.node_count * job.gpus_per_node
        return JobView.model_construct(
            name=str(job.job_id),
            state=job.state,
            nodes=list(job.nodes),
            gpus=gpus,
            step=int(fact_float(facts, "step") or 0),
            step_time_s=fact_float(facts, "step_time_s") or 0.0,
            checkpoint_interval_s=fact_float(facts, "checkpoint_interval_s") or 0.0,
            last_checkpoint_at=fact_time(facts, "checkpoint_at"),
            last_checkpoint_step=int(fact_float(facts, "checkpoint_step") or 0),
            restarts=job.restarts,
            gpu_hours_lost=fact_float(facts, "gpu_hours_lost") or 0.0,
            baseline_step_s=fact_float(facts, "baseline_step_s"),
        )

    async def list_jobs(self) -> list[JobView]:
        return [self._job_view(j) for j in await self._jobs()]

    async def get_job(self, name: str) -> JobView:
        return self._job_view(await self._job(name))

    async def job_for_gpu(self, node: str, gpu: int) -> JobView | None:
        detail = await self.get_node(node)
        if not any(g.index == gpu for g in detail.gpus):
            raise NotFound(f"no GPU {gpu} on {node} (it has GPUs 0..{detail.gpus_total - 1})")
        on_node = [j for j in await self._jobs() if j.active and node in j.nodes]
        for job in on_node:
            if gpu in job.gpus_by_node.get(node, ()):
                return self._job_view(job)
        # Without GRES detail (a job that asked for none), a job on the node is the best answer.
        unknown = [j for j in on_node if node not in j.gpus_by_node]
        return self._job_view(unknown[0]) if unknown else None

    async def checkpoint_status(self, job: str) -> CheckpointStatus:
        view = await self.get_job(job)
        at = view.last_checkpoint_at
        age = (now() - at).total_seconds() if at else None
        at_risk = (view.step - view.last_checkpoint_step) * view.step_time_s * view.gpus / 3600
        return CheckpointStatus(
            job=view.name,
            state=view.state,
            has_checkpoint=at is not None,
            last_checkpoint_at=at,
            last_checkpoint_step=view.last_checkpoint_step,
            current_step=view.step,
            checkpoint_age_s=round(age, 3) if age is not None else None,
            checkpoint_interval_s=view.checkpoint_interval_s,
            gpus=view.gpus,
            gpu_hours_at_risk=round(max(0.0, at_risk), 4),
        )

    async def job_progress(self, job: str) -> JobProgress:
        view = await self.get_job(job)
        if not view.baseline_step_s or not view.step_time_s:
            raise BackendError(
                f"Slurm job {view.name} reports no step times: its training loop writes "
                "step_time_s= and baseline_step_s= into the job comment after 'gpu-aiops:'"
            )
        slowdown = round(view.step_time_s / view.baseline_step_s, 4)
        return JobProgress(
            job=view.name,
            state=view.state,
            step=view.step,
            nodes=view.nodes,
            restarts=view.restarts,
            baseline_step_s=view.baseline_step_s,
            observed_step_s=view.step_time_s,
            slowdown=slowdown,
            at_baseline=slowdown <= AT_BASELINE,
            resumed=view.state == "running" and slowdown <= AT_BASELINE,
        )

    async def fleet_context(self) -> FleetContext:
        nodes = await self._nodes()
        hour_ago = now() - timedelta(hours=1)
        recent = out = 0
        for node in nodes:
            isolated = node_record(node.comment).get("isolated") or {}
            for entry in isolated.values():
                try:
                    recent += datetime.fromisoformat(str(entry.get("at", ""))) >= hour_ago
                except (ValueError, AttributeError, TypeError):
                    continue
            out += bool(node.drained or isolated or node.view_state != "ready")
        return FleetContext(
            now=now(), isolations_last_hour=recent, cluster_nodes=len(nodes), nodes_out_of_service=out
        )

    async def service_status(self, node: str) -> ServiceStatus:
        target = await self._node(node)
        jobs = self._jobs_by_node(await self._jobs()).get(node, [])
        detail = self._detail(target, jobs, await self._spare_names())
        unhealthy = [g.index for g in detail.gpus if g.health != "healthy"]
        isolated = [g.index for g in detail.gpus if g.isolated]
        ours = owned_by_platform(detail.cordon_owner)
        why_not = []
        if detail.state != "ready":
            why_not.append(
                f"{node} is {detail.state} ({target.state}{''.join('+' + f for f in sorted(target.flags))})"
            )
        if unhealthy:
            why_not.append(f"GPU {', '.join(map(str, unhealthy))} not healthy")
        if detail.cordoned and not ours:
            why_not.append(
                f"drained by {detail.cordon_owner!r} ({target.reason or 'no reason'}), not by this platform: "
                "left to its owner"
            )
        return ServiceStatus(
            node=node,
            state=detail.state,
            ready=detail.state == "ready",
            all_gpus_healthy=not unhealthy,
            unhealthy_gpus=unhealthy,
            isolated_gpus=isolated,
            cordoned=detail.cordoned,
            cordon_owner=detail.cordon_owner,
            cordoned_by_platform=detail.cordoned and ours,
            maintenance="reboot" if target.rebooting else None,
            jobs=detail.jobs,
            spare=detail.spare,
            in_service=detail.state == "ready" and not detail.cordoned and not unhealthy and not isolated,
            can_return=not why_not,
            why_not=why_not,
        )

    async def spare_pool(self, job: str | None = None, node: str | None = None) -> SparePool:
        nodes = await self._nodes()
        names = await self._spare_names(nodes)
        busy = self._jobs_by_node(await self._jobs())
        spares = []
        for target in nodes:
            if target.name not in names:
                continue
            summary = self._summary(target, busy.get(target.name, []), names)
            why = None
            if summary.state != "ready":
                why = f"{summary.name} is {summary.state}"
            elif summary.cordoned:
                why = f"{summary.name} is drained by {summary.cordon_owner}"
            elif summary.jobs:
                why = f"{summary.name} runs job {', '.join(summary.jobs)}"
            elif summary.gpus_healthy < summary.gpus_total or summary.gpus_isolated:
                why = f"{summary.name} has GPUs out of service"
            spares.append(spare_view(summary, why))
        return pool_of(
            spares,
            str((await self._node(node)).extra.get("leaf_switch", "unknown")) if job and node else None,
        )
