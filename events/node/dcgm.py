"""The node agent's DCGM relay (``aiops node --dcgm-exporter URL``), for fleets without Prometheus.

Every ``interval_s`` it scrapes the node's dcgm-exporter (``ExporterSource``: only the fields the
DCGM detector reads are parsed) and publishes a ``DcgmReport`` (events/dcgm_relay.py) to
``gpu.dcgm.<cluster>.<node>`` when a GPU's fields changed since the last report JetStream took, and
at least every ``resync_s`` otherwise (so a control plane that starts later, or forgets quiet GPUs,
has them). Nothing is buffered: the fields are counters and states, so the next scrape carries every
fault a missed one would have. An exporter that cannot be read and a report NATS did not take are
counted and logged (once per change between working and failing), never fatal; the counts travel
with the node's inventory entry (``AgentCounts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from events import subjects
from events.dcgm_relay import DcgmReport, encode_report, report_from_samples
from events.detectors.dcgm import METRIC_NAMES
from events.detectors.exposition import ExporterSource
from events.models import utcnow

log = logging.getLogger(__name__)


@dataclass
class RelayCounts:
    scrapes: int = 0
    scrape_failures: int = 0
    published: int = 0
    publish_failures: int = 0


class DcgmRelay:
    def __init__(
        self,
        url: str,
        *,
        cluster: str,
        node: str,
        interval_s: float = 10.0,
        resync_s: float = 300.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.node = node
        self.interval_s = interval_s
        self.resync_s = resync_s
        self.subject = subjects.dcgm(cluster, node)
        self.exporter = ExporterSource(url, timeout_s=timeout_s, names=METRIC_NAMES)
        self.counts = RelayCounts()
        self._last: DcgmReport | None = None
        self._last_at = 0.0
        self._failing: str | None = None

    async def run(self, js: Callable[[], JetStreamContext | None], stop: asyncio.Event) -> None:
        """Relay until ``stop``; ``js`` is the agent's JetStream while it is connected (else None)."""
        while not stop.is_set():
            await self.once(js())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    async def once(self, js: JetStreamContext | None) -> bool:
        """One scrape, and its report published if due; True when a report went out."""
        loop = asyncio.get_running_loop()
        self.counts.scrapes += 1
        try:
            samples = await self.exporter.scrape()
        except OSError as exc:
            self.counts.scrape_failures += 1
            self._trouble(f"cannot read the dcgm-exporter at {self.url}: {exc}")
            return False
        report = report_from_samples(self.cluster, self.node, samples, exporter=self.url, time=utcnow())
        due = loop.time() - self._last_at >= self.resync_s
        if not (report.changed_from(self._last) or due):
            self._fine()
            return False
        if js is None:
            self.counts.publish_failures += 1
            self._trouble("NATS is not connected: the DCGM report waits for the next scrape")
            return False
        try:
            await js.publish(self.subject, encode_report(report))
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            self.counts.publish_failures += 1
            self._trouble(f"publishing the DCGM report failed ({exc!r}); the next scrape carries it")
            return False
        self._last, self._last_at = report, loop.time()
        self.counts.published += 1
        self._fine()
        return True

    def _trouble(self, what: str) -> None:
        if self._failing != what:
            log.warning("DCGM relay: %s", what)
        self._failing = what

    def _fine(self) -> None:
        if self._failing is not None:
            log.info("DCGM relay works again (%s)", self.url)
        self._failing = None
