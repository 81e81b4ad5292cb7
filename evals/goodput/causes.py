"""Causes of job-interrupting failures and how each one shows itself.

Shares: Meta, "The Llama 3 Herd of Models" (2024), §3.3.4 Table 5 (16,384 H100, 54 days; counts
recomputed in ../shared/domain/failure-rates.md because the printed "faulty GPU" share has a typo).
``persistent``: the fault stays with the node until it is repaired or replaced, so restarting on the
same node fails again. ``signal``: what a detector sees first.
"""

from __future__ import annotations

from dataclasses import dataclass

from evals.goodput.operators import Signal


@dataclass(frozen=True)
class Cause:
    name: str
    share: float
    signal: Signal
    persistent: bool


CAUSES: tuple[Cause, ...] = (
    Cause("faulty GPU", 0.353, "xid", True),  # Xid 79, 119/120, 74, 109
    Cause("HBM memory", 0.172, "ecc", True),  # Xid 48, 63/64, 94/95, DBE counters
    Cause("software bug", 0.129, "software", False),  # the application; a restart clears it
    Cause("network switch / cable", 0.084, "network", True),  # link down/flaps, NCCL errors
    Cause("unplanned host maintenance", 0.076, "host", True),  # the node goes away
    Cause("GPU SRAM", 0.045, "ecc", True),  # Xid 94/95 class
    Cause("GSP firmware", 0.041, "xid", True),  # Xid 119/120; needs a reboot to recover
    Cause("NIC", 0.017, "network", True),
    Cause("NCCL watchdog, cause unknown", 0.017, "hang", False),  # a hang
    Cause("silent data corruption", 0.014, "silent", False),  # no signal
    Cause("thermal interface / sensor", 0.014, "xid", True),  # throttling, then errors
    Cause("other host parts", 0.038, "host", True),
)
