"""The kernel-log service: ``gpu.kmsg.<cluster>.<node>`` lines in, typed ``XidEvent``s out.

Lines are read from the ``GPU_KMSG`` stream by a durable batch pull consumer (``events.consumer``:
one acknowledgement per batch, riding out NATS faults), parsed with one stateful ``KmsgParser`` per node (multi-line records
span lines), and published into ``GPU_EVENTS`` with ``Nats-Msg-Id`` = ``event_id`` so a line that
arrives twice becomes one event. A batch is acknowledged only after JetStream has acknowledged every
event it produced; on failure the batch is redelivered and the dedupe absorbs the repeats, and the
parsers' multi-line state is rolled back to where it was before the batch, so the redelivered lines
are read exactly once more.

Failures are isolated per line. Anything that cannot become a valid event (a line over 16 KB, not
UTF-8, a subject that is not ``gpu.kmsg.<cluster>.<node>``, a record the contract refuses, a line
whose handling raised) goes to ``gpu.dlq.kmsg`` with its exact bytes and a bounded reason
(``events.dead_letter``), and the next line proceeds. Only a transient failure (NATS unavailable)
fails the batch, which is then redelivered. A line whose node or PCI id no inventory knows is still
an event, with ``gpu`` unset (the contract allows it): the agent triages it by node and bus id.
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
from events.dead_letter import (
    DEFAULT_MAX_DELIVER,
    DeadLetter,
    delivery_count,
    describe,
    describe_invalid,
    disposition,
    publish_dead_letter,
)
from events.kmsg_parser import KmsgParser, KmsgRecord, ParserState
from events.liveness import Liveness
from events.models import XidEvent, stable_id, utcnow
from events.publish import publish_events

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
        self.unresolved = 0
        """Records whose GPU the resolver could not name (unknown node): sent with ``gpu`` unset."""
        self._unresolved_nodes: set[str] = set()  # warned about once each (a storm logs one line)

    def checkpoint(self) -> dict[tuple[str, str], ParserState]:
        """The parsers' multi-line state, to roll back to when a batch fails (``rollback``)."""
        return {key: parser.state() for key, parser in self._parsers.items() if parser.busy}

    def rollback(self, checkpoint: dict[tuple[str, str], ParserState]) -> None:
        for key, parser in self._parsers.items():
            parser.restore(checkpoint.get(key))

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
            try:
                gpu = self._gpu_index(node, rec.pci_bus_id)
            except Exception as exc:  # an unknown node: the fault is still news, with the GPU unknown
                self.unresolved += 1
                if node not in self._unresolved_nodes and len(self._unresolved_nodes) < 10_000:
                    self._unresolved_nodes.add(node)
                    log.warning(
                        "no GPU index on %s (%s): its faults are sent with the GPU unknown", node, exc
                    )
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
                **({"truncated_chars": rec.truncated_chars} if rec.truncated_chars else {}),
            )
        except ValidationError as exc:
            reason = f"invalid Xid event: {describe_invalid(exc)}"
            out.dead_letters.append(self._dead(subject, rec.raw.encode(), reason))
            return
        out.events.append(event)

    @staticmethod
    def _dead(subject: str, data: bytes, reason: str) -> DeadLetter:
        return DeadLetter(source=SOURCE, subject=subject, reason=reason, payload=data)


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
        max_deliver: int = DEFAULT_MAX_DELIVER,
        liveness: Liveness | None = None,
        dead_letter: DeadLetterHook | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``clock`` stamps a line that carries no time of its own: the backend's clock (the twin's
        on the embedded platform), the clock the rest of the incident's records carry."""
        self.js = js
        self.clock = clock
        self.batch_size = batch_size
        self.max_deliver = max_deliver
        self.processor = KmsgProcessor(gpu_index)
        self.lines_seen = 0
        self.events_published = 0
        self.dead_lettered = 0
        self.failed_batches = 0
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
        """One batch of lines; when it fails it is retried (or redelivered), so the parsers go back
        to where they were before it."""
        checkpoint = self.processor.checkpoint()
        try:
            await self._handle_batch(batch)
        except Exception:
            self.processor.rollback(checkpoint)
            self.failed_batches += 1
            log.exception("kmsg batch of %d failed; it will be retried", len(batch))
            raise

    async def _handle_batch(self, batch: list[Msg]) -> None:
        received = self.clock()
        result = KmsgResult()
        for raw in batch:
            try:
                part = self._feed(raw, received)
            except Exception as exc:
                if disposition(exc, delivery_count(raw), self.max_deliver) == "retry":
                    raise
                log.exception("kmsg line on %s could not be processed; dead-lettered", raw.subject)
                part = KmsgResult(
                    dead_letters=[
                        DeadLetter(SOURCE, raw.subject, f"not processed: {describe(exc)}", raw.data)
                    ]
                )
            for dead in part.dead_letters:
                if dead.payload is raw.data:  # the line itself: keep its headers and stream sequence
                    whole = DeadLetter.of(SOURCE, raw, dead.reason)
                    dead.headers, dead.stream_seq = whole.headers, whole.stream_seq
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
            await retry_transient(lambda d=dead: publish_dead_letter(self.js, d), attempts=PUBLISH_ATTEMPTS)  # type: ignore[misc]
        self.dead_lettered += len(result.dead_letters)
        self.lines_seen += len(batch)  # counted once the batch's events are in JetStream

    def _feed(self, raw: Msg, received: datetime) -> KmsgResult:
        where = split_kmsg_subject(raw)
        if where is None:
            return KmsgResult(
                dead_letters=[
                    KmsgProcessor._dead(raw.subject, raw.data, "subject is not gpu.kmsg.<cluster>.<node>")
                ]
            )
        return self.processor.feed(raw.subject, where[0], where[1], raw.data, _sent_time(raw) or received)


async def _no_decode(msg: object) -> None:
    return None


def _sent_time(msg: Msg) -> datetime | None:
    try:
        return msg.metadata.timestamp
    except Exception:  # not a JetStream message
        return None
