"""One batch publisher: items offered from synchronous code, published in batches by one task.

Every producer in the platform that must not block the code producing its items (the twin's kernel
log, the twin's heartbeats, incident changes to chat, the node agent) has the same loop: a bounded
queue that drops the newest when full (counted, never silent), a task that waits for the first item
or for ``stop``, takes what else is queued up to ``max_batch``, and hands the batch to a sink. This
module is that loop, once; each producer supplies only its sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Sink = Callable[[list[T]], Awaitable[None]]


class BatchPublisher(Generic[T]):
    """``offer`` queues (never blocks); ``run(stop)`` publishes through ``sink`` until ``stop`` is set
    and the queue is empty. A batch the sink fails is logged and counted in ``failed``."""

    def __init__(self, sink: Sink[T], *, what: str, max_queue: int = 100_000, max_batch: int = 1000) -> None:
        self.sink = sink
        self.what = what
        self.max_batch = max_batch
        self.published = 0
        self.dropped = 0
        self.failed = 0
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=max_queue)
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, item: T) -> bool:
        """Queue an item; False (and counted in ``dropped``) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        self._idle.clear()
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and self._queue.empty()):
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                continue
            batch = [getter.result()]
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            try:
                await self.sink(batch)
                self.published += len(batch)
            except Exception:
                self.failed += len(batch)
                log.exception("could not publish %d %s", len(batch), self.what)
            if self._queue.empty():
                self._idle.set()

    async def wait_idle(self) -> None:
        """Until everything offered so far has been through the sink."""
        await self._idle.wait()
