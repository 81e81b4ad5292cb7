"""Causes of job-interrupting failures, how each one shows itself, what warns of it, what repairs it.

Shares: Meta, "The Llama 3 Herd of Models" (2024), §3.3.4 Table 5 (16,384 H100, 54 days; counts
recomputed in failure-rates.md because the printed "faulty GPU" share has a typo).
``persistent``: the fault stays with the node until it is repaired or replaced, so restarting on the
same node fails again. ``signal``: what a detector sees first.

``precursor``: the share of the cause's failures preceded by a signal the platform can act on before
the crash, and that signal. The published data name the signals, not the shares, so every share
here is an ASSUMPTION (the study prints each one); HBM and thermal take theirs from the twin's
failure model (``fleet.failure_model.PRECURSORS``), so the study and the twin agree:

- HBM memory / GPU SRAM: retired pages climbing toward DCGM's limits (15 a soft warning, 63 a bad
  GPU), pending row remaps, Xid 63 retirement events and Xid 92 excessive single-bit interrupts come
  before uncorrectable errors (xid-and-dcgm.md); on Delta one GPU produced 99% of the uncontained
  memory errors, >90% of Xid 95 came from 4 GPUs — repeat offenders, visible before their next fault.
- faulty GPU: the lemon rule (the same Xid 5 times in 24 h on a GPU, NVSentinel); at Meta removing ~40
  lemon nodes cut large-job failures from 14% to 4% (failure-rates.md), so most such failures sit on
  parts that failed before — but the rule needs the earlier failures, hence a modest share.
- thermal interface / sensor: throttling (clock-event reasons 0x20/0x40) recurs before the errors.

``reset_fixes``: the share of the cause's node removals that a GPU reset or node reboot repairs
(after verification, back to the pool in minutes); the rest need a person and parts (a ticket).
From the Xid catalog's immediate actions (RESET_GPU / RESTART_BM for 48, 63/64, 74, 79, 94/95, 109,
119/120, xid-and-dcgm.md) minus the parts that then fail again: also ASSUMPTIONS.
"""

from __future__ import annotations

from dataclasses import dataclass

from evals.goodput.operators import Signal
from fleet.failure_model import PRECURSORS


@dataclass(frozen=True)
class Cause:
    name: str
    share: float
    signal: Signal
    persistent: bool
    precursor: float = 0.0
    precursor_signal: str = ""
    reset_fixes: float = 0.0


CAUSES: tuple[Cause, ...] = (
    Cause(
        "faulty GPU", 0.353, "xid", True, 0.3, "lemon rule (repeat Xids on the GPU)", 0.6
    ),  # Xid 79, 119/120, 74, 109
    Cause("HBM memory", 0.172, "ecc", True, PRECURSORS["hbm"].share, PRECURSORS["hbm"].signal, 0.7),
    Cause("software bug", 0.129, "software", False),  # the application; a restart clears it
    # A node moved off after a link or host fault gets no reset/reboot from the platform (it queues
    # repairs only for GPU faults the Xid catalog says a reset or reboot mends): a person repairs it.
    Cause("network switch / cable", 0.084, "network", True, 0.0, "", 0.0),  # link down/flaps
    Cause("unplanned host maintenance", 0.076, "host", True, 0.0, "", 0.0),  # the node goes away
    Cause("GPU SRAM", 0.045, "ecc", True, 0.3, "SBE rate / contained errors (Xid 94)", 0.7),
    Cause("GSP firmware", 0.041, "xid", True, 0.0, "", 0.9),  # Xid 119/120; a reboot recovers it
    Cause("NIC", 0.017, "network", True, 0.0, "", 0.0),
    Cause("NCCL watchdog, cause unknown", 0.017, "hang", False),  # a hang
    Cause("silent data corruption", 0.014, "silent", False),  # no signal
    Cause(
        "thermal interface / sensor",
        0.014,
        "xid",
        True,
        PRECURSORS["thermal"].share,
        PRECURSORS["thermal"].signal,
        0.2,
    ),
    Cause("other host parts", 0.038, "host", True, 0.0, "", 0.0),
)
