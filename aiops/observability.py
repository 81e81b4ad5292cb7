"""What a running platform tells its operators without an MCP client: ``/metrics`` and log lines.

- ``PlatformWatch`` follows incident changes (``gpu.incidents.>``) and the audit trail
  (``gpu.audit.>``): one log line per incident status transition and per action (a call of a tool
  that could change something, with the gate's decision), and the counters behind them.
- ``StateSampler`` reads, every few seconds, what lives in NATS: consumer lag and last delivery of
  the durable consumers, the breaker, the approvals waiting.
- ``SERVICES`` (a collector): events in / out / dead-lettered per source, read live from the
  services of this process.

The metric objects themselves are defined in ``events/metrics.py``; ``aiops.build.serve_http``
serves the default registry at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from prometheus_client.core import REGISTRY, CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from events import subjects
from events.incident import Incident
from events.metrics import (
    ACTIONS,
    APPROVALS_WAITING,
    BREAKER_OPEN,
    CONSUMER_ACK_PENDING,
    CONSUMER_LAST_FETCH_AGE,
    CONSUMER_PENDING,
    INCIDENT_TRANSITIONS,
    INCIDENTS,
    POLICY_DENIALS,
)
from events.models import AuditRecord
from mcp_server.gate.approvals import KvApprovals
from mcp_server.gate.breaker import KvBreaker

log = logging.getLogger("aiops.activity")

Counts = Callable[[], tuple[int, int, int]]
"""(in, out, dead-lettered) of one source, read at scrape time."""


class ServiceCounts(Collector):
    """``aiops_events_total{source, direction}`` summed over the services registered in this process."""

    def __init__(self) -> None:
        self._sources: dict[int, tuple[str, Counts]] = {}

    def add(self, source: str, counts: Counts) -> Callable[[], None]:
        """Count ``source`` until the returned function is called."""
        key = id(counts)
        self._sources[key] = (source, counts)
        return lambda: self._sources.pop(key, None) and None

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "aiops_events",
            "Messages through the platform's services, by source and direction (in, out, dead_lettered)",
            labels=["source", "direction"],
        )
        totals: dict[tuple[str, str], int] = Counter()
        for source, counts in list(self._sources.values()):
            got_in, got_out, dead = counts()
            totals[(source, "in")] += got_in
            totals[(source, "out")] += got_out
            totals[(source, "dead_lettered")] += dead
        for (source, direction), value in sorted(totals.items()):
            family.add_metric([source, direction], value)
        yield family


SERVICES = ServiceCounts()
REGISTRY.register(SERVICES)


class PlatformWatch:
    """Logs and counts incident transitions and actions from the platform's NATS subjects."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.status: dict[str, str] = {}
        self.transitions = 0
        self.actions = 0
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe("gpu.incidents.>", cb=self._on_incident))
        self._subs.append(await self.nc.subscribe("gpu.audit.>", cb=self._on_audit))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def _on_incident(self, msg: Msg) -> None:
        try:
            incident = Incident.model_validate_json(msg.data)
        except ValidationError:
            return
        before = self.status.get(incident.id)
        if before == incident.status:
            return
        self.status[incident.id] = incident.status
        if before is not None:
            INCIDENTS.labels(before).dec()
        INCIDENTS.labels(incident.status).inc()
        INCIDENT_TRANSITIONS.labels(incident.status).inc()
        self.transitions += 1
        log.info(
            "incident %s %s -> %s: %s",
            incident.id,
            before or "new",
            incident.status,
            incident.title,
            extra={
                "event": "incident",
                "incident": incident.id,
                "from_status": before,
                "to_status": incident.status,
                "kind": incident.kind,
                "severity": incident.severity,
                "entity": incident.entity,
                "cluster": incident.cluster,
            },
        )

    async def _on_audit(self, msg: Msg) -> None:
        try:
            record = AuditRecord.model_validate_json(msg.data)
        except ValidationError:
            return
        ACTIONS.labels(record.tool, record.decision).inc()
        if record.decision == "deny":
            for rule in record.policies or ["unknown"]:
                POLICY_DENIALS.labels(rule).inc()
        self.actions += 1
        target = record.arguments.get("node") or record.arguments.get("job") or ""
        log.info(
            "action %s%s by %s: %s%s%s",
            record.tool,
            f" {target}" if target else "",
            record.principal,
            record.decision,
            " (dry run)" if record.dry_run else "",
            "" if record.ok or record.decision != "allow" else " — failed",
            extra={
                "event": "action",
                "tool": record.tool,
                "target": target,
                "principal": record.principal,
                "decision": record.decision,
                "policies": record.policies,
                "dry_run": record.dry_run,
                "ok": record.ok,
                "cluster": record.cluster,
            },
        )


@dataclass(frozen=True)
class Consumer:
    stream: str
    durable: str


CONSUMERS = (Consumer(subjects.STREAM_KMSG, "kmsg-parser"), Consumer(subjects.STREAM_EVENTS, "triage"))


class StateSampler:
    """Refreshes the gauges whose truth lives in NATS, every ``interval_s``."""

    def __init__(
        self,
        js: JetStreamContext,
        cluster: str,
        *,
        consumers: Iterable[Consumer] = CONSUMERS,
        interval_s: float = 5.0,
        breaker_generation: str = "",
    ) -> None:
        self.js = js
        self.cluster = cluster
        self.breaker_generation = breaker_generation
        self.consumers = tuple(consumers)
        self.interval_s = interval_s
        self._breaker: KvBreaker | None = None
        self._approvals: KvApprovals | None = None

    async def sample(self) -> None:
        now = datetime.now(UTC)
        for c in self.consumers:
            try:
                info = await self.js.consumer_info(c.stream, c.durable)
            except Exception as exc:  # not created yet (no agent in this process), or NATS away
                log.debug("no consumer info for %s/%s this round: %r", c.stream, c.durable, exc)
                continue
            CONSUMER_PENDING.labels(c.stream, c.durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(c.stream, c.durable).set(info.num_ack_pending or 0)
            last = info.delivered.last_active if info.delivered else None
            if last is not None:
                CONSUMER_LAST_FETCH_AGE.labels(c.stream, c.durable).set((now - last).total_seconds())
        if self._breaker is None or self._approvals is None:
            self._breaker, self._approvals = (
                await KvBreaker.open(self.js, self.breaker_generation),
                await KvApprovals.open(self.js),
            )
        BREAKER_OPEN.labels(self.cluster).set(1 if (await self._breaker.load(self.cluster)).open else 0)
        waiting = [a for a in await self._approvals.list(["pending"]) if a.current_status(now) == "pending"]
        APPROVALS_WAITING.set(len(waiting))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except Exception:
                log.debug("sampling platform state failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


async def start_observability(
    nc: NatsClient,
    js: JetStreamContext,
    cluster: str,
    *,
    stack: AsyncExitStack,
    spawn: Callable[[Coroutine[Any, Any, object]], None],
    stop: asyncio.Event,
    sources: dict[str, Counts] | None = None,
    sample: bool = True,
    breaker_generation: str = "",
) -> PlatformWatch:
    """Log lines and metrics for this process; ``stack`` undoes it, ``stop`` ends the sampler.
    ``sample``: refresh the gauges kept in NATS (the control plane does; agent processes leave it
    to the control plane, whose ``/metrics`` exports them)."""
    watch = PlatformWatch(nc)
    await watch.start()
    stack.push_async_callback(watch.stop)
    for source, counts in (sources or {}).items():
        stack.callback(SERVICES.add(source, counts))
    if sample:
        spawn(StateSampler(js, cluster, breaker_generation=breaker_generation).run(stop))
    return watch
