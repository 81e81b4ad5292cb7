"""The Kubernetes backend: nodes, GPUs and training jobs of a real cluster.

What lives where (prefix ``gpu-aiops.io/``):

- cordon: ``spec.unschedulable``; who set it: annotation ``cordon-owner`` (a cordon without it
  belongs to someone else, and this platform never lifts it);
- GPUs of a node: annotation ``gpus`` (``[{index, uuid, pci_bus_id}]``, from GPU feature
  discovery), else the node agent's NVML inventory (``inventory``, the ``gpu_inventory`` bucket),
  else ``nvidia.com/gpu`` capacity with unknown ids; their health: annotation
  ``gpu-health`` (``{"<index>": "fallen_off_bus" | "error"}``, written by the platform);
- isolation: annotation ``isolated-gpus`` (``{"<index>": {reason, by, at}}``) plus the taint
  ``gpu-isolated:NoSchedule``, so no new gang lands on a node with a GPU out;
- rack, leaf switch, spare pool: node labels (configurable; ``aiops/rack``, ``aiops/leaf``,
  ``aiops/pool=spare`` by default);
- drain: cordon, then the Eviction API for every pod but DaemonSet and mirror pods; a
  PodDisruptionBudget refusing an eviction (HTTP 429) leaves that pod running and is reported;
- GPU reset and node reboot: requests a node agent carries out (annotation ``reset-requested`` /
  ``reboot-requested``); the API has no verb for either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as kubeconfig

from contracts.tools import (
    ActionChange,
    CheckpointStatus,
    FleetContext,
    GpuHealth,
    GpuView,
    JobProgress,
    JobView,
    NodeDetail,
    NodeQuery,
    NodeState,
    NodeSummary,
    ServiceStatus,
    SparePool,
    owned_by_platform,
    platform_owner,
)
from mcp_server.backends.base import BackendError, NotFound, older_checkpoint_refused
from mcp_server.backends.kubernetes.api import Json, KubeApi, KubeError
from mcp_server.backends.kubernetes.diagnostics import KubernetesDiagnostics
from mcp_server.backends.kubernetes.jobs import (
    BASELINE_STEP,
    CHECKPOINT_AT,
    CHECKPOINT_INTERVAL,
    CHECKPOINT_STEP,
    GPU_HOURS_LOST,
    JOB_APIS,
    PREFIX,
    STEP,
    STEP_TIME,
    JobKind,
    annotation_float,
    annotation_time,
    restart,
)
from mcp_server.backends.spares import pool_of, spare_view

GPUS = PREFIX + "gpus"
GPU_HEALTH = PREFIX + "gpu-health"
LAST_XID = PREFIX + "last-xid"
ISOLATED = PREFIX + "isolated-gpus"
CORDON_OWNER = PREFIX + "cordon-owner"
CORDON_REASON = PREFIX + "cordon-reason"
RESET_REQUESTED = PREFIX + "reset-requested"
REBOOT_REQUESTED = PREFIX + "reboot-requested"
ISOLATION_TAINT = PREFIX + "gpu-isolated"
AT_BASELINE = 1.10
MAX_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class KubernetesConfig:
    cluster: str = "k8s"
    job_kind: JobKind = "volcano"
    job_namespace: str = "default"
    rack_label: str = "aiops/rack"
    leaf_label: str = "aiops/leaf"
    pool_label: str = "aiops/pool"
    spare_value: str = "spare"
    gpu_resource: str = "nvidia.com/gpu"
    drain_poll_s: float = 2.0
    """How often a drain looks whether the pods it evicted are gone (they terminate first)."""
    drain_timeout_s: float = 300.0
    """How long a drain waits for them; the ones still terminating then are reported."""


def _annotations(obj: Json) -> dict[str, str]:
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations


def _json_annotation(obj: Json, key: str) -> dict[str, Any]:
    try:
        value = json.loads(_annotations(obj).get(key, "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _now() -> datetime:
    return datetime.now(UTC)


class KubernetesBackend(KubernetesDiagnostics):
    def __init__(self, api: KubeApi, config: KubernetesConfig | None = None) -> None:
        self.api = api
        self.config = config or KubernetesConfig()
        self.inventory: Callable[[str], list[dict[str, Any]] | None] | None = None
        """node -> its GPUs (``{index, uuid, pci_bus_id}``) from the node agents' inventory."""
        self.jobs_api = JOB_APIS[self.config.job_kind]

    @classmethod
    def connect(
        cls, config: KubernetesConfig, *, context: str | None = None, in_cluster: bool = False
    ) -> KubernetesBackend:
        """From the pod's service account (``in_cluster``) or a kubeconfig context."""
        try:
            if in_cluster:
                kubeconfig.load_incluster_config()  # type: ignore[no-untyped-call]
            else:
                kubeconfig.load_kube_config(context=context)  # type: ignore[no-untyped-call]
        except (kubeconfig.ConfigException, OSError) as exc:
            where = (
                "the in-cluster service account"
                if in_cluster
                else f"kubeconfig context {context or '(current)'}"
            )
            raise BackendError(f"cannot configure the Kubernetes client from {where}: {exc}") from exc
        return cls(KubeApi(k8s.ApiClient()), config)

    @property
    def kind(self) -> str:
        return "kubernetes"

    @property
    def cluster(self) -> str:
        return self.config.cluster

    # -- reading nodes ----------------------------------------------------------------------------

    async def _node(self, name: str) -> Json:
        try:
            return await self.api.get(f"/api/v1/nodes/{name}")
        except NotFound:
            raise NotFound(f"no node named {name!r} in cluster {self.cluster}") from None

    async def _nodes(self, label_selector: str | None = None) -> list[Json]:
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[Json] = (await self.api.get("/api/v1/nodes", query)).get("items", [])
        return items

    async def _pods_on(self, node: str | None = None) -> list[Json]:
        query = (
            {"fieldSelector": f"spec.nodeName={node}"} if node else {"labelSelector": self.jobs_api.pod_label}
        )
        items: list[Json] = (await self.api.get("/api/v1/pods", query)).get("items", [])
        return items

    def _jobs_of_pods(self, pods: list[Json]) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for pod in pods:
            job = (pod.get("metadata", {}).get("labels") or {}).get(self.jobs_api.pod_label)
            node = pod.get("spec", {}).get("nodeName")
            phase = pod.get("status", {}).get("phase")
            if job and node and phase in ("Pending", "Running"):
                names = by_node.setdefault(node, [])
                if job not in names:
                    names.append(job)
        return by_node

    def _state(self, obj: Json) -> NodeState:
        if _annotations(obj).get(REBOOT_REQUESTED):
            return "rebooting"
        for condition in obj.get("status", {}).get("conditions") or []:
            if condition.get("type") == "Ready":
                return "ready" if condition.get("status") == "True" else "not_ready"
        return "unknown"

    def _gpus(self, obj: Json) -> list[GpuView]:
        inventory = []
        try:
            inventory = json.loads(_annotations(obj).get(GPUS, "[]"))
        except ValueError:
            inventory = []
        if not inventory and self.inventory is not None:
            # The node agent's NVML inventory (the gpu_inventory bucket), when the node carries none.
            inventory = self.inventory(obj["metadata"]["name"]) or []
        if not inventory:
            capacity = obj.get("status", {}).get("capacity", {}).get(self.config.gpu_resource, "0")
            inventory = [
                {"index": i, "uuid": "unknown", "pci_bus_id": "unknown"} for i in range(int(capacity))
            ]
        health = _json_annotation(obj, GPU_HEALTH)
        isolated = _json_annotation(obj, ISOLATED)
        last_xid = _json_annotation(obj, LAST_XID)
        views = []
        for entry in inventory:
            index = str(entry["index"])
            state: GpuHealth = health.get(index, "healthy")
            views.append(
                GpuView.model_construct(
                    index=int(entry["index"]),
                    uuid=str(entry.get("uuid", "unknown")),
                    pci_bus_id=str(entry.get("pci_bus_id", "unknown")),
                    health=state if state in ("healthy", "fallen_off_bus", "error") else "unknown",
                    isolated=index in isolated,
                    isolation_reason=(isolated.get(index) or {}).get("reason") if index in isolated else None,
                    last_xid=last_xid.get(index),
                )
            )
        return sorted(views, key=lambda g: g.index)

    def _summary(self, obj: Json, jobs: list[str], gpus: list[GpuView] | None = None) -> NodeSummary:
        meta, labels = obj["metadata"], obj["metadata"].get("labels") or {}
        gpus = gpus if gpus is not None else self._gpus(obj)
        cordoned = bool(obj.get("spec", {}).get("unschedulable"))
        return NodeSummary.model_construct(
            name=meta["name"],
            state=self._state(obj),
            rack=labels.get(self.config.rack_label, "unknown"),
            leaf_switch=labels.get(self.config.leaf_label, "unknown"),
            cordoned=cordoned,
            cordon_owner=_annotations(obj).get(CORDON_OWNER) if cordoned else None,
            spare=labels.get(self.config.pool_label) == self.config.spare_value,
            gpus_total=len(gpus),
            gpus_healthy=sum(1 for g in gpus if g.health == "healthy"),
            gpus_isolated=sum(1 for g in gpus if g.isolated),
            jobs=jobs,
        )

    def _detail(self, obj: Json, jobs: list[str]) -> NodeDetail:
        gpus = self._gpus(obj)
        summary = self._summary(obj, jobs, gpus)
        return NodeDetail.model_construct(
            **summary.__dict__, labels=dict(obj["metadata"].get("labels") or {}), gpus=gpus
        )

    async def list_nodes(self) -> list[NodeDetail]:
        nodes, pods = await self._nodes(), await self._pods_on()
        jobs = self._jobs_of_pods(pods)
        return [self._detail(n, jobs.get(n["metadata"]["name"], [])) for n in nodes]

    async def node_summaries(self, query: NodeQuery | None = None) -> list[NodeSummary]:
        query = query or NodeQuery()
        selectors = []
        if query.label:
            key, _, value = query.label.partition("=")
            selectors.append(f"{key}={value}" if value else key)
        if query.rack:
            selectors.append(f"{self.config.rack_label}={query.rack}")
        if query.leaf_switch:
            selectors.append(f"{self.config.leaf_label}={query.leaf_switch}")
        nodes = await self._nodes(",".join(selectors) or None)
        jobs = self._jobs_of_pods(await self._pods_on())
        out = []
        for obj in nodes:
            summary = self._summary(obj, jobs.get(obj["metadata"]["name"], []))
            if query.admits(summary, obj["metadata"].get("labels") or {}):
                out.append(summary)
        return out

    async def get_node(self, name: str) -> NodeDetail:
        obj = await self._node(name)
        return self._detail(obj, self._jobs_of_pods(await self._pods_on(name)).get(name, []))

    # -- reading jobs -------------------------------------------------------------------------------

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
        age = (_now() - view.last_checkpoint_at).total_seconds() if view.last_checkpoint_at else None
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

    async def fleet_context(self) -> FleetContext:
        nodes = await self._nodes()
        hour_ago = _now() - timedelta(hours=1)
        recent = 0
        out = 0
        for obj in nodes:
            isolated = _json_annotation(obj, ISOLATED)
            for entry in isolated.values():
                try:
                    if datetime.fromisoformat(entry.get("at", "")) >= hour_ago:
                        recent += 1
                except (ValueError, AttributeError):
                    continue
            if obj.get("spec", {}).get("unschedulable") or isolated or self._state(obj) != "ready":
                out += 1
        return FleetContext(
            now=_now(), isolations_last_hour=recent, cluster_nodes=len(nodes), nodes_out_of_service=out
        )

    async def service_status(self, node: str) -> ServiceStatus:
        obj = await self._node(node)
        detail = self._detail(obj, self._jobs_of_pods(await self._pods_on(node)).get(node, []))
        unhealthy = [g.index for g in detail.gpus if g.health != "healthy"]
        isolated = [g.index for g in detail.gpus if g.isolated]
        ours = owned_by_platform(detail.cordon_owner)
        requests = [
            k.removeprefix(PREFIX) for k in (RESET_REQUESTED, REBOOT_REQUESTED) if _annotations(obj).get(k)
        ]
        why_not = []
        if detail.state != "ready" or requests:
            why_not.append(f"{node} is {', '.join(requests) or detail.state}")
        if unhealthy:
            why_not.append(f"GPU {', '.join(map(str, unhealthy))} not healthy")
        if detail.cordoned and not ours:
            why_not.append(
                f"cordoned by {detail.cordon_owner or 'someone outside gpu-aiops'}: left to its owner"
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
            maintenance=", ".join(requests) or None,
            jobs=detail.jobs,
            spare=detail.spare,
            in_service=detail.state == "ready" and not detail.cordoned and not unhealthy and not isolated,
            can_return=not why_not,
            why_not=why_not,
        )

    async def spare_pool(self, job: str | None = None, node: str | None = None) -> SparePool:
        selector = f"{self.config.pool_label}={self.config.spare_value}"
        spares = []
        for obj in await self._nodes(selector):
            summary = self._summary(obj, [])
            why = None
            if summary.state != "ready":
                why = f"{summary.name} is {summary.state}"
            elif summary.cordoned:
                why = f"{summary.name} is cordoned by {summary.cordon_owner or 'someone else'}"
            elif summary.gpus_healthy < summary.gpus_total or summary.gpus_isolated:
                why = f"{summary.name} has GPUs out of service"
            spares.append(spare_view(summary, why))
        return pool_of(spares, (await self.get_node(node)).leaf_switch if job and node else None)

    # -- mutations ---------------------------------------------------------------------------------

    async def _patch_node(self, name: str, change: Callable[[Json], Json | None]) -> tuple[Json, bool]:
        """Read, compute a merge patch (None: nothing to do), write with the read's resourceVersion
        so a concurrent writer makes us re-read instead of overwriting (409 Conflict)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            obj = await self._node(name)
            patch = change(obj)
            if patch is None:
                return obj, False
            patch.setdefault("metadata", {})["resourceVersion"] = obj["metadata"].get("resourceVersion")
            try:
                return await self.api.merge_patch(f"/api/v1/nodes/{name}", patch), True
            except KubeError as exc:
                if exc.status != 409:
                    raise
        raise BackendError(f"{name} kept changing under us; try again")

    async def isolate_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        def change(obj: Json) -> Json | None:
            if not any(g.index == gpu for g in self._gpus(obj)):
                raise NotFound(f"no GPU {gpu} on {node}")
            isolated = _json_annotation(obj, ISOLATED)
            if str(gpu) in isolated:
                return None
            isolated[str(gpu)] = {"reason": f"{reason} (by {actor})", "by": actor, "at": _now().isoformat()}
            return {
                "metadata": {"annotations": {ISOLATED: json.dumps(isolated, sort_keys=True)}},
                "spec": {"taints": _with_taint(obj, ISOLATION_TAINT, str(len(isolated)))},
            }

        _, changed = await self._patch_node(node, change)
        if not changed:
            return ActionChange(
                changed=False, detail=f"GPU {gpu} on {node} is already isolated; nothing changed"
            )
        return ActionChange(
            changed=True,
            detail=f"isolated GPU {gpu} on {node}: {reason} (by {actor}); taint {ISOLATION_TAINT}:NoSchedule set",
            data={"node": node, "gpu": gpu},
        )

    async def restore_gpus(self, node: str, reason: str, actor: str) -> ActionChange:
        restored: list[str] = []

        def change(obj: Json) -> Json | None:
            isolated, health = _json_annotation(obj, ISOLATED), _json_annotation(obj, GPU_HEALTH)
            restored[:] = [i for i in isolated if health.get(i, "healthy") == "healthy"]
            if not restored:
                return None
            left = {i: v for i, v in isolated.items() if i not in restored}
            taints = (
                _with_taint(obj, ISOLATION_TAINT, str(len(left)))
                if left
                else _without_taint(obj, ISOLATION_TAINT)
            )
            return {
                "metadata": {"annotations": {ISOLATED: json.dumps(left, sort_keys=True) if left else None}},
                "spec": {"taints": taints},
            }

        _, changed = await self._patch_node(node, change)
        if not changed:
            return ActionChange(changed=False, detail=f"{node} has no isolated GPU that is healthy again")
        return ActionChange(
            changed=True, detail=f"GPU {', '.join(restored)} on {node} back in service ({reason}, by {actor})"
        )

    async def cordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        def change(obj: Json) -> Json | None:
            if obj.get("spec", {}).get("unschedulable"):
                return None
            return {
                "metadata": {
                    "annotations": {CORDON_OWNER: platform_owner(actor), CORDON_REASON: reason[:500]}
                },
                "spec": {"unschedulable": True},
            }

        obj, changed = await self._patch_node(node, change)
        if not changed:
            owner = _annotations(obj).get(CORDON_OWNER) or "someone outside gpu-aiops"
            return ActionChange(
                changed=False, detail=f"{node} is already cordoned by {owner!r}; nothing changed"
            )
        return ActionChange(
            changed=True, detail=f"cordoned {node} (owner {platform_owner(actor)!r}): {reason}"
        )

    async def uncordon_node(self, node: str, reason: str, actor: str) -> ActionChange:
        def change(obj: Json) -> Json | None:
            if not obj.get("spec", {}).get("unschedulable"):
                return None
            owner = _annotations(obj).get(CORDON_OWNER)
            if not owned_by_platform(owner):
                raise BackendError(
                    f"{node} was cordoned by {owner or 'someone outside gpu-aiops'}; only they can uncordon it"
                )
            return {
                "metadata": {"annotations": {CORDON_OWNER: None, CORDON_REASON: None}},
                "spec": {"unschedulable": None},
            }

        _, changed = await self._patch_node(node, change)
        if not changed:
            return ActionChange(changed=False, detail=f"{node} is not cordoned; nothing changed")
        return ActionChange(changed=True, detail=f"uncordoned {node} ({reason}, by {actor})")

    async def drain_node(self, node: str, reason: str, actor: str) -> ActionChange:
        cordon = await self.cordon_node(node, reason, actor)
        evicted, blocked, skipped = [], [], 0
        terminating: list[str] = []
        for pod in await self._pods_on(node):
            meta = pod["metadata"]
            owners = meta.get("ownerReferences") or []
            if any(o.get("kind") == "DaemonSet" for o in owners) or "kubernetes.io/config.mirror" in (
                meta.get("annotations") or {}
            ):
                skipped += 1
                continue
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            where = f"{meta['namespace']}/{meta['name']}"
            if meta.get("deletionTimestamp"):
                terminating.append(where)  # evicted before (a drain again): wait for it, do not evict twice
                continue
            try:
                await self.api.post(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction",
                    {
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                    },
                )
                evicted.append(where)
            except NotFound:
                continue  # gone already
            except KubeError as exc:
                if exc.status != 429:
                    raise
                # A PodDisruptionBudget allows no more disruptions now: the pod stays; retry later.
                blocked.append(f"{where} ({exc})")
        left = await self._wait_gone(node, [*evicted, *terminating])
        detail = f"{node}: {cordon.detail}; evicted {len(evicted)} pod(s)"
        if left:
            detail += f"; {len(left)} still terminating after {self.config.drain_timeout_s:g}s: " + "; ".join(
                left
            )
        if blocked:
            detail += f"; {len(blocked)} blocked by a PodDisruptionBudget (retry later): " + "; ".join(
                blocked
            )
        return ActionChange(
            changed=cordon.changed or bool(evicted),
            detail=detail,
            data={
                "evicted": len(evicted),
                "blocked": len(blocked),
                "skipped_daemonset_or_mirror": skipped,
                "still_terminating": len(left),
            },
        )

    async def _wait_gone(self, node: str, pods: list[str]) -> list[str]:
        """Wait until the evicted ``pods`` (``namespace/name``) are gone from ``node``: an eviction
        only starts a pod's termination; the node is drained once its containers have stopped.
        Returns the ones still there at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout_s
        left = set(pods)
        while left:
            present = {
                f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in await self._pods_on(node)
            }
            left &= present
            if not left or loop.time() >= deadline:
                break
            await asyncio.sleep(self.config.drain_poll_s)  # the API has no wait for deletion but a watch
        return sorted(left)

    async def _request(self, node: str, key: str, value: str, what: str) -> ActionChange:
        def change(obj: Json) -> Json | None:
            if _annotations(obj).get(key):
                return None
            return {"metadata": {"annotations": {key: value}}}

        obj, changed = await self._patch_node(node, change)
        if not changed:
            return ActionChange(
                changed=False,
                detail=f"{what} on {node} already requested ({_annotations(obj).get(key)}); nothing changed",
            )
        return ActionChange(
            changed=True,
            detail=f"{what} on {node} requested ({key}); the gpu-aiops node agent carries it out",
            data={"requested": value},
        )

    async def reset_gpu(self, node: str, gpu: int, reason: str, actor: str) -> ActionChange:
        detail = await self.get_node(node)
        if not any(g.index == gpu for g in detail.gpus):
            raise NotFound(f"no GPU {gpu} on {node}")
        return await self._request(
            node, RESET_REQUESTED, f"{gpu} {actor}: {reason}"[:500], f"reset of GPU {gpu}"
        )

    async def reboot_node(self, node: str, reason: str, actor: str) -> ActionChange:
        cordon = await self.cordon_node(node, reason, actor)
        requested = await self._request(node, REBOOT_REQUESTED, f"{actor}: {reason}"[:500], "reboot")
        return ActionChange(
            changed=cordon.changed or requested.changed, detail=f"{cordon.detail}; {requested.detail}"
        )

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


def _taints(obj: Json) -> list[Json]:
    taints: list[Json] = obj.get("spec", {}).get("taints") or []
    return taints


def _with_taint(obj: Json, key: str, value: str) -> list[Json]:
    """The node's taints with ``key=value:NoSchedule`` set (a merge patch replaces the whole list)."""
    return [t for t in _taints(obj) if t.get("key") != key] + [
        {"key": key, "value": value, "effect": "NoSchedule"}
    ]


def _without_taint(obj: Json, key: str) -> list[Json]:
    return [t for t in _taints(obj) if t.get("key") != key]
