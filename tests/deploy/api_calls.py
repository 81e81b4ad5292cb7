"""The Kubernetes API calls the Kubernetes backend makes, as RBAC names them.

Every operation of ``KubernetesBackend`` runs, each on a fresh loopback API seeded with the recorded
objects (``tests/mcp_server/backends/kube_api.py``), through the real kubernetes client; every
request the loopback API saw becomes an RBAC ``Call``: (scope, apiGroup, resource[/subresource],
verb). The RBAC test compares these with what the manifests grant; the backend's own tests can use
``record`` to assert on the calls of one operation.

An operation added to the backend without a line here fails ``test_every_backend_operation_is_exercised``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from contracts.tools import ActionChange, NodeQuery
from mcp_server.backends.kubernetes.backend import KubernetesBackend
from mcp_server.backends.kubernetes.jobs import JobKind
from tests.mcp_server.backends.kube_api import KubeApiDouble, Seen
from tests.mcp_server.backends.test_kubernetes import backend_for, seeded

JOB_NAMESPACE = "training"
"""Where the recorded jobs live (the backend's ``job_namespace`` in these runs)."""

CLUSTER = "cluster"
JOBS = "job-namespace"
Scope = str
"""``CLUSTER``: granted by a ClusterRoleBinding; ``JOBS``: by a RoleBinding in the job namespace."""


@dataclass(frozen=True, order=True)
class Call:
    scope: Scope
    api_group: str
    resource: str
    """``plural`` or ``plural/subresource``, as an RBAC rule names it."""
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.api_group or 'core'}/{self.resource} ({self.scope})"


Operation = Callable[[KubernetesBackend], Awaitable[object]]


async def _isolate_then_restore(backend: KubernetesBackend) -> ActionChange:
    await backend.isolate_gpu("gpu-node-01", 5, "row remap pending", "rbac-test")
    return await backend.restore_gpus("gpu-node-01", "reset applied the remap", "rbac-test")


async def _cordon_then_uncordon(backend: KubernetesBackend) -> ActionChange:
    await backend.cordon_node("gpu-node-01", "Xid 79", "rbac-test")
    return await backend.uncordon_node("gpu-node-01", "GPU replaced", "rbac-test")


READS: dict[str, Operation] = {
    "list_nodes": lambda b: b.list_nodes(),
    "node_summaries": lambda b: b.node_summaries(NodeQuery(label="aiops/pool=spare")),
    "get_node": lambda b: b.get_node("gpu-node-02"),
    "list_jobs": lambda b: b.list_jobs(),
    "get_job": lambda b: b.get_job("llm-pretrain"),
    "job_for_gpu": lambda b: b.job_for_gpu("gpu-node-02", 3),
    "checkpoint_status": lambda b: b.checkpoint_status("llm-pretrain"),
    "job_progress": lambda b: b.job_progress("llm-pretrain"),
    "fleet_context": lambda b: b.fleet_context(),
    "service_status": lambda b: b.service_status("gpu-node-02"),
    "spare_pool": lambda b: b.spare_pool("llm-pretrain", "gpu-node-02"),
}
"""What observe-only uses: reading only."""

WRITES: dict[str, Operation] = {
    "isolate_gpu": lambda b: b.isolate_gpu("gpu-node-02", 3, "Xid 79", "rbac-test"),
    "restore_gpus": _isolate_then_restore,
    "cordon_node": lambda b: b.cordon_node("gpu-node-01", "Xid 79", "rbac-test"),
    "uncordon_node": _cordon_then_uncordon,
    "drain_node": lambda b: b.drain_node("gpu-node-02", "Xid 79", "rbac-test"),
    "reset_gpu": lambda b: b.reset_gpu("gpu-node-02", 3, "Xid 48", "rbac-test"),
    "reboot_node": lambda b: b.reboot_node("gpu-node-01", "Xid 79 after reset", "rbac-test"),
    "restart_from_checkpoint": lambda b: b.restart_from_checkpoint("llm-pretrain", "NCCL hang", "rbac-test"),
    "swap_spare": lambda b: b.swap_spare("llm-pretrain", "gpu-node-02", "Xid 79", "rbac-test"),
}
"""What acting adds: each changes the cluster (asserted: ``ActionChange.changed``)."""

