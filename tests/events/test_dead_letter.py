"""Dead letters against a real nats-server: exact bytes, bounded reason, always within max payload;
and the retry budget that tells transient failures from poison."""

from __future__ import annotations

import hashlib

import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError
from pydantic import BaseModel, ValidationError

from events.dead_letter import (
    MAX_REASON_BYTES,
    DeadLetter,
    Received,
    bounded_reason,
    describe_invalid,
    disposition,
    publish_dead_letter,
    read_dead_letter,
)


async def dead_letters(js: JetStreamContext, expected: int) -> list[Received]:
    sub = await js.pull_subscribe("gpu.dlq.>", durable=None)
    got = [read_dead_letter(m) for m in await sub.fetch(expected, timeout=5)]
    await sub.unsubscribe()
    return got


async def test_non_utf8_bytes_and_original_headers_are_kept_exactly(js):
    payload = b"\xff\xfe\x00NVRM: Xid \x80\x81 garbage\r\n"
    await publish_dead_letter(
        js,
        DeadLetter("kmsg", "gpu.kmsg.sim-a.node-1", "not UTF-8", payload, {"Aiops-Node": "node.1"}),
    )
    [got] = await dead_letters(js, 1)
    assert got.payload == payload and not got.truncated
    assert got.source == "kmsg" and got.subject == "gpu.kmsg.sim-a.node-1" and got.reason == "not UTF-8"
    assert got.original_headers == {"Aiops-Node": "node.1"}
    assert got.original_size == len(payload) and got.sha256 == hashlib.sha256(payload).hexdigest()


async def test_a_payload_over_the_servers_max_payload_is_still_dead_lettered_cut_to_fit(js, nc):
    payload = bytes(range(256)) * (2 * nc.max_payload // 256)  # twice what the server accepts
    reason = "invalid event: " + "x" * 100_000 + "\n\x00 and a newline"
    await publish_dead_letter(js, DeadLetter("events", "gpu.events.xid.a.b", reason, payload))
    [got] = await dead_letters(js, 1)
    assert got.truncated and got.original_size == len(payload)
    assert got.sha256 == hashlib.sha256(payload).hexdigest()
    assert payload.startswith(got.payload) and 0 < len(got.payload) < nc.max_payload
    assert len(got.reason) <= MAX_REASON_BYTES and got.reason.startswith("invalid event: xxx")


async def test_a_redelivered_message_is_dead_lettered_once(js):
    for _ in range(2):
        await publish_dead_letter(js, DeadLetter("kmsg", "gpu.kmsg.a.b", "bad", b"x", stream_seq=42))
    info = await js.stream_info("GPU_DLQ")
    assert info.state.messages == 1


def test_a_reason_is_one_header_safe_line_of_at_most_2_kb():
    text = bounded_reason("a\r\nb\u00e9\x00" + "z" * 10_000)
    assert text.startswith("a\\r\\nb\\xe9\\x00zz") and len(text) == MAX_REASON_BYTES and text.isascii()


def test_a_validation_reason_names_the_fields_never_the_input():
    class Beat(BaseModel):
        rank: int

    secret = "s3cr3t" * 1000
    with pytest.raises(ValidationError) as caught:
        Beat.model_validate({"rank": secret})
    reason = describe_invalid(caught.value)
    assert "rank" in reason and "s3cr3t" not in reason


@pytest.mark.parametrize(
    "exc",
    [
        ServiceUnavailableError(),
        nats.errors.NoServersError(),
        nats.errors.ConnectionClosedError(),
        nats.errors.TimeoutError(),
        APIError(code=503, description="JetStream system temporarily unavailable"),
        ConnectionResetError(),
    ],
)
def test_nats_being_unavailable_is_retried_however_often_it_was_delivered(exc):
    assert disposition(exc, delivered=100, max_deliver=5) == "retry"
    assert disposition(exc) == "retry"


@pytest.mark.parametrize("exc", [TypeError("naive vs aware"), KeyError("node-999"), ValueError("x")])
def test_anything_else_is_poison_after_the_delivery_budget(exc):
    assert disposition(exc, delivered=1, max_deliver=3) == "retry"
    assert disposition(exc, delivered=3, max_deliver=3) == "dead_letter"
    assert disposition(exc) == "dead_letter"  # a deterministic step: no delivery count to wait for
