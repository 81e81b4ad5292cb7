"""Ships kernel log lines from a node to ``gpu.kmsg.<cluster>.<node>`` (into the GPU_KMSG stream).

On a real node ``aiops node`` (events/node_agent) reads ``/dev/kmsg`` or journald and publishes
each line with its own ``Nats-Msg-Id``; in the embedded platform the fleet twin's kernel log feeds
this shipper. Lines are queued without blocking the producer (events/batching.py) and published
with acks in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext

from events import subjects
from events.batching import BatchPublisher
from events.kmsg_service import HEADER_CLUSTER, HEADER_NODE


async def publish_kmsg_lines(
    js: JetStreamContext,
    cluster: str,
    lines: Sequence[tuple[str, str, str | None]],
    *,
    ack_timeout_s: float | None = 10.0,
) -> int:
    """Publish ``(node, line, msg_id)`` with acks in flight; returns how many JetStream took as new
    (a repeated ``Nats-Msg-Id`` within the stream's duplicate window is acknowledged, not stored).
    ``ack_timeout_s``: give up on the acks after this long (the node agent retries from its spool);
    None waits (the embedded twin's shipper, whose NATS is in the same process's lifetime)."""
    futures = []
    for node, line, msg_id in lines:
        headers = {HEADER_NODE: node, HEADER_CLUSTER: cluster}
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        futures.append(await js.publish_async(subjects.kmsg(cluster, node), line.encode(), headers=headers))
    # publish_async's futures have no deadline of their own: a message lost in an outage would wait forever.
    acks = await asyncio.wait_for(asyncio.gather(*futures), ack_timeout_s)
    return sum(1 for ack in acks if not ack.duplicate)


class KmsgShipper:
    def __init__(self, js: JetStreamContext, cluster: str, *, max_queue: int = 100_000) -> None:
        self.js = js
        self.cluster = cluster
        self._out: BatchPublisher[tuple[str, str]] = BatchPublisher(
            self._publish, what="kernel log lines", max_queue=max_queue
        )

    @property
    def shipped(self) -> int:
        return self._out.published

    @property
    def dropped(self) -> int:
        """Lines dropped because the queue was full (like the kernel ring buffer: the newest)."""
        return self._out.dropped

    def offer(self, node: str, line: str) -> None:
        """Queue a line (callable from synchronous code in the event loop's thread)."""
        self._out.offer((node, line))

    async def ship(self, node: str, line: str) -> None:
        await self._publish([(node, line)])

    async def run(self, stop: asyncio.Event) -> None:
        """Publish queued lines until ``stop`` is set (and the queue is empty)."""
        await self._out.run(stop)

    async def wait_idle(self) -> None:
        await self._out.wait_idle()

    async def _publish(self, batch: list[tuple[str, str]]) -> None:
        await publish_kmsg_lines(
            self.js, self.cluster, [(node, line, None) for node, line in batch], ack_timeout_s=None
        )
