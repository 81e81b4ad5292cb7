"""Recurring thermal slowdown: the DCGM detector's rule over a GPU's clock-event reasons.

DCGM reports why a GPU's clocks are below their maximum as a bitmask
(``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``, a 1:1 map of NVML's ``nvmlClocksEventReasons``). Three of its
bits are slowdowns the hardware forces to protect itself (``events.dcgm_fields.THERMAL_SLOWDOWN_BITS``):
SW thermal slowdown (0x20: the GPU or its memory above the maximum operating temperature), HW thermal
slowdown (0x40: clocks cut by half or more because the temperature is too high) and the HW power
brake (0x80: clocks cut by an external power brake assertion). Unlike the idle, power-cap and
application-clock reasons, none of them is the workload's doing.

One slowdown is weather (a hot aisle, a brief fan stall, a neighbour's load). Slowdowns that keep
coming back on one GPU are a part failing: DCGM's passive health watch for thermals and power
(``dcgmi health --set t``) turns such samples into warnings, NVIDIA's NVSentinel cordons a GPU that
sits at its hardware-slowdown temperature limit (runbook ``GpuThermalMarginWatch``), and thermal
interfaces and sensors caused 1.4% of the interruptions of Llama 3's training (failure-rates.md).
Meanwhile every rank of a synchronous job waits for the throttled GPU.

The rule (``ThermalWatch``), per GPU, over the scrapes the detector sees:

- **sustained**: the bits set in at least ``min_set`` of the last ``of_last`` scrapes (defaults 8 of
  20: with a 15 s scrape, two minutes of the last five), or
- **recurring**: at least ``episodes`` separate episodes (a scrape with the bits set after one
  without) within ``window_s`` (defaults 3 in an hour).

One isolated blip (a short episode, fewer than ``min_set`` scrapes) matches neither. A GPU is
reported once per match: after a report it is re-armed, its history started over, once ``of_last``
scrapes in a row are clear (a repair's reset that cured it, or a long pause), so a slowdown that
comes back after a repair is reported again while one that never lets up is reported once. A GPU
without a slowdown for ``window_s`` is forgotten. The thresholds are ASSUMPTIONS of this platform
(NVIDIA publishes the bits, not how many make a trend).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.dcgm_fields import THERMAL_SLOWDOWN_BITS

MIN_SET = 8
OF_LAST = 20
EPISODES = 3
WINDOW_S = 3600.0


@dataclass
class _History:
    scrapes: deque[bool]
    episodes: deque[datetime] = field(default_factory=deque)
    last_set: datetime | None = None
    reported: bool = False


@dataclass(frozen=True)
class Verdict:
    """Why a GPU's throttling counts as recurring."""

    set_in: int
    of: int
    episodes: int
    window_s: float

    @property
    def reason(self) -> str:
        return (
            f"recurring thermal slowdown: clock-event reasons with thermal or power-brake bits in "
            f"{self.set_in} of the last {self.of} scrapes, {self.episodes} episode(s) within "
            f"{self.window_s / 3600:g} h"
        )


class ThermalWatch:
    def __init__(
        self,
        *,
        min_set: int = MIN_SET,
        of_last: int = OF_LAST,
        episodes: int = EPISODES,
        window_s: float = WINDOW_S,
    ) -> None:
        if not 0 < min_set <= of_last or episodes < 2 or window_s <= 0:
            raise ValueError(f"bad thermal rule: {min_set} of {of_last}, {episodes} in {window_s} s")
        self.min_set, self.of_last = min_set, of_last
        self.episodes, self.window = episodes, timedelta(seconds=window_s)
        self._gpus: dict[tuple[str, int], _History] = {}

    def observe(self, gpu: tuple[str, int], reasons: float | None, now: datetime) -> Verdict | None:
        """One scrape's clock-event reasons of ``gpu``; a ``Verdict`` the first time the rule matches."""
        history = self._gpus.get(gpu)
        slowed = reasons is not None and bool(int(reasons) & THERMAL_SLOWDOWN_BITS)
        if history is None:
            if not slowed:
                return None  # the usual case: nothing to remember
            history = self._gpus[gpu] = _History(deque(maxlen=self.of_last))
        previous = history.scrapes[-1] if history.scrapes else False
        history.scrapes.append(slowed)
        if slowed:
            if not previous:
                history.episodes.append(now)
            history.last_set = now
        while history.episodes and now - history.episodes[0] > self.window:
            history.episodes.popleft()
        if history.last_set is not None and now - history.last_set > self.window:
            del self._gpus[gpu]  # a quiet window: forgotten (and reportable again)
            return None
        set_in = sum(history.scrapes)
        if history.reported and set_in == 0 and len(history.scrapes) == self.of_last:
            del self._gpus[gpu]  # re-armed: a slowdown from now on is a new one
            return None
        if history.reported or (set_in < self.min_set and len(history.episodes) < self.episodes):
            return None
        history.reported = True
        return Verdict(set_in, len(history.scrapes), len(history.episodes), self.window.total_seconds())

    def forget(self, gpu: tuple[str, int]) -> None:
        self._gpus.pop(gpu, None)
