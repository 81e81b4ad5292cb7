"""DCGM from the node agents' relays (``gpu.dcgm.<cluster>.<node>``): a ``ReadingSource`` for a
control plane whose fleet has no Prometheus and whose exporters it cannot reach directly.

Each control-plane process follows ``GPU_DCGM`` with its own ordered consumer, starting from the
last report of every node (the baseline after a restart), so each replica's detector sees every node
in order; their events derive their ids from content and are deduplicated by JetStream. A round
(``read``) takes the latest report of each node that arrived since the previous round: reports
carry counters, so a report replaced before it was read loses no fault, only its moment.

A message that is not a report of the node its subject names is dead-lettered (``gpu.dlq.dcgm``)
with its bytes and the reason; the next one is read as usual.
"""

from __future__ import annotations

import contextlib
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from events import subjects
from events.dcgm_relay import DcgmReport, decode_report, readings
from events.dead_letter import DeadLetter, describe, describe_invalid, publish_dead_letter
from events.detectors.dcgm import GpuReading

log = logging.getLogger(__name__)

SOURCE = "dcgm"


class RelaySource:
    def __init__(self, js: JetStreamContext, cluster: str) -> None:
        self.js = js
        self.cluster = cluster
        self.reports = 0
        self.dead_lettered = 0
        self._latest: dict[str, DcgmReport] = {}
        self._sub: object | None = None

    @property
    def where(self) -> str:
        return f"node agents' relays ({subjects.dcgm_all(self.cluster)})"

    async def start(self) -> None:
        self._sub = await self.js.subscribe(
            subjects.dcgm_all(self.cluster),
            cb=self._on_report,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        )

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]

    async def _on_report(self, msg: Msg) -> None:
        try:
            report = decode_report(msg.subject, msg.data)
        except ValidationError as exc:
            await self._dead_letter(msg, f"invalid DCGM report: {describe_invalid(exc)}")
            return
        except ValueError as exc:
            await self._dead_letter(msg, f"refused DCGM report: {describe(exc)}")
            return
        self.reports += 1
        self._latest[report.node] = report

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        self.dead_lettered += 1
        log.warning("DCGM report on %s dead-lettered: %s", msg.subject, reason[:200])
        try:
            await publish_dead_letter(self.js, DeadLetter.of(SOURCE, msg, reason))
        except Exception:
            log.exception("could not dead-letter the DCGM report on %s", msg.subject)

    async def read(self) -> list[GpuReading]:
        latest, self._latest = self._latest, {}
        return [r for report in latest.values() for r in readings(report)]
