"""Which signals predict a GPU's failure before it happens: the rule pre-emptive removal acts on.

From the published data (xid-and-dcgm.md, failure-rates.md): uncorrectable HBM errors come after
corrected errors arrive faster than usual and after retired pages climb toward DCGM's limits (15 a
soft warning, 63 a bad GPU); pages pending retirement mean the GPU is already remapping around
failing memory. Thermal-interface and sensor failures (1.4% of Llama 3's interruptions) announce
themselves as thermal slowdowns that keep coming back on one GPU. None of these stops a job; each
makes the fault that does more likely. The DCGM detector reports them as findings of its ECC event
(``ecc.sbe_rate``, ``ecc.retired_pages_soft``, ``ecc.retired_pending``, and ``ecc.thermal_recurring``
from the clock-event reasons, ``events.detectors.thermal``); triage judges them a trend to watch, and
pre-emptive removal (``agents/preemptive.py``) swaps the GPU's node out at the job's next stop, or
drains it at a checkpoint boundary, before the crash.

A repeated offender (the lemon rule, ``suspected_bad_hardware``) is a precursor too: a GPU that keeps
failing fails again. Triage contains it when its incident stops a job (isolated before the restart:
``agents/fault_rules.isolate_before_restart``; scenarios lemon-gpu, xid94-repeat-isolate-before-restart)
or its plan resets or reboots it (the node is drained and never returned automatically). When the
incident that tripped the rule does neither (an idle GPU, a job that kept running: scenario
precursor-lemon-left-in-service), ``LEMON`` names it and pre-emptive removal takes the node out
(``agents.preemptive.flag_of``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HBM = "an uncorrectable HBM error (Xid 48/63/64, a DBE)"
THERMAL = "a thermal fault (harder throttling that makes the GPU a straggler, or a thermal shutdown)"
LEMON = "suspected_bad_hardware"

PRECURSOR_FINDINGS: dict[str, tuple[str, str]] = {
    "ecc.sbe_rate": ("corrected (single-bit) ECC errors above the rate threshold", HBM),
    "ecc.retired_pages_soft": (
        "retired pages past DCGM's soft limit (15), climbing toward the hard limit (63)",
        HBM,
    ),
    "ecc.retired_pending": ("pages pending retirement: the GPU is retiring failing memory", HBM),
    "ecc.thermal_recurring": ("thermal slowdown recurring on the GPU (DCGM clock-event reasons)", THERMAL),
    LEMON: ("a repeated offender (the lemon rule)", "its next fault: lemons carry most of a fleet's faults"),
}
"""Finding -> (what it says, what it predicts)."""
FAULT_FINDINGS = frozenset(
    {
        "ecc.dbe",
        "ecc.remap_failure",
        "ecc.remap_rows_exhausted",
        "ecc.retired_pages_hard",
        "ecc.remap_uncorrectable",
    }
)
"""Findings that are the fault itself: triage contains those; nothing is left to pre-empt."""


@dataclass(frozen=True)
class Precursor:
    findings: tuple[str, ...]
    predicts: str
    why: str


def precursor_of(findings: Iterable[str]) -> Precursor | None:
    """The precursor in an incident's findings, or None (no precursor, or the fault already came)."""
    found = set(findings)
    if found & FAULT_FINDINGS:
        return None
    warning = tuple(sorted(found & PRECURSOR_FINDINGS.keys()))
    if not warning:
        return None
    why = "; ".join(PRECURSOR_FINDINGS[f][0] for f in warning)
    predicts = " or ".join(dict.fromkeys(PRECURSOR_FINDINGS[f][1] for f in warning))
    return Precursor(warning, predicts, why)
