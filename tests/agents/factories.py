"""Events as the detectors emit them, and a cluster layout, for the correlation tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from events.fabric import FabricMap, NodePlace
from events.models import EccEvent, HangEvent, ThroughputEvent, XidEvent

T0 = datetime(2026, 11, 29, 7, 35, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fabric(nodes: int = 128, leaves: int = 4, per_rack: int = 4, clique: int = 0) -> FabricMap:
    """``nodes`` nodes named node-001.. under ``leaves`` leaf switches, ``per_rack`` to a rack;
    ``clique`` > 0 puts that many nodes in one multi-node NVLink domain (GB200 NVL72 style)."""
    per_leaf = nodes // leaves
    return FabricMap(
        NodePlace(
            node=f"node-{i + 1:03d}",
            leaf=f"leaf-{i // per_leaf + 1:02d}",
            rack=f"rack-{i // per_rack + 1:02d}",
            nvlink_domain=f"nvl-{i // clique + 1:02d}" if clique else None,
        )
        for i in range(nodes)
    )


def xid(
    code: int, *, node: str = "node-003", pci: str = "0000:5d:00.0", t: float = 0.0, **extra: Any
) -> XidEvent:
    return XidEvent(
        event_id=extra.pop("eid", f"x-{code}-{node}-{pci}-{t}"),
        time=at(t),
        cluster="sim-a",
        source="kmsg",
        node=node,
        pci_bus_id=pci,
        xid=code,
        **extra,
    )


def ecc(
    findings: list[str], *, node: str = "node-003", gpu: int = 3, t: float = 0.0, **extra: Any
) -> EccEvent:
    return EccEvent(
        event_id=extra.pop("eid", f"e-{node}-{gpu}-{'-'.join(findings)}-{t}"),
        time=at(t),
        cluster="sim-a",
        source="dcgm",
        node=node,
        gpu=gpu,
        pci_bus_id=extra.pop("pci", "0000:5d:00.0"),
        findings=findings,  # type: ignore[arg-type]
        **extra,
    )


def hang(
    job: str,
    nodes: list[str],
    *,
    ranks: list[int] | None = None,
    t: float = 0.0,
    total: int = 64,
    **extra: Any,
) -> HangEvent:
    ranks = ranks if ranks is not None else [0]
    return HangEvent(
        event_id=extra.pop("eid", f"h-{job}-{t}-{'-'.join(nodes)}"),
        time=at(t),
        cluster="sim-a",
        source="hang-detector",
        job=job,
        ranks=ranks,
        nodes=nodes,
        gpus=[f"{nodes[0]}/{ranks[0] % 8}"] if len(nodes) == 1 and ranks else [],
        last_step=1000,
        stalled_for_s=45.0,
        threshold_s=40.0,
        ranks_total=total,
        how="behind the other ranks in the collective sequence",
        **extra,
    )


def slow(
    job: str,
    *,
    signature: str = "network",
    switches: list[str] | None = None,
    suspects: list[str] | None = None,
    nodes: list[str] | None = None,
    t: float = 0.0,
    **extra: Any,
) -> ThroughputEvent:
    return ThroughputEvent(
        event_id=extra.pop("eid", f"s-{job}-{t}"),
        time=at(t),
        cluster="sim-a",
        source="throughput-detector",
        job=job,
        baseline_step_s=2.0,
        observed_step_s=2.6,
        slowdown=1.3,
        suspect_nodes=suspects or [],
        suspect_switches=switches or [],
        signature=signature,  # type: ignore[arg-type]
        nodes=nodes or suspects or [],
        sustained_s=120.0,
        **extra,
    )
