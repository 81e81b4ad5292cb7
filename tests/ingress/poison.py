"""Poison messages for every ingress of the platform, and what each must become.

A case sends one bad input the way a real producer would (a JetStream publish on ``gpu.kmsg.*`` or
``gpu.events.*``, a core-NATS heartbeat, a DCGM exposition, a node agent's DCGM relay on
``gpu.dcgm.*``, an HTTP request to the Slack endpoint)
and says where it must end up: in ``GPU_DLQ`` with its bytes unchanged (``dlq``), through as an event
(``event``: a line from a node no inventory knows), ignored as an ordinary kernel line (``ignored``),
or refused at the door (``refused``: Slack answers 4xx; a scrape is not a message, its garbage is
counted as malformed). Whatever it is, a real Xid 79 sent after it must still be mitigated.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx2

from aiops.platform import Platform
from events import subjects
from events.dcgm_relay import DcgmReport, encode_report
from events.detectors.exposition import TextSource
from events.detectors.relay import RelaySource
from events.models import utcnow
from tests.chatops.loopback_slack import signed
from tests.waiting import eventually

Outcome = Literal["dlq", "event", "ignored", "refused"]
Send = Callable[[Platform, httpx2.AsyncClient], Awaitable[bytes]]

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
CLUSTER = "sim-a"
NAIVE = "2026-11-29T07:35:00"
XID_LINE = "NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."


@dataclass(frozen=True)
class Case:
    ingress: str
    name: str
    outcome: Outcome
    send: Send
    dlq_source: str = ""

    @property
    def id(self) -> str:
        return f"{self.ingress}:{self.name}"


def _event(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "poison-1",
        "kind": "xid",
        "time": "2026-11-29T07:35:00Z",
        "cluster": CLUSTER,
        "source": "poison",
        "node": "node-016",
        "xid": 79,
    }
    return json.dumps({**base, **fields}).encode()


def _beat(**fields: object) -> bytes:
    base: dict[str, object] = {
        "cluster": CLUSTER,
        "job": "train-01",
        "rank": 0,
        "node": "node-001",
        "step": 10,
        "step_time_s": 1.0,
        "time": "2026-11-29T07:35:00Z",
    }
    return json.dumps({**base, **fields}).encode()


def kmsg(node: str, data: bytes) -> Send:
    async def send(p: Platform, _: httpx2.AsyncClient) -> bytes:
        await p.js.publish(subjects.kmsg(CLUSTER, node), data)
        return data

    return send


def event(data: bytes) -> Send:
    async def send(p: Platform, _: httpx2.AsyncClient) -> bytes:
        await p.js.publish(f"gpu.events.xid.{CLUSTER}.node-016", data)
        return data

    return send


def heartbeat(make: Callable[[Platform], bytes]) -> Send:
    async def send(p: Platform, _: httpx2.AsyncClient) -> bytes:
        data = make(p)
        await p.nc.publish(subjects.heartbeat(CLUSTER, "train-01"), data)
        return data

    return send


def huge_beat(p: Platform) -> bytes:
    """As large as the server takes: its dead letter (with headers) must be cut to fit."""
    head = b'{"cluster": "sim-a", "job": "'
    return head + b"j" * (p.nc.max_payload - len(head) - 2) + b'"}'


def huge_number_beat() -> bytes:
    """A loss no float holds (past JSON's number range): the parser refuses it."""
    return _beat()[:-1] + b', "loss": ' + b"9" * 5000 + b"}"


GARBAGE_EXPOSITION = (
    "\x00\x01 not metrics\n"
    'DCGM_FI_DEV_XID_ERRORS{gpu="0",' + " " * 20_000 + "\n"
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu=" + '"' * 5_000 + "} NaNx\n"
    "}{}{}{ 1 2 3 4\n" + "#" * 10_000 + "\n"
)


async def garbage_scrape(p: Platform, _: httpx2.AsyncClient) -> bytes:
    service = p.detection.service
    source = TextSource(lambda: GARBAGE_EXPOSITION)
    real, service.dcgm_source = service.dcgm_source, source
    try:
        await eventually(lambda: source.malformed > 0, what="a scrape of the garbage exposition")
    finally:
        service.dcgm_source = real
    return GARBAGE_EXPOSITION.encode()


async def dcgm_relay(p: Platform, _: httpx2.AsyncClient) -> bytes:
    """A node agent's DCGM relay (``AIOPS_DCGM_SOURCE=nodes``) that publishes a report of another
    node under its own subject: the platform's detector reads the relays meanwhile; the report after
    the poison is read as usual."""
    service = p.detection.service
    relay = RelaySource(p.js, CLUSTER)
    await relay.start()
    real, service.dcgm_source = service.dcgm_source, relay
    subject = subjects.dcgm(CLUSTER, "node-002")
    poison = DcgmReport(cluster=CLUSTER, node="node-003", time=utcnow()).model_dump_json().encode()
    try:
        await p.js.publish(subject, poison)
        await p.js.publish(
            subject, encode_report(DcgmReport(cluster=CLUSTER, node="node-002", time=utcnow()))
        )
        await eventually(
            lambda: relay.dead_lettered == 1 and relay.reports == 1, what="the relay's next report"
        )
    finally:
        service.dcgm_source = real
        await relay.stop()
    return poison


def slack(kind: str) -> Send:
    async def send(p: Platform, http: httpx2.AsyncClient) -> bytes:
        base = p.http_url.removesuffix("/mcp")
        form = {"command": "/gpu", "text": f"isolate node-001 0 {kind}", "user_id": "U0EVIL"}
        body, headers = signed(SECRET, form)
        if kind == "oversized":
            body = b"text=" + b"x" * (1024 * 1024)
            answer = await http.post(f"{base}/slack/commands", content=body, headers=headers)
        elif kind == "forged":
            headers["X-Slack-Signature"] = "v0=" + "0" * 64
            answer = await http.post(f"{base}/slack/commands", content=body, headers=headers)
        elif kind == "replayed":
            await http.post(f"{base}/slack/commands", content=body, headers=headers)
            answer = await http.post(f"{base}/slack/commands", content=body, headers=headers)
        else:  # a verified interaction nobody can read: dead-lettered with its bytes
            body, headers = signed(SECRET, {"payload": '{"user": [1], "actions": "\\ud800"'})
            answer = await http.post(f"{base}/slack/interactivity", content=body, headers=headers)
        assert answer.status_code in (400, 401, 413), (kind, answer.status_code)
        return body

    return send


CASES = [
    Case("kmsg", "unknown node", "event", kmsg("node-999", XID_LINE.encode())),
    # 3,000 '[' first: FastStream used to JSON-decode every line (RecursionError, batch redelivered).
    Case(
        "kmsg",
        "unparsable",
        "ignored",
        kmsg("node-002", b"[" * 3000 + b"NVRM: Xid (PCI:zz:zz): 79, " + b"(" * 3000),
    ),
    Case("kmsg", "oversized", "dlq", kmsg("node-002", b"NVRM: Xid " + b" " * 20_000 + b"x"), "kmsg"),
    Case(
        "kmsg", "non-UTF-8", "dlq", kmsg("node-002", b"\xff\xfe NVRM: Xid (PCI:0000:5d:00): 79 \x80"), "kmsg"
    ),
    Case("events", "naive time", "dlq", event(_event(time=NAIVE)), "events"),
    Case("events", "oversized", "dlq", event(_event(event_id="", raw="x" * 600_000)), "events"),
    Case("events", "unknown kind", "dlq", event(_event(kind="frobnicate")), "events"),
    Case("events", "wrong types", "dlq", event(_event(xid="seventy-nine", gpu=[1])), "events"),
    Case("heartbeat", "naive time", "dlq", heartbeat(lambda _: _beat(time=NAIVE)), "heartbeat"),
    Case("heartbeat", "negative step", "dlq", heartbeat(lambda _: _beat(step=-1)), "heartbeat"),
    Case("heartbeat", "huge", "dlq", heartbeat(huge_beat), "heartbeat"),
    # The numerics (events/detectors/numerics.py): a NaN must be a measurement, not a word.
    Case("heartbeat", "loss as a string", "dlq", heartbeat(lambda _: _beat(loss="NaN")), "heartbeat"),
    Case("heartbeat", "loss as a boolean", "dlq", heartbeat(lambda _: _beat(loss=True)), "heartbeat"),
    Case("heartbeat", "grad norm as a list", "dlq", heartbeat(lambda _: _beat(grad_norm=[1.0])), "heartbeat"),
    Case("heartbeat", "loss of 5,000 digits", "dlq", heartbeat(lambda _: huge_number_beat()), "heartbeat"),
    Case(
        "heartbeat",
        "infinite step time",
        "dlq",
        heartbeat(lambda _: _beat(step_time_s=float("inf"))),
        "heartbeat",
    ),
    Case("dcgm", "garbage exposition", "refused", garbage_scrape),
    Case("dcgm", "relayed report of another node", "dlq", dcgm_relay, "dcgm"),
    Case("slack", "oversized body", "refused", slack("oversized")),
    Case("slack", "forged signature", "refused", slack("forged")),
    Case("slack", "replayed request", "refused", slack("replayed")),
    Case("slack", "unreadable interaction", "dlq", slack("unreadable"), "slack"),
]
