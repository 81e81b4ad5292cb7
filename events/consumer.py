"""The one JetStream pull consumer of the platform: batches in, acknowledgements out, through any
NATS fault.

Every durable consumer of a stream (the kmsg service on ``GPU_KMSG``, the triage agent on
``GPU_EVENTS``) is a ``PullConsumer``: a loop that fetches a batch, hands it to a handler, and
acknowledges it only once the handler returned. What it guarantees:

- **Batches.** ``fetch(batch_size)`` with the next batch fetched while this one is handled. With
  ``ack="batch"`` a new consumer is created with ``AckPolicy.ALL``: acknowledging the last message
  of a batch acknowledges the whole batch, one acknowledgement per batch instead of one per message.
  That is for a consumer one process pulls alone: JetStream's ack-all acknowledges every delivered
  message up to that sequence, also those another puller of the same durable holds (fetched, not yet
  handled, or its process dead) — they would never be redelivered. A consumer several processes
  share (agent replicas) uses ``ack="message"`` (``AckPolicy.EXPLICIT``); a durable of that name
  found with ack-all is made again with per-message acks from its acknowledgement floor, so every
  message it had not acknowledged is delivered again (a warning says so). A consumer created
  earlier with per-message acks is served acking each, whatever ``ack`` asks.
- **Nothing acknowledged past a failure.** When the handler fails with a transient error (NATS
  unreachable, a KV write during a leader election; ``events.backoff.is_transient``), the same
  batch is retried in place after a backoff. Stopped meanwhile, it stays unacknowledged and
  JetStream redelivers it after ``ack_wait``.
- **Poison isolated per message** (only with a ``dead_letter`` hook): when the handler fails with
  any other error, the batch is handled again one message at a time; a message that still fails
  with a non-transient error goes to the hook (which publishes it to ``GPU_DLQ``) and is
  acknowledged, and the next message proceeds. ``is_transient`` decides which errors are which;
  callers may pass their own (with the message, e.g. to use its delivery count).
- **Survives every NATS error.** A failed fetch (``ServiceUnavailableError`` when a stream's server
  is gone, ``NoRespondersError``, API errors, time-outs while reconnecting, a consumer deleted
  under it) is logged, counted, and followed by a bounded exponential backoff with jitter; after
  repeated failures (or at once when the consumer is gone) the pull subscription is made again,
  creating the durable consumer if it no longer exists. The loop ends only when asked to or when
  the connection is closed for good, and says so.
- **Liveness.** Each fetch that returns (messages, or a time-out while connected) is reported to
  the process's ``events.liveness`` registry, so a loop that no longer pulls is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from events.backoff import Backoff, is_transient
from events.liveness import Liveness

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
DeadLetterHook = Callable[[Msg, BaseException], Awaitable[None]]
"""Publish one message that cannot be handled (its bytes, subject, headers, a reason) to the DLQ."""
Classifier = Callable[[BaseException, Msg | None], bool]
"""True when an error is transient (retry, never dead-letter); the message when handled alone."""

_IDLE = (asyncio.TimeoutError, nats.errors.TimeoutError)
_CLOSED = (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)
_GONE = (nats.js.errors.NotFoundError, nats.errors.BadSubscriptionError)
RESUBSCRIBE_AFTER = 3
"""Consecutive failed fetches before the subscription is made again (at once when it is gone)."""


def default_classifier(exc: BaseException, msg: Msg | None) -> bool:
    return is_transient(exc)


class _Closed(Exception):
    """The connection is closed or draining: nothing more to fetch."""


class PullConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        handle: BatchHandler,
        *,
        stream: str,
        subject: str,
        durable: str,
        batch_size: int = 256,
        idle_wait_s: float = 0.5,
        ack_wait_s: float = 30.0,
        ack: Literal["batch", "message"] = "batch",
        max_deliver: int | None = None,
        dead_letter: DeadLetterHook | None = None,
        classify: Classifier = default_classifier,
        backoff: Backoff | None = None,
        liveness: Liveness | None = None,
        stale_after_s: float = 30.0,
        on_fetched: Callable[[int], None] | None = None,
    ) -> None:
        self.js = js
        self.handle = handle
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.ack_wait_s = ack_wait_s
        self.ack_policy = AckPolicy.ALL if ack == "batch" else AckPolicy.EXPLICIT
        self.max_deliver = max_deliver
        self.dead_letter = dead_letter
        self.classify = classify
        self.backoff = backoff or Backoff(0.1, 5.0)
        self.liveness = liveness or Liveness()
        self.liveness.consumer(stream, durable)
        self.probe = self.liveness.probe(f"consume {stream}/{durable}", stale_after_s=stale_after_s)
        self.on_fetched = on_fetched
        self.ack_all = ack == "batch"
        self.batches = 0
        self.retries = 0
        self.fetch_errors = 0
        self.resubscribes = 0
        self.dead_lettered = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the pull subscription (raises if it cannot: a start-up error) and start pulling."""
        await self._subscribe()
        self.probe.started()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.stream} ({self.durable})")
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        """Stop after the batch in hand (it is acknowledged if it was handled). Idempotent."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=self.idle_wait_s + 10)
            self._task = None
        await self._leave()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _ended(self, task: asyncio.Task[None]) -> None:
        crash = None if task.cancelled() else task.exception()
        if crash is not None:
            log.error("the %s consumer %s ended on an error", self.stream, self.durable, exc_info=crash)
        self.probe.stopped(crash)

    async def _subscribe(self) -> None:
        config = ConsumerConfig(
            ack_policy=self.ack_policy,
            ack_wait=self.ack_wait_s,
            max_ack_pending=max(1000, 4 * self.batch_size),
            max_deliver=self.max_deliver,
        )
        self._sub = await self.js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.stream, config=config
        )
        info = await self._sub.consumer_info()
        if info.config.ack_policy == AckPolicy.ALL and self.ack_policy == AckPolicy.EXPLICIT:
            await self._sub.unsubscribe()
            await self._recreate(config, info)
            self._sub = await self.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream)
            info = await self._sub.consumer_info()
        self.ack_all = info.config.ack_policy == AckPolicy.ALL

    async def _recreate(self, config: ConsumerConfig, found: ConsumerInfo) -> None:
        """Make the ack-all durable ``found`` again with per-message acks, from the first message
        it had not acknowledged (another replica may be doing the same: either result serves)."""
        floor = found.ack_floor.stream_seq if found.ack_floor is not None else 0
        log.warning(
            "%s consumer %s acknowledges all up to a sequence, which loses messages another puller "
            "holds; making it again with per-message acks from stream sequence %d",
            self.stream, self.durable, floor + 1,
        )  # fmt: skip
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(self.stream, self.durable)
        config.durable_name = config.name = self.durable
        config.filter_subject = self.subject
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, floor + 1
        with contextlib.suppress(nats.js.errors.BadRequestError):  # made by another replica meanwhile
            await self.js.add_consumer(self.stream, config=config)

    async def _leave(self) -> None:
        # Messages prefetched for us and never handled sit in the subscription's queue: leave it,
        # or draining the connection waits for them (JetStream redelivers them anyway).
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        # The next batch is fetched while this one is handled: the wait for the server overlaps
        # with the work. Its messages are acknowledged only after they are handled, in order.
        ahead = asyncio.ensure_future(self._fetch())
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    msgs = await ahead
                except _Closed:
                    if self._stop.is_set():
                        return
                    # Closed under us (reconnection is unlimited, so someone closed it): nothing
                    # more can be pulled; end as a crash, which /healthz reports.
                    raise RuntimeError(
                        f"the NATS connection of {self.stream}/{self.durable} closed"
                    ) from None
                except Exception as exc:
                    failures += 1
                    if not await self._recover(exc, failures):
                        return
                    ahead = asyncio.ensure_future(self._fetch())
                    continue
                if failures:
                    log.info(
                        "%s consumer %s is pulling again after %d failed fetches",
                        self.stream,
                        self.durable,
                        failures,
                    )
                    failures = 0
                    self.backoff.reset()
                ahead = asyncio.ensure_future(self._fetch())
                if self.on_fetched is not None:
                    self.on_fetched(len(msgs))
                if not msgs:
                    continue
                if not await self._handle(msgs):
                    return
                await self._ack(msgs)
                self.batches += 1
        finally:
            # A batch fetched but not handled stays unacknowledged: JetStream redelivers it.
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead

    async def _fetch(self) -> list[Msg]:
        """The next batch; [] when idle. Raises ``_Closed`` when the connection is closing."""
        if self._sub is None:
            await self._subscribe()
        assert self._sub is not None
        nc = self.js._nc  # nats-py keeps the connection private
        try:
            msgs = await self._sub.fetch(self.batch_size, timeout=self.idle_wait_s)
        except _IDLE:
            if nc.is_closed or nc.is_draining:
                raise _Closed() from None
            if nc.is_connected:
                self.probe.ok(0)  # the server answered "nothing new": the loop is healthy
            return []
        except _CLOSED:
            raise _Closed() from None
        self.probe.ok(len(msgs))
        return msgs

    async def _recover(self, exc: BaseException, failures: int) -> bool:
        """After a failed fetch: count, log, back off, and make the subscription again if it is
        gone or keeps failing. False when stopped meanwhile."""
        self.fetch_errors += 1
        self.probe.error(exc)
        level = logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
        log.log(level, "%s consumer %s: fetch failed (%r); backing off", self.stream, self.durable, exc)
        if await self.backoff.wait(self._stop):
            return False
        if isinstance(exc, _GONE) or failures % RESUBSCRIBE_AFTER == 0:
            self.resubscribes += 1
            self.probe.retried()
            await self._leave()  # the next fetch subscribes again (and creates a missing consumer)
        return True

    async def _handle(self, msgs: list[Msg]) -> bool:
        """Handle the batch, retrying in place; False when stopped before it succeeded."""
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self.handle(msgs)
                return True
            except Exception as exc:
                if self.dead_letter is not None and not self.classify(exc, None):
                    log.warning(
                        "%s batch of %d failed (%r); handling it one message at a time",
                        self.stream, len(msgs), exc,
                    )  # fmt: skip
                    return await self._one_by_one(msgs)
                self.retries += 1
                self.probe.error(exc)
                self.probe.retried()
                log.exception("%s batch of %d failed; retrying it", self.stream, len(msgs))
            if await backoff.wait(self._stop):
                return False

    async def _one_by_one(self, msgs: list[Msg]) -> bool:
        assert self.dead_letter is not None
        for msg in msgs:
            backoff = Backoff(0.1, 5.0)
            while True:
                try:
                    await self.handle([msg])
                    break
                except Exception as exc:
                    if not self.classify(exc, msg):
                        if not await self._dead(msg, exc):
                            return False
                        break
                    self.retries += 1
                    self.probe.error(exc)
                    log.warning("%s message on %s failed (%r); retrying it", self.stream, msg.subject, exc)
                if await backoff.wait(self._stop):
                    return False
            if not self.ack_all:
                await self._ack([msg])
        return True

    async def _dead(self, msg: Msg, exc: BaseException) -> bool:
        """Hand a poison message to the dead-letter hook, retrying while NATS is unavailable."""
        assert self.dead_letter is not None
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self.dead_letter(msg, exc)
                self.dead_lettered += 1
                return True
            except Exception as failed:
                if not is_transient(failed):
                    log.exception("could not dead-letter a message on %s; dropping it", msg.subject)
                    self.probe.dropped()
                    return True
                self.probe.error(failed)
            if await backoff.wait(self._stop):
                return False

    async def _ack(self, msgs: list[Msg]) -> None:
        """Acknowledge a handled batch: the last message under ack-all, else each. Not waited on
        (a round trip per batch costs throughput); a lost acknowledgement only means a redelivery
        after ``ack_wait``, which the handlers absorb (events are deduplicated on their id)."""
        for m in msgs[-1:] if self.ack_all else msgs:
            if m._ackd:  # acknowledged one by one already (a batch handled message by message)
                continue
            try:
                await m.ack()
            except _CLOSED:
                return
            except Exception as exc:
                self.probe.error(exc)
                log.warning("%s: an ack was lost (%r); the batch will be redelivered", self.stream, exc)
                return
