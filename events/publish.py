"""Publishing helpers shared by every producer: typed events with dedupe, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext

from events import subjects
from events.dead_letter import DeadLetter, publish_dead_letter
from events.models import AnyEvent, event_key

__all__ = [
    "AnyEvent",
    "DeadLetter",
    "encode_event",
    "event_subject",
    "publish_dead_letter",
    "publish_events",
]


def event_subject(event: AnyEvent) -> str:
    return subjects.event(event.kind, event.cluster, event_key(event))


def encode_event(event: AnyEvent) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


ACK_TIMEOUT_S = 10.0


async def publish_events(
    js: JetStreamContext, events: Sequence[AnyEvent], *, timeout_s: float = ACK_TIMEOUT_S
) -> int:
    """Publish many events with acks in flight; returns how many were new (not duplicates).

    Raises ``TimeoutError`` when JetStream has not acknowledged them all within ``timeout_s`` (a
    server restarting can lose publishes buffered during the reconnection, and nats-py would wait
    for their acks forever); the caller retries, and ``Nats-Msg-Id`` makes a retry harmless."""
    futures = [
        await js.publish_async(event_subject(ev), encode_event(ev), headers={"Nats-Msg-Id": ev.event_id})
        for ev in events
    ]
    # Cancelled on the time-out, which also frees their places among nats-py's pending publishes.
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout_s) if futures else []
    return sum(1 for ack in acks if not ack.duplicate)
