"""Dead letters: what a consumer could not handle, kept exactly and bounded, on ``gpu.dlq.<source>``.

A dead letter is the original message, not a description of it:

- the **body is the original payload, byte for byte** (non-UTF-8 included: nothing is decoded);
- **headers** say why and where from: ``Aiops-Dlq-Reason`` (the first 2 KB of the reason, control
  and non-ASCII characters escaped), ``Aiops-Dlq-Source`` (kmsg, events, heartbeat...),
  ``Aiops-Dlq-Subject`` (the subject it arrived on), ``Aiops-Dlq-Time``, and every original header
  under ``Aiops-Orig-<name>``;
- a payload too large for the server's max payload (once the headers are counted) is cut to fit:
  ``Aiops-Dlq-Truncated: true``, ``Aiops-Dlq-Original-Size`` and ``Aiops-Dlq-Sha256`` (of the whole
  original) say so, so publishing a dead letter never fails on size;
- a message redelivered by JetStream is dead-lettered once: ``Nats-Msg-Id`` is derived from the
  source subject and stream sequence when known.

``disposition`` is the retry budget every consumer uses to decide between retrying a message
(transient: NATS or the network is down — back off, never ack-and-drop) and dead-lettering it
(poison: it fails the same way every time), from the exception and the JetStream delivery count.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from events import subjects
from events.models import stable_id, utcnow

MAX_REASON_BYTES = 2048
"""A reason is cut to its first 2 KB: it says why, it never carries the input."""
DEFAULT_MAX_DELIVER = 5
"""Deliveries of a message that keeps failing on something other than NATS before it is dead-lettered."""

HEADER_REASON = "Aiops-Dlq-Reason"
HEADER_SOURCE = "Aiops-Dlq-Source"
HEADER_SUBJECT = "Aiops-Dlq-Subject"
HEADER_TIME = "Aiops-Dlq-Time"
HEADER_TRUNCATED = "Aiops-Dlq-Truncated"
HEADER_ORIGINAL_SIZE = "Aiops-Dlq-Original-Size"
HEADER_SHA256 = "Aiops-Dlq-Sha256"
HEADER_STREAM_SEQ = "Aiops-Dlq-Stream-Seq"
ORIGINAL_HEADER_PREFIX = "Aiops-Orig-"
_HEADROOM = 512  # protocol line and header framing, beyond the headers' own bytes
_DEFAULT_MAX_PAYLOAD = 1024 * 1024


@dataclass
class DeadLetter:
    """One message that could not be handled: its exact bytes and why."""

    source: str
    subject: str
    reason: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    """The original message's headers."""
    stream_seq: int | None = None
    """The original's sequence in its stream (JetStream sources): a redelivery dead-letters once."""
    time: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, source: str, msg: Msg, reason: str) -> DeadLetter:
        """The dead letter of a received message (headers and stream sequence kept)."""
        seq: int | None
        try:
            seq = msg.metadata.sequence.stream
        except Exception:  # not a JetStream message
            seq = None
        return cls(source, msg.subject, reason, msg.data, dict(msg.headers or {}), seq)


@dataclass(frozen=True)
class Received:
    """A dead letter read back from ``GPU_DLQ`` (``read_dead_letter``)."""

    source: str
    subject: str
    reason: str
    payload: bytes
    truncated: bool
    original_size: int
    sha256: str
    original_headers: dict[str, str]


def bounded_reason(reason: str, limit: int = MAX_REASON_BYTES) -> str:
    """One header-safe line: control and non-ASCII characters escaped, at most ``limit`` bytes."""
    out: list[str] = []
    size = 0
    for ch in reason:
        piece = ch if " " <= ch <= "~" else ch.encode("unicode_escape").decode("ascii")
        if size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _header_value(value: str) -> str:
    return bounded_reason(value, MAX_REASON_BYTES)


