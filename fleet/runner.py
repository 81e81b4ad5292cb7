"""Drive a twin in real time: advance it by ``speed * wall time`` every tick until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

from fleet.clock import RealTimeDriver


class Advanceable(Protocol):
    def advance(self, seconds: float) -> object: ...


async def run_clock(
    twin: Advanceable,
    speed: float,
    tick_s: float,
    stop: asyncio.Event,
    *,
    wall_clock: Callable[[], float] = time.monotonic,
    on_tick: Callable[[float], None] | None = None,
) -> float:
    """Advance ``twin`` by ``speed`` simulated seconds per wall second, once every ``tick_s`` wall
    seconds, until ``stop`` is set (the time since the last tick is advanced on the way out).

    ``on_tick(simulated_seconds)`` runs after each advance. Returns the simulated seconds advanced.
    """
    if tick_s <= 0:
        raise ValueError(f"tick_s must be positive, got {tick_s}")
    driver = RealTimeDriver(speed, wall_clock)
    total = 0.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=tick_s)
        simulated = driver.take()
        if simulated > 0:
            twin.advance(simulated)
            total += simulated
        if on_tick is not None:
            on_tick(simulated)
    return total
