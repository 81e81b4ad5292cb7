"""How each operator detects and recovers from a job-interrupting failure.

Four operators, with the published figures of ../shared/domain/failure-rates.md ("Time to detect
and recover") and what each one does:

- ``manual``: a person on call. Detection 30 min to hours (median taken as 45 min), triage and
  restart excluding the bad node about an hour (Delta: mean recovery 2.2 h, single cases 19-23 h),
  hangs first wait for the NCCL watchdog (10 min default). Every incident needs the person.
- ``naive``: automatic restart on job failure (the scheduler's restart policy). Crashes are seen in
  about a minute, hangs after the watchdog; it restarts on the same nodes, so a persistent hardware
  fault fails again right after the restart. After ``max_restarts`` it pages a person, who proceeds
  like ``manual``.
- ``gpu_aiops``: detection from the signal itself and mitigation by the platform, each drawn per
  fault family from ``timings``: the scenario suite's measured time-to-detect / time-to-mitigate
  (``evals.goodput.measured`` reads them from ``evals/out/response_times.json``), or a labelled
  assumption where the suite has no measurement. Mitigation swaps in a warm spare and restarts from
  the checkpoint. A person is needed where the platform escalates (network switch/cable, unknown
  causes) or when the spare pool is empty. Silent data corruption: with the numerics detector (the
  ``numerics`` lever, ``numerics_recall`` > 0) the share of corruptions that shows in the job's loss or
  gradient norm (NaN/Inf, a spike) is found from the heartbeats and handled by the
  ``locate-corruption`` runbook (DCGM diagnostics on the job's nodes, the failing GPU out, a restart
  from a checkpoint before the onset), at the times the ``sdc`` scenarios measure; the rest (a slow
  divergence no detector flags) is found as a person would.
- ``instant``: the bound. Detection and recovery take no time and a spare is always there; only
  the restart overhead and the work since the checkpoint are lost, on the same failures.

Times are in seconds; random draws come from the caller's ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Signal = Literal["xid", "ecc", "hang", "network", "software", "silent", "host"]
OperatorName = Literal["manual", "naive", "gpu_aiops", "instant"]

MIN = 60.0
HOUR = 3600.0
NCCL_WATCHDOG_S = 10 * MIN  # PyTorch/NCCL default collective timeout


def lognormal(rng: random.Random, median_s: float, sigma: float) -> float:
    return median_s * math.exp(rng.gauss(0.0, sigma))


@dataclass(frozen=True)
class Response:
    """What one failure costs before the job trains again (restart overhead excluded)."""

    detect_s: float
    recover_s: float
    needed_person: bool
    failed_restarts: int = 0
    escalated: bool = False  # a person is told (ticket, page) but the job did not wait for them
    waits_for_spare: bool = False  # the simulator adds the wait until a node comes back from repair


@dataclass(frozen=True)
class ManualOnCall:
    name: OperatorName = "manual"
    detect_median_s: float = 45 * MIN
    triage_median_s: float = 60 * MIN
    sigma: float = 0.7

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        detect = lognormal(rng, self.detect_median_s, self.sigma)
        if signal == "hang":
            detect += NCCL_WATCHDOG_S
        recover = lognormal(rng, self.triage_median_s, self.sigma)
        if persistent and not spare_ready:
            recover += lognormal(rng, 2.2 * HOUR, 0.5)  # wait for the repair (Delta mean 2.2 h)
        return Response(detect, recover, needed_person=True)


@dataclass(frozen=True)
class NaiveRestart:
    name: OperatorName = "naive"
    crash_detect_s: float = 1 * MIN
    max_restarts: int = 3
    refail_after_s: float = 5 * MIN  # a persistent fault trips again soon after the restart
    fallback: ManualOnCall = ManualOnCall()

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        detect = NCCL_WATCHDOG_S if signal == "hang" else self.crash_detect_s
        if not persistent:
            return Response(detect, 0.0, needed_person=False)
        # Restarts on the same bad node: each costs a detection and a re-failure, then a person.
        person = self.fallback.respond(signal, persistent, spare_ready, rng)
        loop = self.max_restarts * (self.refail_after_s + detect)
        return Response(
            detect, loop + person.detect_s + person.recover_s, True, failed_restarts=self.max_restarts
        )


@dataclass(frozen=True)
class Timing:
    """Detection and mitigation times of one fault family: (detect_s, mitigate_s) pairs, the
    mitigation counted from detection; drawn jointly so a slow detection keeps its own mitigation."""

    samples: tuple[tuple[float, float], ...]
    source: str
    measured: bool

    def draw(self, rng: random.Random) -> tuple[float, float]:
        return self.samples[rng.randrange(len(self.samples))]


# The study's former constants, kept as the labelled assumption for a family the scenario suite
# does not measure (and for tests that need no measurement).
ASSUMED: dict[Signal, Timing] = {
    "xid": Timing(((5.0, 180.0),), "assumed: Xid seen in 5 s, spare swapped in 3 min", False),
    "ecc": Timing(((5.0, 180.0),), "assumed: ECC seen in 5 s, spare swapped in 3 min", False),
    "hang": Timing(((120.0, 180.0),), "assumed: heartbeat threshold 2 min, swap 3 min", False),
    "network": Timing(((300.0, 180.0),), "assumed: sustained-slowdown window 5 min, swap 3 min", False),
    "software": Timing(((5.0, 0.0),), "assumed: the crash seen in 5 s, restart only", False),
    "host": Timing(
        ((50.0, 180.0),),
        "assumed: node NotReady after Kubernetes' 50 s node-monitor grace period, swap 3 min",
        False,
    ),
    "silent": Timing(
        ((60.0, 18 * MIN),),
        "assumed: the numerics detector within a minute of the onset, DCGM diag level 3 (~15 min) on "
        "the job's nodes, swap 3 min",
        False,
    ),
}

SDC_NUMERICS_RECALL = 0.7
"""ASSUMPTION: the share of job-interrupting silent data corruptions that show in the training
numerics soon enough for a detector (NaN/Inf propagation, a loss or gradient-norm spike); the rest
diverge slowly and are found by people. Fault-injection studies (e.g. arXiv 2604.00726) report NaN
propagation, short-lived loss/gradient spikes *and* slow parameter divergence, without shares."""


@dataclass(frozen=True)
class GpuAiops:
    name: OperatorName = "gpu_aiops"
    timings: Mapping[Signal, Timing] = field(default_factory=lambda: dict(ASSUMED))
    escalated: frozenset[Signal] = frozenset({"network", "host"})
    fallback: ManualOnCall = ManualOnCall()
    numerics_recall: float = 0.0
    """Share of silent data corruptions the numerics detector catches (0: no detector, the lever off)."""

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        if signal == "silent" and not (self.numerics_recall and rng.random() < self.numerics_recall):
            # No hardware signal, and the numerics did not show it: found (if ever) like manual.
            person = self.fallback.respond(signal, persistent, spare_ready, rng)
            return Response(person.detect_s, person.recover_s, True)
        detect, mitigate = self.timings[signal].draw(rng)
        if not persistent:
            return Response(detect, mitigate, needed_person=False)
        if spare_ready:
            return Response(detect, mitigate, needed_person=False, escalated=signal in self.escalated)
        # No warm spare: the job waits for the next node back from repair, which a person may do.
        return Response(detect, mitigate, needed_person=True, waits_for_spare=True)


@dataclass(frozen=True)
class Instant:
    """The bound: instant detection and recovery, never short of a spare."""

    name: OperatorName = "instant"

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        return Response(0.0, 0.0, needed_person=False)


@dataclass(frozen=True)
class InstantFor:
    """``inner``, except that the faults of ``signals`` are met instantly: which share of the gap
    to the bound a family accounts for (the study's gap attribution)."""

    inner: GpuAiops
    signals: frozenset[Signal]
    name: OperatorName = "gpu_aiops"
    silent_when_seen: bool = False
    """Silent data corruption met instantly when ``inner``'s numerics detector sees it (the rest as
    ``inner`` finds it): the bound of an operator that acts instantly on every signal there is."""

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        if signal in self.signals:
            return Response(0.0, 0.0, needed_person=False)
        response = self.inner.respond(signal, persistent, spare_ready, rng)
        if signal == "silent" and self.silent_when_seen and not response.needed_person:
            return Response(0.0, 0.0, needed_person=False)
        return response


Operator = ManualOnCall | NaiveRestart | GpuAiops | Instant | InstantFor
OPERATORS: dict[OperatorName, Operator] = {
    "manual": ManualOnCall(),
    "naive": NaiveRestart(),
    "gpu_aiops": GpuAiops(),
    "instant": Instant(),
}
