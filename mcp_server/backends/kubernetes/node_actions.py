"""Actions on nodes: GPU isolation, cordon, drain, and the reset and reboot requests.

Every change is a merge patch carrying the ``resourceVersion`` it was computed from
(``_patch_node``): a concurrent writer makes it re-read instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from contracts.tools import ActionChange, owned_by_platform, platform_owner
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.kubernetes.api import Json, KubeError
from mcp_server.backends.kubernetes.node_reads import NodeReads
from mcp_server.backends.kubernetes.objects import (
    CORDON_OWNER,
    CORDON_REASON,
    GPU_HEALTH,
    ISOLATED,
    ISOLATION_TAINT,
    REBOOT_REQUESTED,
    RESET_REQUESTED,
    annotations_of,
    json_annotation,
    now,
    with_taint,
    without_taint,
)

MAX_CONFLICT_RETRIES = 5


class NodeActions(NodeReads):
    """What the platform changes on a node (the job and gang actions are the backend's own)."""

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
            isolated = json_annotation(obj, ISOLATED)
            if str(gpu) in isolated:
                return None
            isolated[str(gpu)] = {"reason": f"{reason} (by {actor})", "by": actor, "at": now().isoformat()}
            return {
                "metadata": {"annotations": {ISOLATED: json.dumps(isolated, sort_keys=True)}},
                "spec": {"taints": with_taint(obj, ISOLATION_TAINT, str(len(isolated)))},
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
            isolated, health = json_annotation(obj, ISOLATED), json_annotation(obj, GPU_HEALTH)
            restored[:] = [i for i in isolated if health.get(i, "healthy") == "healthy"]
            if not restored:
                return None
            left = {i: v for i, v in isolated.items() if i not in restored}
            taints = (
                with_taint(obj, ISOLATION_TAINT, str(len(left)))
                if left
                else without_taint(obj, ISOLATION_TAINT)
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
            owner = annotations_of(obj).get(CORDON_OWNER) or "someone outside gpu-aiops"
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
            owner = annotations_of(obj).get(CORDON_OWNER)
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
            if annotations_of(obj).get(key):
                return None
            return {"metadata": {"annotations": {key: value}}}

        obj, changed = await self._patch_node(node, change)
        if not changed:
            return ActionChange(
                changed=False,
                detail=f"{what} on {node} already requested ({annotations_of(obj).get(key)}); nothing changed",
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
