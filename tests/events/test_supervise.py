"""A supervised loop that fails or ends unasked is started again, counted, and never lost."""

from __future__ import annotations

import asyncio

from events.backoff import Backoff
from events.liveness import Liveness
from events.supervise import supervised
from tests.waiting import eventually


async def test_a_loop_that_raises_or_returns_unasked_is_restarted_until_stopped() -> None:
    stop = asyncio.Event()
    runs = {"n": 0}

    async def flaky() -> None:
        runs["n"] += 1
        if runs["n"] == 1:
            raise RuntimeError("boom")
        if runs["n"] == 2:
            return  # ended without being asked to
        await stop.wait()

    liveness = Liveness()
    task = asyncio.create_task(
        supervised("notifier", flaky, stop, liveness=liveness, reports=False, backoff=Backoff(0.001, 0.002))
    )
    await eventually(lambda: runs["n"] == 3, what="the third start")
    [status] = liveness.statuses()
    assert (status.state, status.restarts_total, status.errors_total, status.idle) == ("running", 2, 2, True)
    stop.set()
    await task
    assert liveness.statuses()[0].state == "stopped" and liveness.live()
