"""Faults injected into the fleet twin, the way the evaluation scenarios inject them (the
``inject_fault`` tool's lever; only this backend knows the simulator)."""

from __future__ import annotations

from typing import Literal

from fleet.errors import FleetError
from fleet.telemetry import EccInjection
from mcp_server.backends.base import BackendError
from mcp_server.backends.twin.backend import TwinBackend

__all__ = ["EccInjection", "FaultKind", "Injection", "inject"]

FaultKind = Literal[
    "xid", "ecc", "hang", "slow_link", "throttle", "slow_workload", "node_lost", "nic_down", "sdc"
]
SdcMode = Literal["nan", "spike"]


class Injection:
    """What one injection did: its target, a sentence, and the kernel lines the driver printed."""

    def __init__(self, target: str, detail: str, lines: list[str] | None = None) -> None:
        self.target, self.detail, self.lines = target, detail, lines or []


def _need(value: object, name: str, kind: str) -> None:
    if value is None:
        raise BackendError(f"a {kind} injection needs {name}")


def inject(
    backend: TwinBackend,
    kind: FaultKind,
    *,
    node: str | None = None,
    gpu: int | None = None,
    xid: int | None = None,
    ecc: EccInjection = "dbe",
    count: int = 1,
    job: str | None = None,
    rank: int | None = None,
    leaf: str | None = None,
    factor: float = 2.0,
    mode: SdcMode = "nan",
    transient: bool = False,
) -> Injection:
    """Break the twin; a bad target is a ``BackendError`` with the simulator's reason."""
    twin = backend.twin
    try:
        if kind in ("xid", "ecc", "throttle", "sdc"):
            _need(node, "node", kind)
            _need(gpu, "gpu", kind)
            assert node is not None and gpu is not None
            target = f"{node}/gpu{gpu}"
            if kind == "xid":
                _need(xid, "xid", kind)
                assert xid is not None
                return Injection(target, f"Xid {xid} on {target}", twin.inject_xid(node, gpu, xid))
            if kind == "ecc":
                return Injection(
                    target, f"ECC {ecc} x{count} on {target}", twin.inject_ecc(node, gpu, ecc, count)
                )
            if kind == "sdc":
                twin.inject_sdc(node, gpu, mode, transient)
                once = ", transient" if transient else ""
                return Injection(target, f"silent data corruption ({mode}{once}) on {target}")
            twin.throttle_gpu(node, gpu, factor)
            return Injection(target, f"{target} throttled x{factor:g}")
        if kind in ("node_lost", "nic_down"):
            _need(node, "node", kind)
            assert node is not None
            if kind == "nic_down":
                return Injection(node, f"{node} lost its InfiniBand link", twin.fail_nic(node))
            stopped = twin.lose_node(node)
            return Injection(
                node, f"{node} went away" + (f", stopping {', '.join(stopped)}" if stopped else "")
            )
        if kind in ("hang", "slow_workload"):
            _need(job, "job", kind)
            assert job is not None
            if kind == "hang":
                return Injection(job, f"{job} hung at rank {twin.inject_hang(job, rank)}")
            twin.slow_workload(job, factor)
            return Injection(job, f"{job} computes x{factor:g} slower")
        _need(leaf, "leaf", kind)
        assert leaf is not None
        twin.degrade_link(leaf, factor)
        return Injection(leaf, f"collectives through {leaf} x{factor:g} slower")
    except FleetError as exc:
        raise BackendError(str(exc)) from exc
