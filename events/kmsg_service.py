"""The kernel-log service: ``gpu.kmsg.<cluster>.<node>`` lines in, typed ``XidEvent``s out.

Lines are read from the ``GPU_KMSG`` stream by a durable batch pull consumer (``events.consumer``:
one acknowledgement per batch, riding out NATS faults), parsed with one stateful ``KmsgParser`` per node (multi-line records
span lines), and published into ``GPU_EVENTS`` with ``Nats-Msg-Id`` = ``event_id`` so a line that
arrives twice becomes one event. A batch is acknowledged only after JetStream has acknowledged every
event it produced; on failure the batch is redelivered and the dedupe absorbs the repeats.
Anything that cannot become a valid event goes to ``gpu.dlq.kmsg`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from events import subjects
from events.backoff import retry_transient
from events.consumer import DeadLetterHook, PullConsumer
from events.kmsg_parser import KmsgParser, KmsgRecord
from events.liveness import Liveness
from events.models import DeadLetter, XidEvent, stable_id, utcnow
from events.publish import publish_dead_letter, publish_events

log = logging.getLogger(__name__)

SOURCE = "kmsg"
HEADER_NODE = "Aiops-Node"
HEADER_CLUSTER = "Aiops-Cluster"
MAX_LINE_BYTES = 16 * 1024
PUBLISH_ATTEMPTS = 30
"""Tries to publish a batch's events through a NATS fault (backing off up to 2 s) before the batch
is given back for redelivery."""

GpuIndexResolver = Callable[[str, str], int | None]
"""(node, pci_bus_id) -> GPU index on the node, when known."""


@dataclass
class KmsgResult:
    events: list[XidEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class KmsgProcessor:
    """Lines to events, without I/O: one parser per (cluster, node) keeps multi-line state."""

    def __init__(self, gpu_index: GpuIndexResolver | None = None) -> None:
        self._parsers: dict[tuple[str, str], KmsgParser] = {}
        self._gpu_index = gpu_index

    def feed(self, subject: str, cluster: str, node: str, data: bytes, received: datetime) -> KmsgResult:
        out = KmsgResult()
        if len(data) > MAX_LINE_BYTES:
            out.dead_letters.append(self._dead(subject, data, f"line longer than {MAX_LINE_BYTES} bytes"))
            return out
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.dead_letters.append(self._dead(subject, data, f"not UTF-8: {exc}"))
            return out
        parser = self._parsers.get((cluster, node))
        if parser is None:
            parser = self._parsers[(cluster, node)] = KmsgParser()
        for record in parser.feed(line):
            self._convert(out, subject, cluster, node, record, received)
        return out

    def flush(self, received: datetime) -> KmsgResult:
        """Emit records held for continuation lines (SXid), e.g. when a node's stream goes idle."""
        out = KmsgResult()
        for (cluster, node), parser in self._parsers.items():
            for record in parser.flush():
                self._convert(out, subjects.kmsg(cluster, node), cluster, node, record, received)
        return out

    def _convert(
        self, out: KmsgResult, subject: str, cluster: str, node: str, rec: KmsgRecord, received: datetime
    ) -> None:
        gpu = None
        if rec.pci_bus_id and self._gpu_index is not None:
            gpu = self._gpu_index(node, rec.pci_bus_id)
        try:
            event = XidEvent(
                event_id=stable_id(cluster, node, rec.raw),
                time=rec.time or received,
                cluster=cluster,
                source=SOURCE,
                node=node,
                gpu=gpu,
                pci_bus_id=rec.pci_bus_id,
                xid=rec.xid,
                pid=rec.pid,
                process=rec.process,
                message=rec.message,
                raw=rec.raw,
                sxid=rec.sxid,
                caused_by_xid=rec.caused_by_xid,
                recovery_action=rec.recovery_action,
                link=rec.link,
                severity=rec.severity,
                nvswitch=rec.nvswitch,
                subcomponent=rec.subcomponent,
                fell_off_bus_without_xid=rec.fell_off_bus_without_xid,
            )
        except ValidationError as exc:
            out.dead_letters.append(self._dead(subject, rec.raw.encode(), f"invalid Xid event: {exc}"))
            return
        out.events.append(event)

    @staticmethod
    def _dead(subject: str, data: bytes, reason: str) -> DeadLetter:
        return DeadLetter(
            source=SOURCE, subject=subject, reason=reason, payload=data.decode("utf-8", "replace")
        )


def split_kmsg_subject(msg: Msg) -> tuple[str, str] | None:
    """(cluster, node) of a kmsg message: true names from headers, else the subject tokens."""
    parts = msg.subject.split(".")
    if len(parts) != 4 or parts[0] != "gpu" or parts[1] != "kmsg":
        return None
    headers = msg.headers or {}
    return headers.get(HEADER_CLUSTER, parts[2]), headers.get(HEADER_NODE, parts[3])


class KmsgService:
    """The kmsg consumer: ``start()`` pulls ``GPU_KMSG`` until ``stop()``.

    ``ensure_jetstream`` must have declared the streams first.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        gpu_index: GpuIndexResolver | None = None,
        durable: str = "kmsg-parser",
        batch_size: int = 256,
        batch_timeout_s: float = 0.05,
        liveness: Liveness | None = None,
        dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self.js = js
        self.batch_size = batch_size
        self.processor = KmsgProcessor(gpu_index)
        self.lines_seen = 0
        self.events_published = 0
        self.dead_lettered = 0
        self.consumer = PullConsumer(
            js,
            self.handle_batch,
            stream=subjects.STREAM_KMSG,
            subject=subjects.kmsg_all(),
            durable=durable,
            batch_size=batch_size,
            idle_wait_s=batch_timeout_s,
            liveness=liveness,
            dead_letter=dead_letter,
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def handle_batch(self, batch: list[Msg]) -> None:
        received = utcnow()
        result = KmsgResult()
        for raw in batch:
            where = split_kmsg_subject(raw)
            if where is None:
                result.dead_letters.append(
                    KmsgProcessor._dead(raw.subject, raw.data, "subject is not gpu.kmsg.<cluster>.<node>")
                )
                continue
            part = self.processor.feed(raw.subject, where[0], where[1], raw.data, _sent_time(raw) or received)
            result.events += part.events
            result.dead_letters += part.dead_letters
        if len(batch) < self.batch_size:
            # Caught up with the stream: release records held for continuation lines.
            tail = self.processor.flush(received)
            result.events += tail.events
            result.dead_letters += tail.dead_letters
        # Parsed once: a NATS fault retries only the publishing (deduplicated on event_id), never
        # feeds the parsers the same lines twice.
        self.events_published += await retry_transient(
            lambda: publish_events(self.js, result.events),
            attempts=PUBLISH_ATTEMPTS,
            on_error=self.consumer.probe.error,
        )
        for dead in result.dead_letters:
            await publish_dead_letter(self.js, dead)
        self.dead_lettered += len(result.dead_letters)
        self.lines_seen += len(batch)  # counted once the batch's events are in JetStream


def _sent_time(msg: Msg) -> datetime | None:
    try:
        return msg.metadata.timestamp
    except Exception:  # not a JetStream message
        return None
