"""The Kubernetes backend, through the real kubernetes client, against recorded API objects served by
a loopback API (kube_api.py): nodes, cordon, isolation taints, drain through the Eviction API
(a PodDisruptionBudget refusing with 429), job restarts through Volcano, PyTorchJob and JobSet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from mcp import Client

from contracts.tools import NodeQuery
from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.kubernetes.api import KubeApi
from mcp_server.backends.kubernetes.backend import ISOLATION_TAINT, KubernetesBackend, KubernetesConfig
from mcp_server.backends.kubernetes.jobs import JobKind
from mcp_server.deps import ServerDeps
from mcp_server.gate.policy import PolicyGate
from mcp_server.identity import fixed_identity
from tests.mcp_server.backends.kube_api import KubeApiDouble, recording
from tests.mcp_server.support import OPERATOR, error, ok

NODES = "/api/v1/nodes"
PODS = "/api/v1/pods"
JOB_COLLECTIONS: dict[JobKind, tuple[str, str, str]] = {
    "volcano": (
        "/apis/batch.volcano.sh/v1alpha1/namespaces/training/jobs",
        "volcano-job",
        "volcano.sh/job-name",
    ),
    "pytorchjob": (
        "/apis/kubeflow.org/v1/namespaces/training/pytorchjobs",
        "pytorchjob",
        "training.kubeflow.org/job-name",
    ),
    "jobset": (
        "/apis/jobset.x-k8s.io/v1alpha2/namespaces/training/jobsets",
        "jobset",
        "jobset.sigs.k8s.io/jobset-name",
    ),
}


def seeded(kind: JobKind = "volcano") -> KubeApiDouble:
    double = KubeApiDouble()
    double.add(NODES, *recording("nodes")["items"])
    collection, name, label = JOB_COLLECTIONS[kind]
    pods = recording("pods")["items"]
    for pod in pods:
        labels = pod["metadata"]["labels"]
        if "volcano.sh/job-name" in labels and kind != "volcano":
            labels[label] = labels.pop("volcano.sh/job-name")
    double.add(PODS, *pods)
    double.add(collection, recording(name))
    double.evictions["research/notebook-alice-0"] = recording("eviction-429")
    return double


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    double = seeded()
    url, server = double.serve()
    double.url = url  # type: ignore[attr-defined]
    yield double
    server.shutdown()


def backend_for(double: KubeApiDouble, kind: JobKind = "volcano") -> KubernetesBackend:
    configuration = k8s.Configuration(host=double.url)  # type: ignore[attr-defined]
    configuration.api_key = {"BearerToken": "Bearer test-token"}
    config = KubernetesConfig(cluster="prod-a", job_kind=kind, job_namespace="training", drain_poll_s=0.01)
    return KubernetesBackend(KubeApi(k8s.ApiClient(configuration)), config)


@pytest.fixture
def backend(api: KubeApiDouble) -> KubernetesBackend:
    return backend_for(api)


def annotations(api: KubeApiDouble, node: str) -> dict[str, str]:
    result: dict[str, str] = api.obj(NODES, node)["metadata"].get("annotations", {})
    return result


# -- reading -----------------------------------------------------------------------------------------


async def test_nodes_read_cordon_spares_readiness_and_gpu_health_from_the_api(
    backend: KubernetesBackend,
) -> None:
    nodes = {n.name: n for n in await backend.node_summaries()}
    assert list(nodes) == [f"gpu-node-0{i}" for i in range(1, 6)]
    assert (nodes["gpu-node-01"].rack, nodes["gpu-node-01"].leaf_switch) == ("rack-01", "leaf-01")
    assert nodes["gpu-node-01"].jobs == ["llm-pretrain"]
    assert nodes["gpu-node-02"].gpus_healthy == 7
    assert nodes["gpu-node-03"].spare and nodes["gpu-node-05"].spare
    assert nodes["gpu-node-04"].cordoned and nodes["gpu-node-04"].cordon_owner is None
    assert nodes["gpu-node-05"].state == "not_ready"


async def test_a_label_filter_becomes_a_label_selector(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    spares = await backend.node_summaries(NodeQuery(label="aiops/pool=spare", state="ready"))
    assert [n.name for n in spares] == ["gpu-node-03"]
    listed = [s for s in api.seen if s.path == NODES]
    assert listed[-1].query == {"labelSelector": "aiops/pool=spare"}


async def test_a_node_shows_its_gpu_inventory_health_and_last_xid(backend: KubernetesBackend) -> None:
    node = await backend.get_node("gpu-node-02")
    assert [g.index for g in node.gpus] == list(range(8))
    gpu = node.gpus[3]
    assert (gpu.pci_bus_id, gpu.health, gpu.last_xid) == ("0000:5d:00.0", "fallen_off_bus", 79)
    assert node.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


async def test_an_unknown_node_is_not_found_with_its_name(backend: KubernetesBackend) -> None:
    with pytest.raises(NotFound, match="gpu-node-99"):
        await backend.get_node("gpu-node-99")


async def test_jobs_read_state_placement_and_checkpoint_from_the_job_and_its_pods(
    backend: KubernetesBackend,
) -> None:
    (job,) = await backend.list_jobs()
    assert (job.name, job.state, job.nodes, job.gpus) == (
        "llm-pretrain",
        "running",
        ["gpu-node-01", "gpu-node-02"],
        16,
    )
    status = await backend.checkpoint_status("llm-pretrain")
    assert (status.has_checkpoint, status.last_checkpoint_step, status.current_step) == (True, 183600, 184220)
    progress = await backend.job_progress("llm-pretrain")
    assert progress.slowdown == pytest.approx(2.31 / 2.05, rel=1e-3)
    assert not progress.at_baseline


# -- cordon -------------------------------------------------------------------------------------------


async def test_cordon_sets_spec_unschedulable_with_an_owner_in_one_merge_patch(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    change = await backend.cordon_node("gpu-node-01", "Xid 79 on GPU 2", "olga")
    assert change.changed
    (patch,) = api.writes()
    assert patch.path == "/api/v1/nodes/gpu-node-01"
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body["spec"] == {"unschedulable": True}
    assert patch.body["metadata"]["resourceVersion"] == "4301"  # optimistic concurrency
    assert annotations(api, "gpu-node-01")["gpu-aiops.io/cordon-owner"] == "gpu-aiops/olga"
    again = await backend.cordon_node("gpu-node-01", "Xid 79 on GPU 2", "olga")
    assert not again.changed and "already cordoned" in again.detail
    assert len(api.writes()) == 1


async def test_a_cordon_set_outside_the_platform_is_never_lifted(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    with pytest.raises(BackendError, match="only they can uncordon"):
        await backend.uncordon_node("gpu-node-04", "repaired", "olga")
    assert api.obj(NODES, "gpu-node-04")["spec"]["unschedulable"] is True
    assert api.writes() == []


async def test_uncordon_removes_the_platforms_cordon_and_its_owner(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    await backend.cordon_node("gpu-node-01", "Xid 79", "triage-agent")
    change = await backend.uncordon_node("gpu-node-01", "GPU replaced", "olga")
    assert change.changed
    node = api.obj(NODES, "gpu-node-01")
    assert "unschedulable" not in node["spec"]
    assert "gpu-aiops.io/cordon-owner" not in node["metadata"]["annotations"]


async def test_a_conflicting_write_makes_the_backend_reread_and_retry(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    api.conflicts = 2
    assert (await backend.cordon_node("gpu-node-01", "Xid 79", "olga")).changed
    assert len(api.writes()) == 3  # two 409 Conflicts, then the write on the fresh resourceVersion
    assert api.obj(NODES, "gpu-node-01")["spec"]["unschedulable"] is True


# -- taints and GPU isolation ---------------------------------------------------------------------------


async def test_isolating_a_gpu_records_it_and_taints_the_node_no_schedule(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    change = await backend.isolate_gpu("gpu-node-02", 3, "Xid 79 fell off the bus", "olga")
    assert change.changed
    node = api.obj(NODES, "gpu-node-02")
    isolated = json.loads(node["metadata"]["annotations"]["gpu-aiops.io/isolated-gpus"])
    assert isolated["3"]["by"] == "olga" and "Xid 79" in isolated["3"]["reason"]
    assert {"key": ISOLATION_TAINT, "value": "1", "effect": "NoSchedule"} in node["spec"]["taints"]
    detail = await backend.get_node("gpu-node-02")
    assert detail.gpus[3].isolated and detail.gpus_isolated == 1
    assert not (await backend.isolate_gpu("gpu-node-02", 3, "again", "olga")).changed
    assert (await backend.fleet_context()).isolations_last_hour == 1


async def test_isolation_keeps_the_taints_someone_else_set(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    await backend.isolate_gpu("gpu-node-04", 0, "ECC storm", "olga")
    taints = api.obj(NODES, "gpu-node-04")["spec"]["taints"]
    assert [t["key"] for t in taints] == ["node.kubernetes.io/unschedulable", ISOLATION_TAINT]


async def test_restoring_gpus_returns_healthy_ones_and_lifts_the_taint(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    await backend.isolate_gpu("gpu-node-01", 5, "row remap pending", "olga")
    await backend.isolate_gpu("gpu-node-02", 3, "Xid 79", "olga")
    assert (await backend.restore_gpus("gpu-node-01", "reset applied the remap", "olga")).changed
    assert api.obj(NODES, "gpu-node-01")["spec"]["taints"] == []
    # GPU 3 of gpu-node-02 is still off the bus: it stays out.
    assert not (await backend.restore_gpus("gpu-node-02", "try", "olga")).changed
    assert (await backend.get_node("gpu-node-02")).gpus[3].isolated


# -- drain through the Eviction API ----------------------------------------------------------------------


async def test_drain_cordons_then_evicts_and_reports_a_pdb_refusal(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    change = await backend.drain_node("gpu-node-02", "Xid 79", "olga")
    evictions = api.writes("POST")
    assert [e.path for e in evictions] == [
        "/api/v1/namespaces/training/pods/llm-pretrain-worker-1/eviction",
        "/api/v1/namespaces/research/pods/notebook-alice-0/eviction",
    ]
    assert evictions[0].body == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "llm-pretrain-worker-1", "namespace": "training"},
    }
    assert change.changed
    assert change.data == {
        "evicted": 1,
        "blocked": 1,
        "skipped_daemonset_or_mirror": 1,
        "still_terminating": 0,
    }
    assert "research/notebook-alice-0" in change.detail and "disruption budget" in change.detail
    assert api.obj(NODES, "gpu-node-02")["spec"]["unschedulable"] is True
    pods = {p for p in api.collections[PODS]}
    assert "llm-pretrain-worker-1" not in pods
    assert {"notebook-alice-0", "nvidia-dcgm-exporter-9pq4m"} <= pods  # PDB-protected; DaemonSet


async def test_draining_again_evicts_only_what_is_left(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    await backend.drain_node("gpu-node-02", "Xid 79", "olga")
    again = await backend.drain_node("gpu-node-02", "Xid 79", "olga")
    assert again.data == {
        "evicted": 0,
        "blocked": 1,
        "skipped_daemonset_or_mirror": 1,
        "still_terminating": 0,
    }
    assert not again.changed


# -- job restarts through the job's own API ------------------------------------------------------------


async def test_a_volcano_job_restarts_through_a_restartjob_command(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    change = await backend.restart_from_checkpoint("llm-pretrain", "Xid 79 on gpu-node-02", "olga")
    assert change.changed and change.data["kind"] == "volcano"
    (command,) = api.writes("POST")
    assert command.path == "/apis/bus.volcano.sh/v1alpha1/namespaces/training/commands"
    assert command.body["action"] == "RestartJob"
    assert command.body["target"] == {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "name": "llm-pretrain",
        "uid": "5b6c7d8e-1111-4222-8333-944455556666",
    }
    assert command.body["metadata"]["ownerReferences"][0]["uid"] == "5b6c7d8e-1111-4222-8333-944455556666"
    job = api.obj(JOB_COLLECTIONS["volcano"][0], "llm-pretrain")
    assert job["metadata"]["annotations"]["gpu-aiops.io/restarts"] == "1"


@pytest.mark.parametrize(
    ("kind", "suspend_path"),
    [("pytorchjob", ("spec", "runPolicy", "suspend")), ("jobset", ("spec", "suspend"))],
)
async def test_pytorchjob_and_jobset_restart_by_suspending_and_resuming(
    kind: JobKind, suspend_path: tuple[str, ...]
) -> None:
    double = seeded(kind)
    url, server = double.serve()
    double.url = url  # type: ignore[attr-defined]
    try:
        backend = backend_for(double, kind)
        (job,) = await backend.list_jobs()
        assert (job.state, job.nodes) == ("running", ["gpu-node-01", "gpu-node-02"])
        change = await backend.restart_from_checkpoint("llm-pretrain", "NCCL hang", "olga")
        assert change.changed
        patches = double.writes()
        assert [p.path for p in patches] == [JOB_COLLECTIONS[kind][0] + "/llm-pretrain"] * 2

        def dig(body: dict[str, Any]) -> Any:
            for key in suspend_path:
                body = body[key]
            return body

        assert [dig(p.body) for p in patches] == [True, False]
        assert patches[0].body["metadata"]["annotations"]["gpu-aiops.io/restarts"] == "1"
        assert dig(double.obj(JOB_COLLECTIONS[kind][0], "llm-pretrain")) is False
    finally:
        server.shutdown()


async def test_an_unknown_job_names_the_jobs_that_exist(backend: KubernetesBackend) -> None:
    with pytest.raises(NotFound, match="llm-pretrain"):
        await backend.restart_from_checkpoint("llm-finetune", "x", "olga")


# -- spares, and the MCP tools on top --------------------------------------------------------------------


async def test_the_spare_pool_prefers_a_fit_spare_on_the_failed_nodes_leaf(
    backend: KubernetesBackend,
) -> None:
    pool = await backend.spare_pool("llm-pretrain", "gpu-node-02")
    assert [(s.name, s.fit) for s in pool.spares] == [("gpu-node-03", True), ("gpu-node-05", False)]
    assert pool.candidate == "gpu-node-03"


async def test_the_mcp_tools_work_unchanged_against_kubernetes(
    api: KubeApiDouble, backend: KubernetesBackend
) -> None:
    from mcp_server.server import build_server

    deps = ServerDeps(backend=backend, gate=PolicyGate.from_directory(), identity=fixed_identity(OPERATOR))
    async with Client(build_server(deps)) as client:
        page = ok(await client.call_tool("list_nodes", {"state": "unhealthy"}))
        assert [n["name"] for n in page["nodes"]] == ["gpu-node-02"]
        detail = ok(await client.call_tool("gpu_status", {"node": "gpu-node-02", "gpu": 3}))
        assert detail["gpu"]["health"] == "fallen_off_bus" and detail["job"] == "llm-pretrain"
        health = ok(await client.call_tool("fleet_health", {}))
        assert health["backend"] == "kubernetes" and health["nodes"]["cordoned"] == 1
        assert "gpu-node-99" in error(await client.call_tool("describe_node", {"node": "gpu-node-99"}))
        # The gate weighs the real cluster: two of five nodes are already out (a foreign cordon,
        # a NotReady spare), so one more isolation would pass the out-of-service limit.
        refusal = error(
            await client.call_tool("isolate_gpu", {"node": "gpu-node-02", "gpu": 3, "reason": "Xid 79"})
        )
        assert "policy denied" in refusal and "out of service" in refusal
    assert api.writes() == [] and api.writes("POST") == []
