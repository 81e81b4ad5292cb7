"""A control plane on a real backend (the Kubernetes backend on the loopback API) reads DCGM without
a Prometheus: from the fleet's dcgm-exporters directly (one of them down), or from the node agents'
relays on NATS. A double-bit error behind either becomes an incident on the node it happened on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aiops.loopback_prometheus import LoopbackExporter
from events import subjects
from events.dcgm_relay import DcgmReport, RelayedGpu, encode_report
from events.detectors.dcgm import FIELDS
from events.detectors.exposition import ExporterSource
from events.models import utcnow
from tests.agents.safety_support import incident_where
from tests.aiops.test_kubernetes_platform import api, kube_platform  # noqa: F401  (fixture)
from tests.mcp_server.backends.kube_api import KubeApiDouble

pytestmark = pytest.mark.slow

DBE = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"


def exposition(node: str, dbe_on: int | None) -> bytes:
    """A node's dcgm-exporter answer: 4 GPUs, every field the detector reads; ``dbe_on`` has one DBE."""
    lines = []
    for name in FIELDS:
        lines.append(f"# TYPE {name} gauge")
        for g in range(4):
            labels = (
                f'gpu="{g}",UUID="GPU-{node}-{g}",pci_bus_id="00000000:{16 + g:02X}:00.0",Hostname="{node}"'
            )
            lines.append(f"{name}{{{labels}}} {1 if name == DBE and g == dbe_on else 0}")
    return ("\n".join(lines) + "\n").encode()


async def test_a_dbe_behind_one_of_the_exporters_becomes_an_incident_while_another_is_down(
    api: KubeApiDouble,  # noqa: F811
    tmp_path: Path,
) -> None:
    exporters = LoopbackExporter()
    exporters.bodies = {n: exposition(n, None) for n in ("gpu-node-01", "gpu-node-03")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"
    urls = [f"{exporters.base}/{n}/metrics" for n in ("gpu-node-01", "gpu-node-03")] + [down]
    try:
        platform = kube_platform(api, tmp_path, dcgm_source=None, dcgm_exporters=",".join(urls))
        async with platform:
            source = platform.detection.service.dcgm_source
            assert isinstance(source, ExporterSource)
            await _eventually_scraped(platform)
            exporters.bodies["gpu-node-03"] = exposition("gpu-node-03", dbe_on=2)
            done = await incident_where(
                platform, lambda i: "gpu-node-03" in i.affected_nodes, within_s=60, what="the DBE incident"
            )
    finally:
        exporters.close()
    assert done.kind == "ecc" and "gpu-node-03/2" in done.affected_gpus
    assert down in source.down and platform.detection.service.scrape_errors == 0


async def test_a_dbe_relayed_by_a_node_agent_becomes_an_incident(
    api: KubeApiDouble,  # noqa: F811
    tmp_path: Path,
) -> None:
    def report(dbe: float) -> bytes:
        gpus = [
            RelayedGpu(gpu=g, uuid=f"GPU-02-{g}", metrics={DBE: dbe if g == 1 else 0.0}) for g in range(4)
        ]
        return encode_report(DcgmReport(cluster="prod-a", node="gpu-node-02", time=utcnow(), gpus=gpus))

    async with kube_platform(api, tmp_path, dcgm_source="nodes") as platform:
        subject = subjects.dcgm("prod-a", "gpu-node-02")
        await platform.js.publish(subject, report(0))
        await _eventually_scraped(platform)
        await platform.js.publish(subject, report(1))
        done = await incident_where(
            platform,
            lambda i: "gpu-node-02" in i.affected_nodes,
            within_s=60,
            what="the relayed DBE incident",
        )
    assert done.kind == "ecc" and "gpu-node-02/1" in done.affected_gpus


async def _eventually_scraped(platform: object) -> None:
    from tests.waiting import eventually

    service = platform.detection.service  # type: ignore[attr-defined]
    await eventually(lambda: service.dcgm.scrapes >= 2, within_s=20, what="two DCGM rounds (the baseline)")
