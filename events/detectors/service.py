"""Runs the detectors against NATS: heartbeats in (core NATS), DCGM scrapes, events into GPU_EVENTS.

Heartbeats from ``gpu.heartbeat.<cluster>.>`` feed the hang, throughput and numerics detectors, which are
evaluated every ``evaluate_interval_s`` (and, with ``checkpoints``, the checkpoint write times the
beats report, written to KV in the same round: events/checkpoint_times.py); the DCGM source is
scraped every ``scrape_interval_s``.
Detector time is ``clock()`` (the fleet twin's simulated time in the embedded platform), so windows
and thresholds mean the same at any simulation speed. A heartbeat that does not validate goes to
``gpu.dlq.heartbeat`` with the reason; a failed scrape is logged and retried at the next interval.

Found events are kept in an outbox until JetStream acknowledged them: a publish that fails (a NATS
server down, a leader election) is retried every round (deduplicated on ``event_id``, so a retry
never doubles an event), never dropped — unless the outbox passes ``max_outbox`` events, and then the
oldest are dropped and counted. Evaluation, scraping and publishing fail independently: one failing
never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from pydantic import ValidationError

from events import subjects
from events.backoff import Backoff, is_transient
from events.checkpoint_times import CheckpointTimeRecorder
from events.dead_letter import DeadLetter, describe, describe_invalid, publish_dead_letter
from events.detectors.dcgm import DcgmDetector, group_samples
from events.detectors.exposition import MetricSource, ReadingSource
from events.detectors.hang import HangDetector
from events.detectors.numerics import NumericsDetector
from events.detectors.throughput import ThroughputDetector
from events.heartbeat import decode_heartbeats
from events.liveness import Liveness
from events.models import AnyEvent, Heartbeat, utcnow
from events.publish import publish_events

log = logging.getLogger(__name__)


class DetectorService:
    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        *,
        cluster: str,
        hang: HangDetector | None = None,
        throughput: ThroughputDetector | None = None,
        numerics: NumericsDetector | None = None,
        dcgm: DcgmDetector | None = None,
        dcgm_source: MetricSource | ReadingSource | None = None,
        clock: Callable[[], datetime] = utcnow,
        evaluate_interval_s: float = 0.25,
        scrape_interval_s: float = 1.0,
        max_outbox: int = 100_000,
        liveness: Liveness | None = None,
        checkpoints: CheckpointTimeRecorder | None = None,
    ) -> None:
        self.nc, self.js, self.cluster, self.clock = nc, js, cluster, clock
        self.hang = hang or HangDetector(cluster)
        self.throughput = throughput or ThroughputDetector(cluster)
        self.numerics = numerics or NumericsDetector(cluster)
        self.dcgm = dcgm or DcgmDetector(cluster)
        self.dcgm_source = dcgm_source
        self.checkpoints = checkpoints
        self.evaluate_interval_s = evaluate_interval_s
        self.scrape_interval_s = scrape_interval_s
        self.beats_seen = 0
        self.beats_rejected = 0
        self.events_published = 0
        self.scrape_errors = 0
        self.evaluate_errors = 0
        self.publish_errors = 0
        self.events_dropped = 0
        self.max_outbox = max_outbox
        self._outbox: deque[AnyEvent] = deque()
        self.probe = (liveness or Liveness()).probe("detectors", stale_after_s=30.0)
        self._sub: Subscription | None = None
        self._dead: list[DeadLetter] = []
        self._scraping = asyncio.Lock()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            f"gpu.heartbeat.{subjects.token(self.cluster)}.>", cb=self._on_beat
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_beat(self, msg: Msg) -> None:
        try:
            beats = decode_heartbeats(msg.data)
        except ValidationError as exc:
            self.beats_rejected += 1
            self._dead.append(DeadLetter.of("heartbeat", msg, f"invalid heartbeat: {describe_invalid(exc)}"))
            return
        self.beats_seen += len(beats)
        try:
            for beat in beats:
                self.observe(beat)
        except Exception as exc:  # a beat the detectors cannot take must not reach evaluate()
            self.beats_rejected += 1
            log.exception("heartbeat on %s refused by a detector; dead-lettered", msg.subject)
            self._dead.append(DeadLetter.of("heartbeat", msg, f"refused by a detector: {describe(exc)}"))

    def observe(self, beat: Heartbeat) -> None:
        """Feed one heartbeat to the hang, throughput and numerics detectors."""
        self.hang.observe(beat)
        self.throughput.observe(beat)
        self.numerics.observe(beat)
        if self.checkpoints is not None:
            self.checkpoints.observe(beat)

    async def evaluate(self) -> int:
        """Run the heartbeat detectors once and publish what they found; returns the events sent."""
        now = self.clock()
        events: list[AnyEvent] = [
            *self.hang.evaluate(now),
            *self.throughput.evaluate(now),
            *self.numerics.evaluate(now),
        ]
        sent = await self._publish(events)
        if self.checkpoints is not None:
            await self.checkpoints.flush()  # checkpoint write times into KV (compare-and-set)
        return sent

    async def scrape(self) -> int:
        """Scrape DCGM once and publish what changed; returns the events sent."""
        if self.dcgm_source is None:
            return 0
        # A fleet's scrape is tens of thousands of samples: sources parse them, and they are
        # grouped per GPU, in worker threads; comparing the GPUs with their last scrape stays on
        # the loop (it skips the unchanged ones, so it is cheap). A source that can read per GPU
        # directly (the twin in process) skips samples altogether.
        source = self.dcgm_source
        async with self._scraping:
            try:
                if isinstance(source, ReadingSource):
                    readings = await source.read()
                else:
                    readings = await asyncio.to_thread(group_samples, await source.scrape())
            except (OSError, ValueError) as exc:
                # The exporter is down or answered garbage: retried at the next interval.
                self.scrape_errors += 1
                log.warning("DCGM scrape of %s failed: %s", source.where, exc)
                return await self._publish([])
            found = self.dcgm.observe_readings(readings, self.clock())
        return await self._publish(found)

    async def _publish(self, events: Sequence[AnyEvent]) -> int:
        """Queue ``events`` and publish the outbox; returns how many were found this time. A failed
        publish leaves the outbox for the next round and raises."""
        self._outbox.extend(events)
        overflow = len(self._outbox) - self.max_outbox
        if overflow > 0:
            for _ in range(overflow):
                self._outbox.popleft()
            self.events_dropped += overflow
            self.probe.dropped(overflow)
            log.error("detector outbox full: dropped the %d oldest unpublished events", overflow)
        dead, self._dead = self._dead, []
        for letter in dead:
            await publish_dead_letter(self.js, letter)
        await self.flush()
        self.events_published += len(events)
        return len(events)

    async def flush(self) -> int:
        """Publish every event waiting in the outbox; returns how many were sent."""
        if not self._outbox:
            return 0
        pending = list(self._outbox)
        try:
            await publish_events(self.js, pending)
        except Exception as exc:
            self.publish_errors += 1
            self.probe.error(exc)
            raise
        for _ in pending:
            self._outbox.popleft()
        return len(pending)

    @property
    def unpublished(self) -> int:
        return len(self._outbox)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and scrape on their intervals until ``stop`` is set; a failed round is logged,
        counted and followed by a backoff, never the end of the loop."""
        loop = asyncio.get_running_loop()
        next_scrape = loop.time()
        backoff = Backoff(self.evaluate_interval_s, max(5.0, self.evaluate_interval_s))
        failing = False
        self.probe.started()
        try:
            while not stop.is_set():
                ok = await self._round("evaluate", self.evaluate)
                if self.dcgm_source is not None and loop.time() >= next_scrape:
                    next_scrape = loop.time() + self.scrape_interval_s
                    ok = await self._round("scrape", self.scrape) and ok
                if ok:
                    self.probe.ok()
                    if failing:
                        log.info("detector rounds succeed again")
                    failing = False
                    backoff.reset()
                    wait = self.evaluate_interval_s
                else:
                    failing = True
                    wait = backoff.delay()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            self.probe.stopped()

    async def _round(self, what: str, step: Callable[[], Awaitable[int]]) -> bool:
        # Evaluating and scraping fail independently: one failing never stops the other.
        try:
            await step()
            return True
        except Exception as exc:
            if what == "evaluate":
                self.evaluate_errors += 1
            else:
                self.scrape_errors += 1
            self.probe.error(exc)
            log.warning(
                "detector %s failed (%r); %d events held for the next round",
                what, exc, self.unpublished, exc_info=not is_transient(exc),
            )  # fmt: skip
            return False
