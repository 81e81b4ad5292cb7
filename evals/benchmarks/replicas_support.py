"""The parts of the replicas benchmark (evals/benchmarks/replicas.py) that are not the scenario:
CPU accounting from /proc, the background loader process, the backlog, raw consume, a wipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from datetime import UTC, datetime
from multiprocessing.context import SpawnContext, SpawnProcess

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from events import subjects
from events.models import XidEvent, stable_id
from events.publish import publish_events

BATCH = 256
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (None once it is gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


class Cpu:
    """CPU seconds each named process spends from construction to ``spent()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.wall = time.perf_counter()

    def spent(self) -> dict[str, float]:
        out = {"wall": round(time.perf_counter() - self.wall, 2)}
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self.start[name]
            if now is not None and then is not None:
                out[name] = round(now - then, 2)
        return out


def event(cluster: str, node: str, gpu: int, xid: int, tag: str, at: datetime) -> XidEvent:
    return XidEvent(
        event_id=stable_id(tag),
        time=at,
        cluster=cluster,
        source="bench",
        node=node,
        gpu=gpu,
        xid=xid,
        message="benchmark",
    )


async def publish_backlog(
    js: JetStreamContext, cluster: str, noisy: list[tuple[str, int]], total: int
) -> int:
    """``total`` repeats of a benign application Xid (43) from the noisy GPUs; the last sequence."""
    rng, now = random.Random(3), datetime.now(UTC)
    tag = f"backlog-{time.time_ns()}"
    for start in range(0, total, 2000):
        batch = [
            event(cluster, *rng.choice(noisy), 43, f"{tag}-{i}", now)
            for i in range(start, min(total, start + 2000))
        ]
        await publish_events(js, batch, timeout_s=60)
    info = await js.stream_info(subjects.STREAM_EVENTS)
    return int(info.state.last_seq)


async def raw_consume(js: JetStreamContext, total: int, *, durable: str) -> float:
    """nats-py pull consume of ``total`` messages (fetch, ack each) on a fresh durable: events/s."""
    sub = await js.pull_subscribe(
        subjects.events_all(),
        durable=durable,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
    )
    seen, start = 0, time.perf_counter()
    while seen < total:
        msgs = await sub.fetch(BATCH, timeout=5)
        for m in msgs:
            await m.ack()
        seen += len(msgs)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    await js.delete_consumer(subjects.STREAM_EVENTS, durable)
    return seen / elapsed


async def drained(js: JetStreamContext, durable: str, last_seq: int) -> bool:
    """The consumer has delivered up to ``last_seq`` and nothing is waiting for an ack."""
    info = await js.consumer_info(subjects.STREAM_EVENTS, durable)
    return (
        info.delivered.stream_seq >= last_seq
        and (info.num_pending or 0) == 0
        and (info.num_ack_pending or 0) == 0
    )


async def wipe_jetstream(url: str) -> None:
    """Every stream and KV bucket of the account gone: the next platform starts from nothing."""
    nc = await nats.connect(url.split(","))
    js = nc.jetstream()
    for name in [info.config.name for info in await js.streams_info()]:
        if name:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    await nc.close()


def load_process(
    ctx: SpawnContext, url: str, cluster: str, noisy: list[tuple[str, int]], rate: float, seconds: float
) -> SpawnProcess:
    return ctx.Process(target=_load, args=(url, cluster, noisy, rate, seconds))


def _load(url: str, cluster: str, noisy: list[tuple[str, int]], rate: float, seconds: float) -> None:
    """Publish ``rate`` events/s of repeated benign Xids from the noisy GPUs for ``seconds``."""

    async def publish() -> None:
        nc = await nats.connect(url.split(","))
        js = nc.jetstream()
        rng, sent, start = random.Random(11), 0, time.perf_counter()
        tag = f"bg-{time.time_ns()}"
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate) - sent
            now = datetime.now(UTC)
            batch = [
                event(cluster, *rng.choice(noisy), 43, f"{tag}-{sent + i}", now) for i in range(max(0, due))
            ]
            if batch:
                await publish_events(js, batch, timeout_s=60)
                sent += len(batch)
            await asyncio.sleep(0.005)
        await nc.close()

    asyncio.run(publish())
