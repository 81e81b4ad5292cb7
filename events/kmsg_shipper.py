"""Ships kernel log lines from a node to ``gpu.kmsg.<cluster>.<node>`` (into the GPU_KMSG stream).

On a real node ``aiops node`` (events/node/) reads ``/dev/kmsg`` or journald and publishes each
line with its own ``Nats-Msg-Id`` (``publish_kmsg_lines``); in the embedded platform the fleet twin's
kernel log feeds this shipper. Lines are queued without blocking the producer and published with
acks in flight; a NATS fault holds them and retries (``events.outbox``) instead of dropping them. A
line published twice by a retry becomes one event: the kmsg service deduplicates on the line's
content.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext

from events import subjects
from events.kmsg_service import HEADER_CLUSTER, HEADER_NODE
from events.liveness import Liveness
from events.outbox import Outbox


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
        # The outbox bounds the wait for acks (a publish lost in an outage would wait forever).
        await publish_kmsg_lines(
            self.js, self.cluster, [(node, line, None) for node, line in batch], ack_timeout_s=None
        )
