"""Ships kernel log lines from a node to ``gpu.kmsg.<cluster>.<node>`` (into the GPU_KMSG stream).

On a real node it reads ``journalctl -k -f -o short-iso-precise`` (or /dev/kmsg) through
``aiops kmsg ship``; in the embedded platform the fleet twin's kernel log feeds it. Lines are
queued without blocking the producer and published with acks in flight; a NATS fault holds them
and retries (``events.outbox``) instead of dropping them. A line published twice by a retry becomes
one event: the kmsg service deduplicates on the line's content.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from events import subjects
from events.kmsg_service import HEADER_CLUSTER, HEADER_NODE
from events.liveness import Liveness
from events.outbox import Outbox


class KmsgShipper(Outbox[tuple[str, str]]):
    def __init__(
        self,
        js: JetStreamContext,
        cluster: str,
        *,
        max_queue: int = 100_000,
        liveness: Liveness | None = None,
    ) -> None:
        super().__init__("ship kernel log", self._publish, max_queue=max_queue, liveness=liveness)
        self.js = js
        self.cluster = cluster

    @property
    def shipped(self) -> int:
        return self.sent

    def offer_line(self, node: str, line: str) -> None:
        self.offer((node, line))

    async def ship(self, node: str, line: str) -> None:
        await self._publish([(node, line)])

    async def _publish(self, batch: list[tuple[str, str]]) -> None:
        futures = []
        for node, line in batch:
            headers = {HEADER_NODE: node, HEADER_CLUSTER: self.cluster}
            futures.append(
                await self.js.publish_async(subjects.kmsg(self.cluster, node), line.encode(), headers=headers)
            )
        await asyncio.gather(*futures)
