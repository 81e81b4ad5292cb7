"""The gpu-aiops operator's detection and mitigation times, from the scenario suite's measurements.

``python -m evals.scenarios.report`` (first half of ``make eval``) writes
``evals/out/response_times.json``: per scenario family, each matched incident's time to detect and
to mitigate, in simulated seconds from the fault. The study's fault families map onto them:

- ``xid``: the ``xid`` family's incidents rooted in a GPU or node (hardware);
- ``software``: the ``xid`` family's incidents not rooted in a GPU or node (the application);
- ``ecc``: the ``ecc`` family; ``hang``: the ``hang`` family;
- ``network``: the ``throughput`` and ``topology`` families' incidents rooted in a switch or link;
- ``host`` (a node that goes away): no scenario measures it — the labelled assumption is used.

A family with detections but no mitigation (the platform escalates it) takes its detection times from
the measurement and its mitigation from the assumption, and says so. Mitigation is counted from
detection (``mitigate_s - detect_s``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.goodput.operators import ASSUMED, Signal, Timing

Sample = dict[str, Any]


def _rooted(*kinds: str) -> Callable[[Sample], bool]:
    return lambda s: isinstance(s.get("root_cause"), str) and s["root_cause"].split(":")[0] in kinds


SOURCES: dict[Signal, tuple[tuple[str, ...], Callable[[Sample], bool]]] = {
    "xid": (("xid",), _rooted("gpu", "node")),
    # Application faults: the expectation names no hardware root cause (or names the job).
    "software": (("xid",), lambda s: not _rooted("gpu", "node")(s)),
    "ecc": (("ecc",), lambda s: True),
    "hang": (("hang",), lambda s: True),
    "network": (("throughput", "topology"), _rooted("switch", "link")),
}


@dataclass(frozen=True)
class MeasuredTimes:
    timings: dict[Signal, Timing]
    path: str
    planner: str | None


def timings_from(data: dict[str, Any], path: str = "") -> MeasuredTimes:
    families: dict[str, Any] = data.get("families", {})
    timings: dict[Signal, Timing] = {}
    planners: set[str] = set()
    for signal, assumed in ASSUMED.items():
        if signal not in SOURCES:
            timings[signal] = assumed
            continue
        names, keep = SOURCES[signal]
        samples = [s for f in names for s in families.get(f, {}).get("samples", []) if keep(s)]
        planners |= {str(s.get("planner")) for s in samples}
        pairs = tuple(
            (float(s["detect_s"]), max(0.0, float(s["mitigate_s"]) - float(s["detect_s"])))
            for s in samples
            if s.get("mitigate_s") is not None
        )
        where = "+".join(names)
        if pairs:
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
    return MeasuredTimes(timings, path, ",".join(sorted(planners)) or None)


def load(path: Path) -> MeasuredTimes:
    """The measured times, or a clear error naming the command that writes them."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `python -m evals.scenarios.report` first (make eval does), "
            "or pass --assumed to run the study on the labelled assumptions alone"
        )
    return timings_from(json.loads(path.read_text()), str(path))
