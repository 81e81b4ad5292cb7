"""Bounded exponential backoff with jitter, and which NATS errors a loop should ride out.

Every long-running loop of the platform (consumers, detectors, watchers, publishers) waits with a
``Backoff`` after a failure: the first retry is quick, the delay doubles up to a ceiling, and a
random share of it (jitter) keeps replicas that failed together from retrying in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors

T = TypeVar("T")

_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.Error,  # every nats-py error: no responders, time-outs, reconnecting, slow consumer...
    nats.js.errors.Error,  # ... and JetStream's: service unavailable, API errors, leader elections
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
_NOT_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.MaxPayloadError,  # the same message will be too big next time too
    nats.js.errors.BadRequestError,  # so will a malformed request
    nats.errors.ConnectionClosedError,  # closed on purpose (shutdown): nothing to wait for
)


def is_transient(exc: BaseException) -> bool:
    """An error of the messaging layer itself (NATS unreachable, reconnecting, a JetStream leader
    election, no responders, a time-out): worth a retry after a backoff, never a reason to stop a
    loop or to drop what it carries. Anything else is the caller's to classify."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, _NOT_TRANSIENT)


class Backoff:
    """``delay()`` grows ``initial_s`` by ``factor`` per failure up to ``max_s``; ``reset()`` after a success.

    The returned delay is the grown value less a random share of up to ``jitter`` of it, so it
    never exceeds ``max_s``.
    """

    def __init__(
        self,
        initial_s: float = 0.1,
        max_s: float = 5.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def delay(self) -> float:
        """The wait before the next attempt (counts one more failure)."""
        grown = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return grown * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.failures = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep for the next delay; returns early (True) when ``stop`` is set meanwhile."""
        delay = self.delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        return stop.is_set()


async def retry_transient(
    op: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    backoff: Backoff | None = None,
    stop: asyncio.Event | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> T:
    """``op()``, tried up to ``attempts`` times while it fails with a transient error (backing off
    between tries); any other error, the last transient one, or ``stop`` set, raises."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    backoff = backoff or Backoff(0.1, 2.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc) or attempt >= attempts:
                raise
            if on_error is not None:
                on_error(exc)
            if await backoff.wait(stop):
                raise  # stopped: the caller sees the transient error it was riding out
