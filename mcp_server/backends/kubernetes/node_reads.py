"""Reading nodes: their state, GPUs, jobs, service status, the spare pool and the fleet."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Self

from kubernetes import client as k8s
from kubernetes import config as kubeconfig

from contracts.tools import (
    FleetContext,
    GpuHealth,
    GpuView,
    NodeDetail,
    NodeQuery,
    NodeState,
    NodeSummary,
    ServiceStatus,
    SparePool,
    owned_by_platform,
)
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.kubernetes.api import Json, KubeApi
from mcp_server.backends.kubernetes.jobs import JOB_APIS, PREFIX
from mcp_server.backends.kubernetes.objects import (
    CORDON_OWNER,
    GPU_HEALTH,
    GPUS,
    ISOLATED,
    LAST_XID,
    REBOOT_REQUESTED,
    RESET_REQUESTED,
    KubernetesConfig,
    annotations_of,
    json_annotation,
    now,
)
from mcp_server.backends.spares import pool_of, spare_view


class NodeReads:
    """The backend's connection and configuration, and everything it reads about nodes."""

    def __init__(self, api: KubeApi, config: KubernetesConfig | None = None) -> None:
        self.api = api
        self.config = config or KubernetesConfig()
        self.inventory: Callable[[str], list[dict[str, Any]] | None] | None = None
        """node -> its GPUs (``{index, uuid, pci_bus_id}``) from the node agents' inventory."""
        self.jobs_api = JOB_APIS[self.config.job_kind]

    @classmethod
    def connect(
        cls, config: KubernetesConfig, *, context: str | None = None, in_cluster: bool = False
    ) -> Self:
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
        if annotations_of(obj).get(REBOOT_REQUESTED):
            return "rebooting"
        for condition in obj.get("status", {}).get("conditions") or []:
            if condition.get("type") == "Ready":
                return "ready" if condition.get("status") == "True" else "not_ready"
        return "unknown"

    def _gpus(self, obj: Json) -> list[GpuView]:
        inventory = []
        try:
            inventory = json.loads(annotations_of(obj).get(GPUS, "[]"))
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
        health = json_annotation(obj, GPU_HEALTH)
        isolated = json_annotation(obj, ISOLATED)
        last_xid = json_annotation(obj, LAST_XID)
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
            cordon_owner=annotations_of(obj).get(CORDON_OWNER) if cordoned else None,
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

    async def fleet_context(self) -> FleetContext:
        nodes = await self._nodes()
        hour_ago = now() - timedelta(hours=1)
        recent = 0
        out = 0
        for obj in nodes:
            isolated = json_annotation(obj, ISOLATED)
            for entry in isolated.values():
                try:
                    if datetime.fromisoformat(entry.get("at", "")) >= hour_ago:
                        recent += 1
                except (ValueError, AttributeError):
                    continue
            if obj.get("spec", {}).get("unschedulable") or isolated or self._state(obj) != "ready":
                out += 1
        return FleetContext(
            now=now(), isolations_last_hour=recent, cluster_nodes=len(nodes), nodes_out_of_service=out
        )

    async def service_status(self, node: str) -> ServiceStatus:
        obj = await self._node(node)
        detail = self._detail(obj, self._jobs_of_pods(await self._pods_on(node)).get(node, []))
        unhealthy = [g.index for g in detail.gpus if g.health != "healthy"]
        isolated = [g.index for g in detail.gpus if g.isolated]
        ours = owned_by_platform(detail.cordon_owner)
        requests = [
            k.removeprefix(PREFIX) for k in (RESET_REQUESTED, REBOOT_REQUESTED) if annotations_of(obj).get(k)
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
