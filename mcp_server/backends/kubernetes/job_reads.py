"""Reading training jobs: their placement, progress and checkpoints."""

from __future__ import annotations

from contracts.tools import CheckpointStatus, JobProgress, JobView
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.kubernetes.api import Json
from mcp_server.backends.kubernetes.jobs import (
    BASELINE_STEP,
    CHECKPOINT_AT,
    CHECKPOINT_INTERVAL,
    CHECKPOINT_STEP,
    GPU_HOURS_LOST,
    STEP,
    STEP_TIME,
    annotation_float,
    annotation_time,
)
from mcp_server.backends.kubernetes.node_reads import NodeReads
from mcp_server.backends.kubernetes.objects import now

AT_BASELINE = 1.10
"""A job runs at its baseline while its step time is within 10% of it."""


class JobReads(NodeReads):
    """Training jobs as the configured job API shows them, placed on nodes by their pods."""

    async def _job(self, name: str) -> Json:
        try:
            return await self.api.get(self.jobs_api.path(self.config.job_namespace, name))
        except NotFound:
            known = [j["metadata"]["name"] for j in await self._jobs()]
            raise NotFound(
                f"no {self.jobs_api.kind} job named {name!r} in namespace {self.config.job_namespace} "
                f"(jobs: {', '.join(known) or 'none'})"
            ) from None

    async def _jobs(self) -> list[Json]:
        items: list[Json] = (await self.api.get(self.jobs_api.path(self.config.job_namespace))).get(
            "items", []
        )
        return items

    def _job_view(self, obj: Json, nodes: list[str], gpus_per_node: int) -> JobView:
        at = annotation_time(obj, CHECKPOINT_AT)
        return JobView.model_construct(
            name=obj["metadata"]["name"],
            state=self.jobs_api.state_of(obj),
            nodes=nodes,
            gpus=len(nodes) * gpus_per_node,
            step=int(annotation_float(obj, STEP) or 0),
            step_time_s=annotation_float(obj, STEP_TIME) or 0.0,
            checkpoint_interval_s=annotation_float(obj, CHECKPOINT_INTERVAL) or 0.0,
            last_checkpoint_at=at,
            last_checkpoint_step=int(annotation_float(obj, CHECKPOINT_STEP) or 0),
            restarts=self.jobs_api.restarts_of(obj),
            gpu_hours_lost=annotation_float(obj, GPU_HOURS_LOST) or 0.0,
            baseline_step_s=annotation_float(obj, BASELINE_STEP),
        )

    async def _placement(self) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Each job's nodes (rank order unknown to the API: by name) and GPUs per node."""
        by_job: dict[str, list[str]] = {}
        for node, jobs in self._jobs_of_pods(await self._pods_on()).items():
            for job in jobs:
                by_job.setdefault(job, []).append(node)
        gpus = {
            n["metadata"]["name"]: int(
                n.get("status", {}).get("capacity", {}).get(self.config.gpu_resource, "0")
            )
            for n in await self._nodes()
        }
        return {job: sorted(nodes) for job, nodes in by_job.items()}, gpus

    def _gpus_per_node(self, nodes: list[str], gpus: dict[str, int]) -> int:
        return max((gpus.get(n, 0) for n in nodes), default=0)

    async def list_jobs(self) -> list[JobView]:
        placement, gpus = await self._placement()
        out = []
        for obj in await self._jobs():
            nodes = placement.get(obj["metadata"]["name"], [])
            out.append(self._job_view(obj, nodes, self._gpus_per_node(nodes, gpus)))
        return out

    async def get_job(self, name: str) -> JobView:
        obj = await self._job(name)
        placement, gpus = await self._placement()
        nodes = placement.get(name, [])
        return self._job_view(obj, nodes, self._gpus_per_node(nodes, gpus))

    async def job_for_gpu(self, node: str, gpu: int) -> JobView | None:
        detail = await self.get_node(node)
        if not any(g.index == gpu for g in detail.gpus):
            raise NotFound(f"no GPU {gpu} on {node} (it has GPUs 0..{detail.gpus_total - 1})")
        return await self.get_job(detail.jobs[0]) if detail.jobs else None

    async def checkpoint_status(self, job: str) -> CheckpointStatus:
        view = await self.get_job(job)
        age = (now() - view.last_checkpoint_at).total_seconds() if view.last_checkpoint_at else None
        at_risk = (view.step - view.last_checkpoint_step) * view.step_time_s * view.gpus / 3600
        return CheckpointStatus(
            job=job,
            state=view.state,
            has_checkpoint=view.last_checkpoint_at is not None,
            last_checkpoint_at=view.last_checkpoint_at,
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
                f"{job} reports no step times: its training loop writes {STEP_TIME} and {BASELINE_STEP}"
            )
        slowdown = round(view.step_time_s / view.baseline_step_s, 4)
        return JobProgress(
            job=job,
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
