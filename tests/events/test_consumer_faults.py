"""The platform's pull consumer against real nats-servers that die: it backs off, subscribes
again, and keeps pulling; nothing is acknowledged unhandled, and a poison message goes to the
dead-letter hook while the others proceed."""

from __future__ import annotations

from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events import subjects
from events.connection import connect
from events.consumer import PullConsumer
from events.liveness import Liveness
from events.streams import JetStreamLayout, ensure_jetstream
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def publish(js: JetStreamContext, start: int, n: int) -> None:
    for i in range(start, start + n):
        await js.publish(f"gpu.events.xid.sim-a.node-{i % 5}", b"%d" % i)


def consumer(js: JetStreamContext, seen: set[int], liveness: Liveness, durable: str = "t") -> PullConsumer:
    async def handle(msgs: list[Msg]) -> None:
        seen.update(int(m.data) for m in msgs)

    return PullConsumer(
        js,
        handle,
        stream=subjects.STREAM_EVENTS,
        subject=subjects.events_all(),
        durable=durable,
        batch_size=16,
        idle_wait_s=0.2,
        ack_wait_s=2.0,
        liveness=liveness,
    )


async def test_the_pull_loop_keeps_pulling_after_its_only_server_is_killed_and_restarted(tmp_path: Path):
    with NatsCluster(tmp_path, size=1) as server:
        nc = await connect(server.url, name="test")
        js = nc.jetstream()
        await ensure_jetstream(js)
        seen: set[int] = set()
        liveness = Liveness()
        pull = consumer(js, seen, liveness)
        await pull.start()
        await publish(js, 0, 20)
        await eventually(lambda: len(seen) == 20, what="the first 20")

        server.kill("n1")
        await eventually(lambda: not nc.is_connected, what="the client to notice")
        server.restart("n1")
        await eventually(lambda: nc.is_connected, within_s=20, what="the reconnection")
        await publish(js, 20, 20)

        await eventually(
            lambda: seen == set(range(40)), within_s=30, what="the 20 published after the restart"
        )
        assert pull.running
        [status] = liveness.statuses()
        assert status.state == "running" and not status.stale
        await pull.stop()
        info = await js.consumer_info(subjects.STREAM_EVENTS, "t")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        await nc.close()


async def test_a_fetch_failing_because_the_streams_server_died_is_ridden_out(tmp_path: Path):
    # The defect: a one-replica GPU_EVENTS on a cluster node that dies makes fetch raise (service
    # unavailable) instead of timing out; the loop used to end there, silently.
    with NatsCluster(tmp_path, size=3) as cluster:
        nc = await connect(cluster.url, name="test")
        js = nc.jetstream()
        await ensure_jetstream(js, JetStreamLayout(replicas=1))
        info = await js.stream_info(subjects.STREAM_EVENTS)
        assert info.cluster is not None and info.cluster.leader is not None
        holder = info.cluster.leader
        seen: set[int] = set()
        pull = consumer(js, seen, Liveness())
        await pull.start()
        await publish(js, 0, 10)
        await eventually(lambda: len(seen) == 10, what="the first 10")

        cluster.kill(holder)
        await eventually(lambda: pull.fetch_errors >= 2, within_s=30, what="failed fetches")
        assert pull.running  # still trying
        cluster.restart(holder)

        async def published() -> bool:
            try:
                await publish(js, 10, 10)
                return True
            except (TimeoutError, nats.errors.Error):
                return False  # the stream is not back yet

        await eventually(published, within_s=30, what="the stream to take messages again")
        await eventually(
            lambda: seen >= set(range(20)), within_s=30, what="the 10 published after the restart"
        )
        assert pull.running and pull.probe.errors_total >= 2
        await pull.stop()
        await nc.close()


async def test_a_poison_message_goes_to_the_dead_letter_hook_and_the_rest_proceed(js: JetStreamContext):
    await publish(js, 0, 30)
    seen: set[int] = set()
    dead: list[tuple[bytes, str]] = []
    flaky = {"left": 2}

    async def handle(msgs: list[Msg]) -> None:
        if flaky["left"]:
            flaky["left"] -= 1
            raise nats.errors.NoRespondersError()  # transient: retried in place, never dead-lettered
        if any(m.data == b"13" for m in msgs):
            raise ValueError("cannot handle 13")
        seen.update(int(m.data) for m in msgs)

    async def dead_letter(msg: Msg, exc: BaseException) -> None:
        dead.append((msg.data, type(exc).__name__))

    pull = PullConsumer(
        js,
        handle,
        stream=subjects.STREAM_EVENTS,
        subject=subjects.events_all(),
        durable="poison",
        batch_size=8,
        idle_wait_s=0.2,
        dead_letter=dead_letter,
    )
    await pull.start()
    await eventually(lambda: len(seen) == 29, what="every other message")
    await pull.stop()
    assert dead == [(b"13", "ValueError")] and 13 not in seen
    assert pull.retries >= 2 and pull.dead_lettered == 1
    info = await js.consumer_info(subjects.STREAM_EVENTS, "poison")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
