"""A bounded queue of things to publish, drained by one loop that rides out NATS faults.

Producers in the event loop's thread (the fleet twin's kernel log and heartbeats; a node's log
reader) ``offer()`` items without ever blocking; ``run(stop)`` takes them in batches and hands each
batch to ``send``. A batch that fails with a transient NATS error (a server down, reconnecting, a
leader election, or no acknowledgement within ``send_timeout_s``: publishes buffered while
reconnecting can be lost, and nats-py would wait for their acks forever) is retried with bounded
exponential backoff, up to ``attempts`` tries, and counted
(``retries``); only then is it given up and counted in ``dropped`` — as is anything offered while
the queue is full (newest dropped, like the kernel ring buffer). Each success and each idle wait is
reported to the liveness registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from events.backoff import Backoff, retry_transient
from events.liveness import Liveness

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outbox(Generic[T]):
    def __init__(
        self,
        name: str,
        send: Callable[[list[T]], Awaitable[None]],
        *,
        max_queue: int = 100_000,
        max_batch: int = 1000,
        attempts: int = 30,
        backoff_max_s: float = 2.0,
        send_timeout_s: float = 10.0,
        liveness: Liveness | None = None,
    ) -> None:
        self.name = name
        self.send = send
        self.max_batch = max_batch
        self.attempts = attempts
        self.backoff_max_s = backoff_max_s
        self.send_timeout_s = send_timeout_s
        self.sent = 0
        self.dropped = 0
        self.retries = 0
        self.probe = (liveness or Liveness()).probe(name)
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=max_queue)
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, item: T) -> None:
        """Queue an item (callable from synchronous code in the event loop's thread)."""
        try:
            self._queue.put_nowait(item)
            self._idle.clear()
        except asyncio.QueueFull:
            self.dropped += 1
            self.probe.dropped()

    async def wait_idle(self) -> None:
        """Until everything offered so far was sent (or given up)."""
        await self._idle.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Send queued items until ``stop`` is set (and the queue is empty)."""
        self.probe.started()
        try:
            while not (stop.is_set() and self._queue.empty()):
                if self._queue.empty():
                    self.probe.idle()
                getter = asyncio.ensure_future(self._queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    continue
                self.probe.busy()
                batch = [getter.result()]
                while not self._queue.empty() and len(batch) < self.max_batch:
                    batch.append(self._queue.get_nowait())
                await self._send(batch, stop)
                if self._queue.empty():
                    self._idle.set()
        finally:
            self.probe.stopped()

    async def _send(self, batch: list[T], stop: asyncio.Event) -> None:
        def failed(exc: BaseException) -> None:
            self.retries += 1
            self.probe.error(exc)
            self.probe.retried()
            if self.retries == 1 or self.retries % 10 == 0:
                log.warning("%s: publishing %d items failed (%r); retrying", self.name, len(batch), exc)

        # While stopping, one quick try only: the process is going away.
        attempts = 1 if stop.is_set() else self.attempts
        try:
            await retry_transient(
                lambda: asyncio.wait_for(self.send(batch), self.send_timeout_s),
                attempts=attempts,
                backoff=Backoff(0.05, self.backoff_max_s),
                stop=stop,
                on_error=failed,
            )
        except Exception as exc:
            self.dropped += len(batch)
            self.probe.dropped(len(batch))
            self.probe.error(exc)
            log.error("%s: gave up on %d items after %r", self.name, len(batch), exc)
            return
        self.sent += len(batch)
        self.probe.ok(len(batch))
