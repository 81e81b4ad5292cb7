"""The Kubernetes backend's remaining actions against the loopback API: swapping in a warm spare,
GPU reset and node reboot requests, a node's service status; the API's bearer token on every
request; a drain that waits for the pods it evicted to finish terminating."""

from __future__ import annotations

import dataclasses

import pytest

from mcp_server.backends.base import BackendError, NotFound
from mcp_server.backends.kubernetes.backend import (
    REBOOT_REQUESTED,
    RESET_REQUESTED,
    KubernetesBackend,
)
from tests.mcp_server.backends.kube_api import KubeApiDouble
from tests.mcp_server.backends.test_kubernetes import NODES, PODS, annotations, api, backend, backend_for  # noqa: F401

VOLCANO_COMMANDS = "/apis/bus.volcano.sh/v1alpha1/namespaces/training/commands"


async def test_swap_spare_takes_the_spare_on_the_same_leaf_cordons_the_old_node_and_restarts_the_gang(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    change = await backend.swap_spare("llm-pretrain", "gpu-node-02", "Xid 79", "triage-agent")
    assert change.changed and change.data == {"old": "gpu-node-02", "new": "gpu-node-03"}  # leaf-01, like 02
    assert api.obj(NODES, "gpu-node-03")["metadata"]["labels"]["aiops/pool"] == "training"
    assert api.obj(NODES, "gpu-node-02")["spec"]["unschedulable"] is True
    (command,) = [w for w in api.writes("POST") if w.path == VOLCANO_COMMANDS]
    assert command.body["action"] == "RestartJob"


async def test_swap_spare_refuses_a_node_outside_the_gang_and_a_pool_with_no_fit_spare(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    with pytest.raises(BackendError, match="gpu-node-04 is not in the gang of llm-pretrain"):
        await backend.swap_spare("llm-pretrain", "gpu-node-04", "test", "olga")
    for spare in ("gpu-node-03", "gpu-node-05"):
        api.obj(NODES, spare)["spec"]["unschedulable"] = True  # someone else took them
    with pytest.raises(BackendError, match="no fit warm spare"):
        await backend.swap_spare("llm-pretrain", "gpu-node-02", "Xid 79", "olga")
    assert api.writes("POST") == []


async def test_reset_gpu_is_a_request_the_node_agent_carries_out_once(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    first = await backend.reset_gpu("gpu-node-02", 3, "Xid 79", "olga")
    again = await backend.reset_gpu("gpu-node-02", 3, "Xid 79", "olga")
    assert first.changed and not again.changed
    assert annotations(api, "gpu-node-02")[RESET_REQUESTED] == "3 olga: Xid 79"
    with pytest.raises(NotFound, match="no GPU 9 on gpu-node-02"):
        await backend.reset_gpu("gpu-node-02", 9, "typo", "olga")


async def test_reboot_node_cordons_and_requests_the_reboot(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    change = await backend.reboot_node("gpu-node-01", "Xid 79 twice", "olga")
    assert change.changed
    assert api.obj(NODES, "gpu-node-01")["spec"]["unschedulable"] is True
    assert annotations(api, "gpu-node-01")[REBOOT_REQUESTED] == "olga: Xid 79 twice"


async def test_service_status_says_why_a_node_cannot_return(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    healthy = await backend.service_status("gpu-node-01")
    assert healthy.in_service and healthy.can_return and healthy.jobs == ["llm-pretrain"]

    broken = await backend.service_status("gpu-node-02")
    assert (broken.all_gpus_healthy, broken.unhealthy_gpus, broken.can_return) == (False, [3], False)
    assert "GPU 3 not healthy" in broken.why_not

    foreign = await backend.service_status("gpu-node-04")
    assert foreign.cordoned and not foreign.cordoned_by_platform
    assert any("cordoned by someone outside gpu-aiops" in why for why in foreign.why_not)

    await backend.reboot_node("gpu-node-01", "test", "olga")
    rebooting = await backend.service_status("gpu-node-01")
    assert rebooting.maintenance == "reboot-requested" and not rebooting.can_return


async def test_every_request_carries_the_bearer_token_and_a_wrong_one_is_refused(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    await backend.node_summaries()
    assert api.unauthorized == 0 and api.seen
    api.token = "rotated-token"
    with pytest.raises(BackendError, match="refused GET /api/v1/nodes/gpu-node-01: Unauthorized"):
        await backend.get_node("gpu-node-01")
    assert api.unauthorized == 1


async def test_drain_waits_until_the_evicted_pods_have_terminated(api: KubeApiDouble) -> None:  # noqa: F811
    api.terminating_reads = 3
    drainer = backend_for(api)
    change = await drainer.drain_node("gpu-node-02", "Xid 79", "olga")
    assert change.data["evicted"] == 1 and change.data["still_terminating"] == 0
    assert "llm-pretrain-worker-1" not in api.collections[PODS]  # gone when the drain returned
    eviction = next(i for i, s in enumerate(api.seen) if s.path.endswith("/eviction"))
    reads_after = [s for s in api.seen[eviction:] if s.method == "GET" and s.path == PODS]
    assert len(reads_after) >= 3


async def test_a_pod_still_terminating_at_the_deadline_is_reported(api: KubeApiDouble) -> None:  # noqa: F811
    api.terminating_reads = 1_000_000  # a kubelet that never finishes
    drainer = backend_for(api)
    drainer.config = dataclasses.replace(drainer.config, drain_timeout_s=0.05)
    change = await drainer.drain_node("gpu-node-02", "Xid 79", "olga")
    assert change.data["still_terminating"] == 1
    assert "still terminating" in change.detail and "training/llm-pretrain-worker-1" in change.detail
    again = await drainer.drain_node("gpu-node-02", "Xid 79", "olga")
    assert again.data["evicted"] == 0 and again.data["still_terminating"] == 1  # not evicted twice


async def test_a_node_without_a_gpus_annotation_shows_the_node_agents_inventory(
    api: KubeApiDouble,  # noqa: F811
    backend: KubernetesBackend,  # noqa: F811
) -> None:
    del api.obj(NODES, "gpu-node-01")["metadata"]["annotations"]["gpu-aiops.io/gpus"]
    unknown = await backend.get_node("gpu-node-01")
    assert {g.pci_bus_id for g in unknown.gpus} == {"unknown"}  # capacity only
    inventory = [{"index": i, "uuid": f"GPU-{i}", "pci_bus_id": f"0000:{16 + i:02x}:00.0"} for i in range(8)]
    backend.inventory = lambda node: inventory if node == "gpu-node-01" else None
    known = await backend.get_node("gpu-node-01")
    assert [g.pci_bus_id for g in known.gpus][:2] == ["0000:10:00.0", "0000:11:00.0"]
