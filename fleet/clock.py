"""Simulated time: a virtual UTC clock, and the conversion from wall-clock time to simulated time."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

DEFAULT_EPOCH = datetime(2026, 11, 29, 6, 50, tzinfo=UTC)


class VirtualClock:
    """Simulated time as an aware UTC datetime that only moves when told to.

    Elapsed time is kept as a float of seconds since the epoch, so many small advances add up
    exactly where a datetime would round each one to a microsecond.
    """

    def __init__(self, epoch: datetime = DEFAULT_EPOCH) -> None:
        if epoch.tzinfo is None or epoch.utcoffset() is None:
            raise ValueError(f"the clock epoch must be timezone-aware, got naive {epoch.isoformat()}")
        self._epoch = epoch.astimezone(UTC)
        self._elapsed_s = 0.0

    @property
    def epoch(self) -> datetime:
        return self._epoch

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds since the epoch."""
        return self._elapsed_s

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._elapsed_s)

    def at(self, offset_s: float) -> datetime:
        """The time ``offset_s`` simulated seconds after now (used to stamp events inside an advance)."""
        return self._epoch + timedelta(seconds=self._elapsed_s + offset_s)

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward; returns the new now. Time never goes backwards."""
        if seconds < 0:
            raise ValueError(f"cannot advance the clock by a negative amount ({seconds} s)")
        self._elapsed_s += seconds
        return self.now()


class RealTimeDriver:
    """Turns wall-clock time into simulated seconds at ``speed`` simulated seconds per wall second.

    ``wall_clock`` is the one I/O seam (``time.monotonic`` by default); tests pass a fake one.
    """

    def __init__(self, speed: float, wall_clock: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive (simulated seconds per wall second), got {speed}")
        self._speed = speed
        self._wall_clock = wall_clock
        self._last = wall_clock()

    @property
    def speed(self) -> float:
        return self._speed

    def take(self) -> float:
        """Simulated seconds due since the previous call (or since construction)."""
        now = self._wall_clock()
        wall_dt = max(0.0, now - self._last)
        self._last = now
        return wall_dt * self._speed
