"""The agent's pull loop on ``GPU_EVENTS``: batches of events in, one acknowledgement per batch out.

A durable JetStream pull consumer (agent replicas share it and split the stream) with
``AckPolicy.ALL``: acknowledging the last message of a batch acknowledges the whole batch, so a
storm costs one ack per batch (up to 1,024 events) instead of one per event; bigger batches also
mean fewer incident writes, as the agent writes each touched incident once per batch. A batch is acknowledged only after the agent has
persisted it. When handling fails (the KV store unreachable, say), the same batch is retried in
place with backoff and nothing after it is acknowledged — with ack-all, moving on would silently
acknowledge the failed batch too. Stopped mid-retry, the batch stays unacknowledged and JetStream
redelivers it after ``ack_wait``.

Why not FastStream's batch subscriber (the kmsg service uses it): its 50 ms fetch deadline yields
batches of ~10 events under load, and it JSON-decodes every message for a handler that never reads
the decoded body; together they halve the agent's throughput (evals/benchmarks/agent_throughput.py).
A consumer created earlier with per-message acks is still served, acking each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from events import subjects

log = logging.getLogger(__name__)

Handler = Callable[[list[tuple[str, bytes]]], Awaitable[None]]
_IDLE = (asyncio.TimeoutError, nats.errors.TimeoutError)
_CLOSED = (
    nats.errors.ConnectionClosedError,
    nats.errors.BadSubscriptionError,
    nats.errors.ConnectionDrainingError,
)


class EventConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        handle: Handler,
        *,
        durable: str = "triage",
        batch_size: int = 1024,
        idle_wait_s: float = 0.5,
        ack_wait_s: float = 30.0,
        on_backlog: Callable[[bool], None] | None = None,
    ) -> None:
        self.js = js
        self.handle = handle
        self.durable = durable
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.ack_wait_s = ack_wait_s
        self.on_backlog = on_backlog
        self.ack_all = True
        self.batches = 0
        self.retries = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = ConsumerConfig(
            ack_policy=AckPolicy.ALL, ack_wait=self.ack_wait_s, max_ack_pending=max(1000, 4 * self.batch_size)
        )
        self._sub = await self.js.pull_subscribe(
            subjects.events_all(), durable=self.durable, stream=subjects.STREAM_EVENTS, config=config
        )
        info = await self._sub.consumer_info()
        self.ack_all = info.config.ack_policy == AckPolicy.ALL
        self._task = asyncio.create_task(self._run(), name=f"consume GPU_EVENTS ({self.durable})")

    async def stop(self) -> None:
        """Stop after the batch in hand (it is acknowledged if it was handled). Idempotent."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=self.idle_wait_s + 10)
            self._task = None
            # Messages prefetched for us and never handled sit in the subscription's queue: leave
            # it now, or draining the connection waits for them (JetStream redelivers them anyway).
            with contextlib.suppress(*_CLOSED):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        # The next batch is fetched while this one is handled: the wait for the server overlaps
        # with the work. Its messages are acknowledged only after they are handled, in order.
        ahead = asyncio.ensure_future(self._fetch())
        try:
            while not self._stop.is_set():
                msgs = await ahead
                if msgs is None:
                    return  # the connection is closing
                ahead = asyncio.ensure_future(self._fetch())
                if not msgs:
                    self._backlog(False)
                    continue
                self._backlog(len(msgs) >= self.batch_size)
                if not await self._handle(msgs):
                    return
                try:
                    await self._ack(msgs)
                except _CLOSED:
                    return
                self.batches += 1
        finally:
            # A batch fetched but not handled stays unacknowledged: JetStream redelivers it.
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead

    async def _fetch(self) -> list[Msg] | None:
        """The next batch; [] when idle; None when the connection is closing."""
        try:
            return await self._sub.fetch(self.batch_size, timeout=self.idle_wait_s)
        except _IDLE:
            return []
        except _CLOSED:
            return None

    async def _handle(self, msgs: list[Msg]) -> bool:
        """Handle the batch, retrying in place; False when stopped before it succeeded."""
        delay = 0.1
        while True:
            try:
                await self.handle([(m.subject, m.data) for m in msgs])
                return True
            except Exception:
                self.retries += 1
                log.exception("event batch of %d failed; retrying in %.1f s", len(msgs), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self._stop.is_set():
                return False
            delay = min(delay * 2, 5.0)

    async def _ack(self, msgs: list[Msg]) -> None:
        if self.ack_all:
            await msgs[-1].ack()
            return
        for m in msgs:
            await m.ack()

    def _backlog(self, behind: bool) -> None:
        if self.on_backlog is not None:
            self.on_backlog(behind)