UNSUPPORTED = {"stop_job", "run_diagnostics", "diagnostics_report"}
"""Operations the Kubernetes backend refuses with a ``BackendError`` without an API call
(mcp_server/backends/kubernetes/diagnostics.py): nothing to grant."""


def backend_operations() -> set[str]:
    """The public coroutine methods of ``KubernetesBackend``: what the MCP tools can ask of it."""
    return {
        name
        for name, member in inspect.getmembers(KubernetesBackend, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def call_of(seen: Seen, job_namespace: str = JOB_NAMESPACE) -> Call:
    """The RBAC view of one request: ``GET /api/v1/nodes`` is ``list`` of core ``nodes``;
    ``POST /api/v1/namespaces/x/pods/p/eviction`` is ``create`` of ``pods/eviction``."""
    parts = [p for p in seen.path.split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[2:]
    elif parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"not a Kubernetes API path: {seen.path}")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = [*rest, None, None][:3]
    resource = f"{plural}/{sub}" if sub else str(plural)
    verb = {
        ("GET", True): "get",
        ("GET", False): "watch" if seen.query.get("watch") in ("true", "1") else "list",
        ("POST", False): "create",
        ("POST", True): "create",
        ("PATCH", True): "patch",
        ("PUT", True): "update",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }[(seen.method, name is not None)]
    return Call(CLUSTER if namespace != job_namespace else JOBS, group, resource, verb)


def scoped(calls: Iterable[Call]) -> set[Call]:
    """A resource the backend reaches outside the job namespace (or cluster-wide) needs a cluster-wide
    grant for every verb it uses on it; the rest is granted in the job namespace alone."""
    calls = set(calls)
    wide = {(c.api_group, c.resource) for c in calls if c.scope == CLUSTER}
    return {
        Call(CLUSTER if (c.api_group, c.resource) in wide else JOBS, c.api_group, c.resource, c.verb)
        for c in calls
    }


class LoopbackApi:
    """One loopback API server for many operations, each on freshly seeded objects (a server's
    shutdown waits out its poll interval: one per operation would cost half a second each)."""

    def __init__(self, kind: JobKind = "volcano") -> None:
        self.kind = kind
        self.double: KubeApiDouble = seeded(kind)

    def __enter__(self) -> LoopbackApi:
        self.url, self.server = self.double.serve()
        self.double.url = self.url  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    async def record(self, operation: Operation) -> tuple[object, list[Seen]]:
        """Run ``operation`` on the recorded objects as seeded; its result and the requests it made."""
        fresh = seeded(self.kind)
        with self.double.lock:
            self.double.collections = fresh.collections
            self.double.evictions = fresh.evictions
            self.double.seen = []
        result = await operation(backend_for(self.double, self.kind))
        return result, list(self.double.seen)


async def record(operation: Operation, kind: JobKind = "volcano") -> tuple[object, list[Seen]]:
    """Run ``operation`` on a fresh loopback API; its result and the requests it made."""
    with LoopbackApi(kind) as api:
        return await api.record(operation)


async def calls_of(operations: dict[str, Operation], kind: JobKind = "volcano") -> dict[str, set[Call]]:
    """Each operation's calls; a write that changed nothing fails (its write path went unexercised)."""
    out: dict[str, set[Call]] = {}
    with LoopbackApi(kind) as api:
        for name, operation in operations.items():
            result, seen = await api.record(operation)
            if name in WRITES and not (isinstance(result, ActionChange) and result.changed):
                raise AssertionError(f"{name} changed nothing against the recordings: {result!r}")
            out[name] = {call_of(s) for s in seen}
    return out
