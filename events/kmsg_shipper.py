"""Ships kernel log lines from a node to ``gpu.kmsg.<cluster>.<node>`` (into the GPU_KMSG stream).

On a real node it reads ``journalctl -k -f -o short-iso-precise`` (or /dev/kmsg) through
``aiops kmsg ship``; in the embedded platform the fleet twin's kernel log feeds it. Lines are
queued without blocking the producer and published with acks in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext

from events import subjects
from events.kmsg_service import HEADER_CLUSTER, HEADER_NODE

log = logging.getLogger(__name__)


class KmsgShipper:
    def __init__(self, js: JetStreamContext, cluster: str, *, max_queue: int = 100_000) -> None:
        self.js = js
        self.cluster = cluster
        self.shipped = 0
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=max_queue)
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, node: str, line: str) -> None:
        """Queue a line (callable from synchronous code in the event loop's thread)."""
        try:
            self._queue.put_nowait((node, line))
            self._idle.clear()
        except asyncio.QueueFull:
            self.dropped += 1  # like the kernel ring buffer: the newest are dropped when full

    async def ship(self, node: str, line: str) -> None:
        await self._publish([(node, line)])

    async def run(self, stop: asyncio.Event) -> None:
        """Publish queued lines until ``stop`` is set (and the queue is empty)."""
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
            while not self._queue.empty() and len(batch) < 1000:
                batch.append(self._queue.get_nowait())
            try:
                await self._publish(batch)
            except Exception:
                log.exception("could not ship %d kernel log lines", len(batch))
            if self._queue.empty():
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _publish(self, batch: list[tuple[str, str]]) -> None:
        futures = []
        for node, line in batch:
            headers = {HEADER_NODE: node, HEADER_CLUSTER: self.cluster}
            futures.append(
                await self.js.publish_async(subjects.kmsg(self.cluster, node), line.encode(), headers=headers)
            )
        await asyncio.gather(*futures)
        self.shipped += len(batch)
