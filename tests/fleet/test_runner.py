from __future__ import annotations

import asyncio
import itertools

import pytest

from fleet import FleetTwin, run_clock


async def test_the_runner_advances_the_twin_by_speed_times_wall_time_until_stopped(twin: FleetTwin) -> None:
    wall = itertools.count(start=0.0, step=1.0)  # every reading is one wall second later
    stop = asyncio.Event()
    ticks: list[float] = []

    def on_tick(simulated: float) -> None:
        ticks.append(simulated)
        if len(ticks) == 3:
            stop.set()

    total = await asyncio.wait_for(
        run_clock(twin, speed=60.0, tick_s=0.001, stop=stop, wall_clock=lambda: next(wall), on_tick=on_tick),
        timeout=5,
    )
    assert ticks == [60.0, 60.0, 60.0]
    assert total == 180.0
    assert twin.clock.elapsed_s == 180.0
    assert twin.job("train-01").step == 90


async def test_the_runner_on_the_real_clock_moves_time_and_stops_on_the_event(twin: FleetTwin) -> None:
    stop = asyncio.Event()
    moved = asyncio.Event()

    def on_tick(simulated: float) -> None:
        if twin.clock.elapsed_s > 0:
            moved.set()

    task = asyncio.create_task(run_clock(twin, speed=1000.0, tick_s=0.001, stop=stop, on_tick=on_tick))
    await asyncio.wait_for(moved.wait(), timeout=5)
    stop.set()
    total = await asyncio.wait_for(task, timeout=5)
    assert total == twin.clock.elapsed_s > 0


async def test_the_runner_refuses_a_non_positive_tick(twin: FleetTwin) -> None:
    with pytest.raises(ValueError, match="tick_s must be positive"):
        await run_clock(twin, speed=1.0, tick_s=0, stop=asyncio.Event())
