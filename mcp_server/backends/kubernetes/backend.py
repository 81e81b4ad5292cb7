"""The Kubernetes backend: nodes, GPUs and training jobs of a real cluster.

Where its state lives on the cluster: ``objects``. The backend is composed of the node reads
(``node_reads``), the job reads (``job_reads``), the node actions (``node_actions``) and, here, the
actions on a job's whole gang: a restart from its checkpoint and a swap of a node for a warm spare.
"""

from __future__ import annotations

from contracts.tools import ActionChange
from mcp_server.backends.base import BackendError, older_checkpoint_refused
from mcp_server.backends.kubernetes.diagnostics import KubernetesDiagnostics
from mcp_server.backends.kubernetes.job_reads import AT_BASELINE, JobReads
from mcp_server.backends.kubernetes.jobs import restart
from mcp_server.backends.kubernetes.node_actions import MAX_CONFLICT_RETRIES, NodeActions
from mcp_server.backends.kubernetes.objects import (
    CORDON_OWNER,
    CORDON_REASON,
    GPU_HEALTH,
    GPUS,
    ISOLATED,
    ISOLATION_TAINT,
    LAST_XID,
    REBOOT_REQUESTED,
    RESET_REQUESTED,
    KubernetesConfig,
)

__all__ = [
    "AT_BASELINE",
    "CORDON_OWNER",
    "CORDON_REASON",
    "GPUS",
    "GPU_HEALTH",
    "ISOLATED",
    "ISOLATION_TAINT",
    "LAST_XID",
    "MAX_CONFLICT_RETRIES",
    "REBOOT_REQUESTED",
    "RESET_REQUESTED",
    "KubernetesBackend",
    "KubernetesConfig",
]


class KubernetesBackend(KubernetesDiagnostics, NodeActions, JobReads):
    """Reads of nodes and jobs, actions on nodes, and the actions on a job's gang below."""

    async def restart_from_checkpoint(
        self, job: str, reason: str, actor: str, at_or_before_step: int | None = None
    ) -> ActionChange:
        if at_or_before_step is not None:
            older_checkpoint_refused(job, at_or_before_step, (await self.get_job(job)).last_checkpoint_step)
        obj = await self._job(job)
        state = self.jobs_api.state_of(obj)
        if state in ("restarting", "completed"):
            return ActionChange(changed=False, detail=f"{job} is already {state}; nothing changed")
        done = await restart(self.api, self.jobs_api, self.config.job_namespace, obj, reason, actor)
        return ActionChange(
            changed=True, detail=done, data={"state": "restarting", "kind": self.jobs_api.kind}
        )

    async def swap_spare(self, job: str, node: str, reason: str, actor: str) -> ActionChange:
        view = await self.get_job(job)
        if node not in view.nodes:
            raise BackendError(f"{node} is not in the gang of {job} ({', '.join(view.nodes) or 'no nodes'})")
        pool = await self.spare_pool(job, node)
        if pool.candidate is None:
            raise BackendError(f"no fit warm spare to replace {node} in {job}")
        spare = pool.candidate
        await self.cordon_node(node, f"swapped out of {job}: {reason}", actor)
        await self._patch_node(
            spare, lambda obj: {"metadata": {"labels": {self.config.pool_label: "training"}}}
        )
        restarted = await self.restart_from_checkpoint(job, f"swap {node} for {spare}: {reason}", actor)
        return ActionChange(
            changed=True,
            detail=f"{spare} left the spare pool for {job}; {node} cordoned; {restarted.detail}",
            data={"old": node, "new": spare},
        )
