"""Runs the detectors against NATS: heartbeats in (core NATS), DCGM scrapes, events into GPU_EVENTS.

Heartbeats from ``gpu.heartbeat.<cluster>.>`` feed the hang and throughput detectors, which are
evaluated every ``evaluate_interval_s``; the DCGM source is scraped every ``scrape_interval_s``.
Detector time is ``clock()`` (the fleet twin's simulated time in the embedded platform), so windows
and thresholds mean the same at any simulation speed. A heartbeat that does not validate goes to
``gpu.dlq.heartbeat`` with the reason; a failed scrape is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from pydantic import ValidationError

from events import subjects
from events.dead_letter import DeadLetter, describe, describe_invalid, publish_dead_letter
from events.detectors.dcgm import DcgmDetector, group_samples
from events.detectors.exposition import MetricSource, ReadingSource
from events.detectors.hang import HangDetector
from events.detectors.throughput import ThroughputDetector
from events.heartbeat import decode_heartbeats
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
        dcgm: DcgmDetector | None = None,
        dcgm_source: MetricSource | ReadingSource | None = None,
        clock: Callable[[], datetime] = utcnow,
        evaluate_interval_s: float = 0.25,
        scrape_interval_s: float = 1.0,
    ) -> None:
        self.nc, self.js, self.cluster, self.clock = nc, js, cluster, clock
        self.hang = hang or HangDetector(cluster)
        self.throughput = throughput or ThroughputDetector(cluster)
        self.dcgm = dcgm or DcgmDetector(cluster)
        self.dcgm_source = dcgm_source
        self.evaluate_interval_s = evaluate_interval_s
        self.scrape_interval_s = scrape_interval_s
        self.beats_seen = 0
        self.beats_rejected = 0
        self.events_published = 0
        self.scrape_errors = 0
        self.evaluate_errors = 0
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
        """Feed one heartbeat to the hang and throughput detectors."""
        self.hang.observe(beat)
        self.throughput.observe(beat)

    async def evaluate(self) -> int:
        """Run the heartbeat detectors once and publish what they found; returns the events sent."""
        now = self.clock()
        events: list[AnyEvent] = [*self.hang.evaluate(now), *self.throughput.evaluate(now)]
        return await self._publish(events)

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
            if isinstance(source, ReadingSource):
                readings = await source.read()
            else:
                readings = await asyncio.to_thread(group_samples, await source.scrape())
            found = self.dcgm.observe_readings(readings, self.clock())
        return await self._publish(found)

    async def _publish(self, events: Sequence[AnyEvent]) -> int:
        dead, self._dead = self._dead, []
        for letter in dead:
            await publish_dead_letter(self.js, letter)
        if not events:
            return 0
        await publish_events(self.js, events)
        self.events_published += len(events)
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and scrape on their intervals until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        next_scrape = loop.time()
        while not stop.is_set():
            # Evaluating and scraping fail independently: one failing never stops the other.
            try:
                await self.evaluate()
            except Exception:
                self.evaluate_errors += 1
                log.exception("heartbeat detector round failed; retrying")
            if self.dcgm_source is not None and loop.time() >= next_scrape:
                next_scrape = loop.time() + self.scrape_interval_s
                try:
                    await self.scrape()
                except (OSError, ValueError) as exc:
                    self.scrape_errors += 1
                    log.warning("DCGM scrape of %s failed: %s", self.dcgm_source.where, exc)
                except Exception:
                    self.scrape_errors += 1
                    log.exception("DCGM scrape of %s failed", self.dcgm_source.where)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.evaluate_interval_s)
