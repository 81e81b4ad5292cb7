"""How each operator detects and recovers from a job-interrupting failure.

Three operators, with the published figures of ../shared/domain/failure-rates.md ("Time to detect
and recover") and what each one does:

- ``manual``: a person on call. Detection 30 min to hours (median taken as 45 min), triage and
  restart excluding the bad node about an hour (Delta: mean recovery 2.2 h, single cases 19-23 h),
  hangs first wait for the NCCL watchdog (10 min default). Every incident needs the person.
- ``naive``: automatic restart on job failure (the scheduler's restart policy). Crashes are seen in
  about a minute, hangs after the watchdog; it restarts on the same nodes, so a persistent hardware
  fault fails again right after the restart. After ``max_restarts`` it pages a person, who proceeds
  like ``manual``.
- ``gpu_aiops``: detection from the signal itself — Xid/ECC in seconds (Minder: 3.6 s; our
  event-to-action latency is measured by the benchmarks), hangs by heartbeats at a per-job
  threshold, network slowdowns by the throughput detector's sustained window; mitigation swaps in a
  warm spare (minutes; ByteRobust: warm standby ~11x faster than requeue) and restarts from the
  checkpoint. A person is needed where the platform escalates (network switch/cable, unknown
  causes) or when the spare pool is empty.

Times are in seconds; random draws come from the caller's ``random.Random``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

Signal = Literal["xid", "ecc", "hang", "network", "software", "silent", "host"]
OperatorName = Literal["manual", "naive", "gpu_aiops"]

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
class GpuAiops:
    name: OperatorName = "gpu_aiops"
    xid_detect_s: float = 5.0
    hang_detect_s: float = 120.0
    network_detect_s: float = 5 * MIN
    swap_spare_s: float = 3 * MIN
    escalated: frozenset[Signal] = frozenset({"network", "host"})
    fallback: ManualOnCall = ManualOnCall()

    def respond(self, signal: Signal, persistent: bool, spare_ready: bool, rng: random.Random) -> Response:
        detect = {"hang": self.hang_detect_s, "network": self.network_detect_s}.get(signal, self.xid_detect_s)
        if signal == "silent":
            # Silent data corruption raises no signal for anyone: found (if ever) like manual.
            person = self.fallback.respond(signal, persistent, spare_ready, rng)
            return Response(person.detect_s, person.recover_s, True)
        if not persistent:
            return Response(detect, 0.0, needed_person=False)
        if spare_ready:
            return Response(
                detect, self.swap_spare_s, needed_person=False, escalated=signal in self.escalated
            )
        # No warm spare: the job waits for a repaired node; a person repairs it.
        return Response(detect, lognormal(rng, 2.2 * HOUR, 0.5), needed_person=True)


Operator = ManualOnCall | NaiveRestart | GpuAiops
OPERATORS: dict[OperatorName, Operator] = {
    "manual": ManualOnCall(),
    "naive": NaiveRestart(),
    "gpu_aiops": GpuAiops(),
}
