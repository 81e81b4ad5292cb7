"""The agent's pull loop on GPU_EVENTS against a real nats-server: every event handled once per
success, nothing acknowledged past a failure, and a clean stop."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from agents.consumer import EventConsumer
from agents.triage import TriageAgent
from events import subjects
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def publish(js, n: int) -> None:
    futures = [await js.publish_async(f"gpu.events.xid.sim-a.node-{i % 7}", b"%d" % i) for i in range(n)]
    await asyncio.gather(*futures)


async def ack_pending(js, durable: str) -> tuple[int, int]:
    info = await js.consumer_info(subjects.STREAM_EVENTS, durable)
    return info.num_ack_pending, info.num_pending


async def test_every_event_is_handled_in_batches_and_acknowledged(js):
    await publish(js, 3000)
    seen: list[bytes] = []

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(data for _, data in batch)

    consumer = EventConsumer(js, handle, durable="t1", batch_size=512)
    await consumer.start()
    await eventually(lambda: len(seen) == 3000, within_s=20, what="3000 events")
    await consumer.stop()
    assert [int(d) for d in seen] == list(range(3000))
    assert not consumer.ack_all and consumer.batches <= 10
    assert await ack_pending(js, "t1") == (0, 0)


async def test_events_a_killed_replica_fetched_are_redelivered_although_its_peer_acknowledged_later_ones(
    nats_url, js
):
    await publish(js, 10)
    doomed = await nats.connect(nats_url)
    fetched: list[bytes] = []
    frozen = asyncio.Event()

    async def freeze(batch: list[tuple[str, bytes]]) -> None:
        fetched.extend(data for _, data in batch)
        frozen.set()
        await asyncio.Event().wait()

    victim = EventConsumer(doomed.jetstream(), freeze, durable="shared", ack_wait_s=1.0)
    await victim.start()
    await frozen.wait()
    await doomed.close()  # as a SIGKILL: the batch it holds is never handled nor acknowledged
    seen: list[int] = []

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(int(d) for _, d in batch)

    peer = EventConsumer(js, handle, durable="shared", ack_wait_s=1.0)
    await peer.start()
    await publish(js, 1)  # a later event, which the peer handles and acknowledges first
    await eventually(lambda: set(range(10)) <= set(seen), within_s=20, what="the victim's events again")
    await peer.stop()
    assert len(fetched) == 10
    assert await ack_pending(js, "shared") == (0, 0)


async def test_a_durable_made_with_ack_all_is_made_again_with_per_message_acks_losing_nothing(js):
    await publish(js, 30)
    old = await js.pull_subscribe(
        subjects.events_all(),
        durable="ackall",
        stream=subjects.STREAM_EVENTS,
        config=ConsumerConfig(ack_policy=AckPolicy.ALL),
    )
    first = await old.fetch(10, timeout=5)
    await first[-1].ack_sync()  # events 0..9 acknowledged
    await old.fetch(5, timeout=5)  # 10..14 delivered, never acknowledged
    await old.unsubscribe()
    seen: list[int] = []

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(int(d) for _, d in batch)

    consumer = EventConsumer(js, handle, durable="ackall")
    await consumer.start()
    await eventually(lambda: len(seen) == 20, within_s=10, what="the 20 unacknowledged events")
    await consumer.stop()
    info = await js.consumer_info(subjects.STREAM_EVENTS, "ackall")
    assert seen == list(range(10, 30))
    assert info.config.ack_policy == AckPolicy.EXPLICIT and not consumer.ack_all
    assert await ack_pending(js, "ackall") == (0, 0)


async def test_a_failing_batch_is_retried_in_place_and_nothing_after_it_is_acknowledged(js):
    await publish(js, 100)
    seen: list[bytes] = []
    failures = 2

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("KV store unreachable")
        seen.extend(data for _, data in batch)

    consumer = EventConsumer(js, handle, durable="t2", batch_size=64)
    await consumer.start()
    await eventually(lambda: len(seen) == 100, within_s=20, what="the batch to get through")
    await consumer.stop()
    assert [int(d) for d in seen] == list(range(100)) and consumer.retries == 2


async def test_a_batch_unhandled_at_stop_is_redelivered_to_the_next_consumer(js):
    await publish(js, 50)

    async def never(batch: list[tuple[str, bytes]]) -> None:
        raise ConnectionError("down")

    stuck = EventConsumer(js, never, durable="t3", ack_wait_s=1.0)
    await stuck.start()
    await eventually(lambda: stuck.retries >= 1, within_s=10, what="a failed attempt")
    await stuck.stop()
    seen: list[bytes] = []

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(data for _, data in batch)

    again = EventConsumer(js, handle, durable="t3", ack_wait_s=1.0)
    await again.start()
    await eventually(lambda: len(set(seen)) == 50, within_s=20, what="the redelivery")
    await again.stop()


async def test_a_consumer_created_with_per_message_acks_is_still_served(js):
    await js.pull_subscribe(
        subjects.events_all(),
        durable="legacy",
        stream=subjects.STREAM_EVENTS,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    await publish(js, 40)
    seen: list[bytes] = []

    async def handle(batch: list[tuple[str, bytes]]) -> None:
        seen.extend(data for _, data in batch)

    consumer = EventConsumer(js, handle, durable="legacy")
    await consumer.start()
    await eventually(lambda: len(seen) == 40, within_s=10, what="40 events")
    await consumer.stop()
    assert not consumer.ack_all and await ack_pending(js, "legacy") == (0, 0)


class CountingAgent(TriageAgent):
    """The agent's consumer wiring with a handler that only counts (no store, no tools)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.seen = js, []
        self._caught_up, self.consumer = asyncio.Event(), None

    async def handle_payloads(self, payloads: list[tuple[str, bytes]]) -> None:
        self.seen.extend(int(d) for _, d in payloads)


async def test_the_agent_consumes_until_stopped_and_its_connection_then_drains_promptly(nats_url, js):
    own = await nats.connect(nats_url, drain_timeout=3)
    agent = CountingAgent(own.jetstream())
    await agent.start()
    await publish(js, 200)
    await eventually(lambda: len(agent.seen) == 200, within_s=10, what="200 events")
    await agent.stop()
    assert agent.consumer is not None and not agent.consumer.running
    await own.drain()  # raises DrainTimeoutError if prefetched messages were left in a subscription
    assert own.is_closed