def encode_dead_letter(dead: DeadLetter, max_payload: int) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a dead letter that fits in ``max_payload`` bytes on the wire."""
    digest = hashlib.sha256(dead.payload).hexdigest()
    headers = {
        HEADER_SOURCE: _header_value(dead.source),
        HEADER_SUBJECT: _header_value(dead.subject),
        HEADER_REASON: bounded_reason(dead.reason),
        HEADER_TIME: dead.time.isoformat(),
        HEADER_ORIGINAL_SIZE: str(len(dead.payload)),
        HEADER_SHA256: digest,
    }
    for name, value in list(dead.headers.items())[:32]:
        safe_name = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "-_"))[:64]
        if safe_name:
            headers[ORIGINAL_HEADER_PREFIX + safe_name] = _header_value(value)[:512]
    if dead.stream_seq is not None:
        headers[HEADER_STREAM_SEQ] = str(dead.stream_seq)
        headers["Nats-Msg-Id"] = stable_id("dlq", dead.source, dead.subject, dead.stream_seq, digest)
    header_bytes = sum(len(k) + len(v) + 4 for k, v in headers.items()) + _HEADROOM
    budget = max(0, max_payload - header_bytes - 64)
    body = dead.payload
    if len(body) > budget:
        body = body[:budget]
        headers[HEADER_TRUNCATED] = "true"
    return body, headers


def read_dead_letter(msg: Msg) -> Received:
    """A dead letter as received from ``GPU_DLQ``."""
    h = msg.headers or {}
    return Received(
        source=h.get(HEADER_SOURCE, ""),
        subject=h.get(HEADER_SUBJECT, ""),
        reason=h.get(HEADER_REASON, ""),
        payload=msg.data,
        truncated=h.get(HEADER_TRUNCATED) == "true",
        original_size=int(h.get(HEADER_ORIGINAL_SIZE, len(msg.data))),
        sha256=h.get(HEADER_SHA256, ""),
        original_headers={
            k.removeprefix(ORIGINAL_HEADER_PREFIX): v
            for k, v in h.items()
            if k.startswith(ORIGINAL_HEADER_PREFIX)
        },
    )


def _max_payload(js: JetStreamContext) -> int:
    nc = getattr(js, "_nc", None)
    size = getattr(nc, "max_payload", None)
    return size if isinstance(size, int) and size > 0 else _DEFAULT_MAX_PAYLOAD


async def publish_dead_letter(js: JetStreamContext, dead: DeadLetter) -> None:
    """Put a dead letter into ``GPU_DLQ``; it always fits (see the module docstring).

    NATS errors are raised: the caller's message stays unacknowledged and is retried."""
    body, headers = encode_dead_letter(dead, _max_payload(js))
    await js.publish(subjects.dlq(dead.source), body, headers=headers)


# --- the retry budget -------------------------------------------------------------------------------

Disposition = Literal["retry", "dead_letter"]

TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.FlushTimeoutError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    asyncio.TimeoutError,
    ConnectionError,
    TimeoutError,
)
"""Failures of the transport, not of the message: retrying later can succeed."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says NATS (or the network) is unavailable rather than the message is bad."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, nats.js.errors.APIError):
        return exc.code is not None and exc.code >= 500
    return False


def delivery_count(msg: Msg) -> int | None:
    """How many times JetStream has delivered ``msg`` (1 the first time); None for core NATS."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return None


def disposition(
    exc: BaseException, delivered: int | None = None, max_deliver: int = DEFAULT_MAX_DELIVER
) -> Disposition:
    """Retry or dead-letter a message whose handling raised ``exc``.

    Transient failures are always retried (with backoff by the caller; never acknowledged and
    dropped). Anything else is poison once the message has been delivered ``max_deliver`` times —
    or at once when ``delivered`` is None: a deterministic step (validation, parsing, correlation)
    that fails once fails every time, so retrying only holds up the messages behind it."""
    if is_transient(exc):
        return "retry"
    if delivered is None or delivered >= max_deliver:
        return "dead_letter"
    return "retry"


def describe(exc: BaseException) -> str:
    """A bounded, input-free description of an exception for a dead letter's reason."""
    text = str(exc)
    if len(text) > 512:
        text = text[:512] + f"… ({len(text)} characters)"
    return bounded_reason(f"{type(exc).__name__}: {text}")


def describe_invalid(exc: ValidationError) -> str:
    """A validation failure as field paths and messages, never the input values."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)[:20]
    ]
    return bounded_reason(f"{exc.error_count()} validation error(s): " + "; ".join(parts))
