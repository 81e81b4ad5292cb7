"""``aiops up --backend kubernetes``: the platform without the twin, against the loopback Kubernetes
API. A node agent's kernel line becomes an incident with its GPU resolved through the inventory
bucket; observe-only (the default for a real backend) plans and records and changes nothing until
acting is turned on; a backend that cannot be served is an error at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from aiops.backends import Backends
from aiops.platform import NoTwinError, Platform
from aiops.settings import Settings
from events import subjects
from events.incident import Incident
from events.inventory import InventoryGpu, NodeInventory, inventory_bucket, put_inventory
from events.kmsg_service import HEADER_NODE
from mcp_server.backends.base import BackendError
from mcp_server.backends.telemetry import NoTelemetry
from tests.agents.safety_support import audit_records, incident_where
from tests.mcp_server.backends.kube_api import KubeApiDouble
from tests.mcp_server.backends.test_kubernetes import backend_for, seeded

pytestmark = pytest.mark.slow

XID_79 = "[ 8123.456789] NVRM: Xid (PCI:0000:5d:00): 79, pid=4121, name=python, GPU has fallen off the bus."


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    double = seeded()
    url, server = double.serve()
    double.url = url  # type: ignore[attr-defined]
    yield double
    server.shutdown()


def kube_platform(api: KubeApiDouble, tmp_path: Path, **settings: Any) -> Platform:
    # Five nodes, one already cordoned by someone else: let the blast radius allow one more.
    limits = {"max_out_of_service_pct": 60, "breaker_threshold_pct": 60, "min_spares": 0}
    config = Settings(
        backend="kubernetes",
        cluster="prod-a",
        http_port=0,
        group_wait_s=0.2,
        # No Prometheus nor exporters here: say so (a test may name its own source).
        **{"dcgm_source": "off", **limits, **settings},
    )
    backends = Backends(cluster=backend_for(api), telemetry=NoTelemetry())
    return Platform(config, data_dir=tmp_path, backends=backends)


async def xid_from_a_node_agent(platform: Platform) -> None:
    """What ``aiops node`` on gpu-node-02 would publish: its inventory, then the kernel line."""
    inventory = NodeInventory(
        cluster="prod-a",
        node="gpu-node-02",
        driver="570.133.20",
        gpus=[
            InventoryGpu(index=i, uuid=f"GPU-02-{i}", pci_bus_id=bus, model="NVIDIA H100 80GB HBM3")
            for i, bus in enumerate(["0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0"])
        ],
    )
    await put_inventory(await inventory_bucket(platform.js), inventory)
    await platform.js.publish(
        subjects.kmsg("prod-a", "gpu-node-02"),
        XID_79.encode(),
        headers={HEADER_NODE: "gpu-node-02", "Nats-Msg-Id": "boot-1:812"},
    )


def settled(incident: Incident) -> bool:
    return "gpu-node-02" in incident.affected_nodes and incident.status in ("mitigated", "escalated")


def writes(api: KubeApiDouble) -> list[str]:
    return [f"{s.method} {s.path}" for s in api.seen if s.method != "GET"]


async def test_observe_only_is_the_default_and_changes_nothing_in_the_cluster(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    async with kube_platform(api, tmp_path) as platform:
        assert not platform.has_twin
        with pytest.raises(NoTwinError):
            _ = platform.twin
        await xid_from_a_node_agent(platform)
        done = await incident_where(platform, settled, within_s=60, what="the observe-only plan")
        audit = await audit_records(platform)
        async with httpx2.AsyncClient() as http:
            metrics = (await http.get(platform.http_url.removesuffix("/mcp") + "/metrics")).text

    assert done.observe_only and done.affected_gpus == ["gpu-node-02/3"]
    assert done.actions and all(a.decision == "allow" and a.result.get("dry_run") for a in done.actions)
    assert audit and all(r.dry_run for r in audit)
    assert writes(api) == []  # no PATCH, no eviction, no job command: the cluster is untouched
    assert 'aiops_events_total{direction="in",source="kmsg"}' in metrics
    assert "aiops_actions_total{" in metrics and "aiops_incident_transitions_total{" in metrics


async def test_with_acting_turned_on_the_same_line_changes_the_cluster(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    async with kube_platform(api, tmp_path, observe_only=False) as platform:
        await xid_from_a_node_agent(platform)
        done = await incident_where(platform, settled, within_s=60, what="the acted-on incident")

    assert not done.observe_only
    assert "PATCH /api/v1/nodes/gpu-node-02" in writes(api)  # the GPU isolated on its node


async def test_an_unknown_bus_id_is_still_an_event_with_its_gpu_unknown(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    async with kube_platform(api, tmp_path) as platform:
        line = XID_79.replace("0000:5d:00", "0000:99:00")
        await platform.js.publish(
            subjects.kmsg("prod-a", "gpu-node-01"), line.encode(), headers={HEADER_NODE: "gpu-node-01"}
        )
        done = await incident_where(
            platform, lambda i: "gpu-node-01" in i.affected_nodes, within_s=60, what="an incident"
        )
    assert done.affected_gpus == [] and platform.kmsg.dead_lettered == 0


def test_a_kubernetes_backend_without_a_cluster_to_talk_to_is_an_error_at_start(tmp_path: Path) -> None:
    from aiops.backends import build_backends

    settings = Settings(backend="kubernetes", kube_context="no-such-context")
    with pytest.raises(BackendError, match="kubeconfig context no-such-context"):
        build_backends(settings)
