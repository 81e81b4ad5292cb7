"""Repeated offenders: the same GPU or node in too many incidents within a window is suspect hardware.

Occurrences are incidents, not raw events: a storm of 800,000 identical lines is one occurrence.
Xids follow the catalog's own repetition rule (``escalate_after``: NVSentinel's 5 in 24 h, Xid 48's
2 in a week, ...), and Xids without one never escalate (operators ask that benign codes never do).
Every other hardware signal — ECC, hangs and slow ranks pinned on a node — counts against a
generic limit of ``threshold`` incidents per GPU or per node in ``window_s``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from skills.catalog import EscalationRule

DEFAULT_THRESHOLD = 3
DEFAULT_WINDOW_S = 24 * 3600.0


@dataclass(frozen=True)
class Repeat:
    """Why an entity is a suspected bad part."""

    entity: str
    count: int
    window_s: float
    rule: str

    @property
    def summary(self) -> str:
        hours = self.window_s / 3600
        return (
            f"{self.entity}: incident #{self.count} within {hours:g} h ({self.rule}); suspected bad hardware"
        )


class OffenderLedger:
    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        window_s: float = DEFAULT_WINDOW_S,
        max_entities: int = 100_000,
    ) -> None:
        self.threshold = threshold
        self.window = timedelta(seconds=window_s)
        self.max_entities = max_entities
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _record(self, key: str, at: datetime, keep: timedelta) -> int:
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque(maxlen=256)
            while len(self._seen) > self.max_entities:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        times.append(at)
        while times and at - times[0] > keep:
            times.popleft()
        return len(times)

    def record_xid(self, gpu: str, xid: int, at: datetime, rule: EscalationRule | None) -> Repeat | None:
        """An incident for ``xid`` opened on ``gpu``; a ``Repeat`` when the catalog's rule trips."""
        if rule is None:
            return None
        window, key = timedelta(hours=rule.window_hours), f"xid{xid}@{gpu}"
        self._record(key, at, window)
        recent = len(self._seen[key])
        if recent >= rule.count:
            rule_text = f"catalog rule for Xid {xid}: {rule.count} in {rule.window_hours:g} h -> {rule.then}"
            return Repeat(gpu, recent, window.total_seconds(), rule_text)
        return None

    def record(self, entities: list[str], at: datetime) -> Repeat | None:
        """A hardware incident opened on ``entities`` (a GPU and/or its node); the worst repeat."""
        worst: Repeat | None = None
        for entity in entities:
            count = self._record(entity, at, self.window)
            if count >= self.threshold and (worst is None or count > worst.count):
                rule = f"{self.threshold} incidents in {self.window.total_seconds() / 3600:g} h"
                worst = Repeat(entity, count, self.window.total_seconds(), rule)
        return worst
