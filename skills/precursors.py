"""Which signals predict a GPU's failure before it happens: the rule pre-emptive removal acts on.

From the published data (xid-and-dcgm.md, failure-rates.md): uncorrectable HBM errors come after
corrected errors arrive faster than usual and after retired pages climb toward DCGM's limits (15 a
soft warning, 63 a bad GPU); pages pending retirement mean the GPU is already remapping around
failing memory. None of these stops a job; each makes the next uncorrectable error — which does —
more likely. The DCGM detector reports them as ECC findings (``ecc.sbe_rate``,
``ecc.retired_pages_soft``, ``ecc.retired_pending``); triage judges them a trend to watch, and
pre-emptive removal (``agents/preemptive.py``) swaps the GPU's node out at the job's next stop, or
drains it at a checkpoint boundary, before the crash.

Not here: a GPU that trips the lemon rule is already contained by triage (isolated before its job
restarts: ``agents/fault_rules.suspected_bad_hardware``); recurring thermal throttling needs a
detector over DCGM's clock-event reasons that the platform does not have yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRECURSOR_FINDINGS: dict[str, str] = {
    "ecc.sbe_rate": "corrected (single-bit) ECC errors above the rate threshold",
    "ecc.retired_pages_soft": "retired pages past DCGM's soft limit (15), climbing toward the hard limit (63)",
    "ecc.retired_pending": "pages pending retirement: the GPU is retiring failing memory",
}
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
    why = "; ".join(PRECURSOR_FINDINGS[f] for f in warning)
    return Precursor(warning, "an uncorrectable HBM error (Xid 48/63/64, a DBE)", why)
