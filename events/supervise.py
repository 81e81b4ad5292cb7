"""Keep a long-running loop running: restart it, after a backoff, whenever it ends unasked.

The loops themselves ride out the NATS errors they know (``events.consumer``, ``events.outbox``,
the detectors); this is the net under them, for an error nobody foresaw, and for loops that live in
packages which report nothing themselves (the chat notifier). A restart is logged with its cause,
counted on the loop's liveness probe, and the loop never ends silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from events.backoff import Backoff
from events.liveness import Liveness

log = logging.getLogger(__name__)


async def supervised(
    name: str,
    run: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    *,
    liveness: Liveness,
    reports: bool = True,
    backoff: Backoff | None = None,
) -> None:
    """Run ``run()`` until ``stop`` is set, restarting it when it raises or returns early.

    ``reports``: the loop reports its own successes on ``liveness.probe(name)``; otherwise it is
    marked idle (alive, never stale) while it runs."""
    probe = liveness.probe(name)
    backoff = backoff or Backoff(0.5, 10.0)
    while not stop.is_set():
        probe.started()
        if not reports:
            probe.idle()
        try:
            await run()
            if stop.is_set():
                break
            log.error("%s ended without being asked to; restarting it", name)
            probe.error(RuntimeError("ended"))
        except Exception as exc:
            probe.error(exc)
            log.exception("%s failed; restarting it", name)
        if await backoff.wait(stop):
            break
        if probe.state == "running":  # else the loop marked itself stopped: started() counts it
            probe.restarted()
    probe.stopped()
