"""The backend protocol: the one seam where the MCP tools meet a cluster."""

from __future__ import annotations

from typing import Protocol

from contracts.tools import (
    ActionChange,
    CheckpointStatus,
    DiagnosticLevel,
    DiagnosticsReport,
    FleetContext,
    JobProgress,
    JobView,
    NodeDetail,
    NodeQuery,
    NodeSummary,
    ServiceStatus,
    SparePool,
)


class BackendError(Exception):
    """A failure the caller should read (bad target, refused action); becomes a tool error."""


class NotFound(BackendError):
    pass


def older_checkpoint_refused(job: str, at_or_before_step: int, newest_step: int) -> None:
    """The training loop restores its newest checkpoint (the job's convention): an older one cannot
    be asked for, so a restart that needs one is refused instead of restoring the wrong one."""
    if at_or_before_step < newest_step:
        raise BackendError(
            f"restart of {job} at or before step {at_or_before_step} is not supported here: its training "
            f"loop restores its newest checkpoint (step {newest_step}); restore an older one by hand"
        )


class ClusterBackend(Protocol):
    """Cluster, scheduler and fleet state. Mutations are idempotent: repeating one changes nothing."""

    @property
    def kind(self) -> str: ...

    @property
    def cluster(self) -> str: ...

    async def list_nodes(self) -> list[NodeDetail]: ...

    async def node_summaries(self, query: NodeQuery | None = None) -> list[NodeSummary]:
        """Every node ``query`` admits (all without one), without GPU detail: the fast listing."""
        ...

    async def get_node(self, name: str) -> NodeDetail: ...

    async def list_jobs(self) -> list[JobView]: ...

    async def get_job(self, name: str) -> JobView: ...

    async def job_for_gpu(self, node: str, gpu: int) -> JobView | None: ...

    async def checkpoint_status(self, job: str) -> CheckpointStatus: ...

    async def fleet_context(self) -> FleetContext: ...

    async def isolate_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange: ...

    async def restart_from_checkpoint(
        self, job: str, reason: str, actor: str, at_or_before_step: int | None = None
    ) -> ActionChange:
        """From the last checkpoint, or the newest with step <= ``at_or_before_step`` (a
        ``BackendError`` when none is kept, or the backend cannot choose one)."""
        ...

    # -- remediation (tools/remediation.py). ``actor`` is the principal; cordons this platform
    # sets carry the owner ``models.platform_owner(actor)``, and only those may it lift.

    async def spare_pool(self, job: str | None = None, node: str | None = None) -> SparePool:
        """The warm spares; with ``job`` and ``node``, the spare a swap of that member would take."""
        ...

    async def job_progress(self, job: str) -> JobProgress: ...

    async def service_status(self, node: str) -> ServiceStatus: ...

    async def swap_spare(self, job: str, node: str, reason: str, actor: str) -> ActionChange: ...

    async def cordon_node(self, node: str, reason: str, actor: str) -> ActionChange: ...

    async def uncordon_node(self, node: str, reason: str, actor: str) -> ActionChange: ...

    async def drain_node(self, node: str, reason: str, actor: str) -> ActionChange: ...

    async def reset_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange: ...

    async def reboot_node(self, node: str, reason: str, actor: str) -> ActionChange: ...

    async def restore_gpus(self, node: str, reason: str, actor: str) -> ActionChange:
        """Return the node's isolated GPUs that are healthy again to service."""
        ...

    # -- silent data corruption (tools/diagnostics.py)

    async def stop_job(self, job: str, reason: str, actor: str) -> ActionChange:
        """Stop a running job and keep its gang (its GPUs go idle for diagnostics)."""
        ...

    async def run_diagnostics(
        self, node: str, level: DiagnosticLevel, reason: str, actor: str
    ) -> ActionChange:
        """Start DCGM diagnostics on the node's GPUs (refused while a running job holds them)."""
        ...

    async def diagnostics_report(self, node: str) -> DiagnosticsReport: ...
