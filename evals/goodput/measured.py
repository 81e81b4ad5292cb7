"""The gpu-aiops operator's detection and mitigation times, from the scenario suite's measurements.

``python -m evals.scenarios.report`` (first half of ``make eval``) writes
``evals/out/response_times.json``: per scenario family, each matched incident's time to detect and
to mitigate, in simulated seconds from the fault. The study's fault families map onto them:

- ``xid``: the ``xid`` family's incidents rooted in a GPU or node (hardware);
- ``software``: the ``xid`` family's incidents not rooted in a GPU or node (the application);
- ``ecc``: the ``ecc`` family; ``hang``: the ``hang`` family;
- ``network``: the ``network`` family (a node's link or adapter fails: the platform moves the job
  off the node) and the ``throughput`` / ``topology`` incidents rooted in a switch or link (the
  platform escalates those to the network's owner: their detection is measured, the mitigation is
  the labelled assumption — a switch fault is as much the study's network cause as a cable);
- ``host`` (a node that goes away): the ``host`` family;
- ``silent`` (silent data corruption found from the training numerics): the ``sdc`` family's
  incidents the platform acted on (a corruption with no culprit GPU still counts: it was rolled back).

A family with detections but no mitigation (the platform escalates it) takes its detection times from
the measurement and its mitigation from the assumption, and says so; so do the escalated incidents of
``network`` beside its mitigated ones. Mitigation is counted from
detection (``mitigate_s - detect_s``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.goodput.operators import ASSUMED, Signal, Timing
from fleet.maintenance import REBOOT_S, RESET_S

Sample = dict[str, Any]


def _is_rooted(s: Sample, *kinds: str) -> bool:
    return isinstance(s.get("root_cause"), str) and s["root_cause"].split(":")[0] in kinds


def _rooted(*kinds: str) -> Callable[[str, Sample], bool]:
    return lambda family, s: _is_rooted(s, *kinds)


def _every(family: str, s: Sample) -> bool:
    return True


SOURCES: dict[Signal, tuple[tuple[str, ...], Callable[[str, Sample], bool]]] = {
    "xid": (("xid",), _rooted("gpu", "node")),
    # Application faults: the expectation names no hardware root cause (or names the job).
    "software": (("xid",), lambda family, s: not _is_rooted(s, "gpu", "node")),
    "ecc": (("ecc",), _every),
    "hang": (("hang",), _every),
    "network": (
        ("network", "throughput", "topology"),
        lambda family, s: family == "network" or _is_rooted(s, "switch", "link"),
    ),
    "host": (("host",), _every),
    "silent": (("sdc",), _every),
}
ESCALATIONS_COUNT: frozenset[Signal] = frozenset({"network"})
"""Families whose escalated (unmitigated) incidents count beside the mitigated ones, with the assumed
mitigation: a job-stopping fault the platform hands to people still stops the job."""


VERIFY_S = 30 * 60.0  # ASSUMPTION: diagnostics (DCGM diag level 2-3) before a node rejoins the pool


@dataclass(frozen=True)
class RepairTime:
    """The platform's repair of a removed node before it rejoins the warm pool: a GPU reset, then a
    reboot (the ``reset-gpu`` -> ``drain-and-reboot-node`` fallback chain), then verification."""

    reset_s: float
    reboot_s: float
    verify_s: float
    basis: str

    @property
    def seconds(self) -> float:
        return self.reset_s + self.reboot_s + self.verify_s


def _turnarounds(families: dict[str, Any], runbook: str) -> list[float]:
    return [
        float(s["mitigate_s"]) - float(s["detect_s"])
        for family in families.values()
        for s in family.get("samples", [])
        if runbook in (s.get("runbooks") or []) and s.get("mitigate_s") is not None
    ]


def repair_from(data: dict[str, Any]) -> RepairTime:
    """Reset and reboot turnaround from the scenarios' incidents mitigated by those runbooks (from
    detection to ``mitigated``, which waits for the reset or reboot to finish); the twin's own
    durations, labelled, where no scenario measures one."""
    families: dict[str, Any] = data.get("families", {})
    parts: list[str] = []
    values: list[float] = []
    for runbook, twin_s in (("reset-gpu", RESET_S), ("drain-and-reboot-node", REBOOT_S)):
        found = _turnarounds(families, runbook)
        if found:
            values.append(statistics.median(found))
            parts.append(f"{runbook} measured (median of {len(found)}: {values[-1]:.0f} s)")
        else:
            values.append(twin_s)
            parts.append(f"{runbook} NO MEASUREMENT: the twin's {twin_s:.0f} s")
    parts.append(f"verification ASSUMED {VERIFY_S / 60:.0f} min")
    return RepairTime(values[0], values[1], VERIFY_S, "; ".join(parts))


@dataclass(frozen=True)
class MeasuredTimes:
    timings: dict[Signal, Timing]
    path: str
    planner: str | None
    repair: RepairTime | None = None


def timings_from(data: dict[str, Any], path: str = "") -> MeasuredTimes:
    families: dict[str, Any] = data.get("families", {})
    timings: dict[Signal, Timing] = {}
    planners: set[str] = set()
    for signal, assumed in ASSUMED.items():
        if signal not in SOURCES:
            timings[signal] = assumed
            continue
        names, keep = SOURCES[signal]
        samples = [s for f in names for s in families.get(f, {}).get("samples", []) if keep(f, s)]
        planners |= {str(s.get("planner")) for s in samples}
        pairs = tuple(
            (float(s["detect_s"]), max(0.0, float(s["mitigate_s"]) - float(s["detect_s"])))
            for s in samples
            if s.get("mitigate_s") is not None
        )
        where = "+".join(names)
        escalated = tuple(
            (float(s["detect_s"]), assumed.samples[0][1]) for s in samples if s.get("mitigate_s") is None
        )
        if pairs and escalated and signal in ESCALATIONS_COUNT:
            timings[signal] = Timing(
                pairs + escalated,
                f"measured: {len(pairs)} mitigated incidents and {len(escalated)} escalated ({where}; "
                f"the escalated ones' mitigation assumed {assumed.samples[0][1]:.0f} s)",
                True,
            )
        elif pairs:
            timings[signal] = Timing(pairs, f"measured: {len(pairs)} mitigated incidents ({where})", True)
        elif samples:
            mitigate = assumed.samples[0][1]
            timings[signal] = Timing(
                tuple((float(s["detect_s"]), mitigate) for s in samples),
                f"detection measured ({len(samples)} incidents, {where}), none mitigated: "
                f"mitigation assumed {mitigate:.0f} s",
                True,
            )
        else:
            timings[signal] = Timing(assumed.samples, f"NO MEASUREMENT ({where}); {assumed.source}", False)
    return MeasuredTimes(timings, path, ",".join(sorted(planners)) or None, repair_from(data))


def load(path: Path) -> MeasuredTimes:
    """The measured times, or a clear error naming the command that writes them."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `python -m evals.scenarios.report` first (make eval does), "
            "or pass --assumed to run the study on the labelled assumptions alone"
        )
    return timings_from(json.loads(path.read_text()), str(path))
