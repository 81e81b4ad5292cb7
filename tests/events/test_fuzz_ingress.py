"""Fuzzing the ingress code: the kernel-log path and the event and heartbeat contracts.

Hypothesis generates inputs shaped like the real ones (driver lines with hostile fields, JSON events
with wrong or missing values) and plain garbage; each example carries a batch of inputs, so every
run tries well over 10,000 of each. The properties: nothing but ``ValidationError`` ever escapes a
contract, the kernel-log path never raises and accounts for every line (an event, a dead letter or
nothing), and a validated time always carries its zone. How long the slowest input took is
reported (``record_property``), not asserted: evals/benchmarks/kmsg_worst_line.py measures it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events.heartbeat import decode_heartbeats
from events.kmsg_parser import MAX_LINE_CHARS, KmsgParser
from events.kmsg_service import KmsgProcessor
from events.models import parse_event

PER_EXAMPLE = 20
EXAMPLES = 500  # 500 x 20 = 10,000 generated inputs per property per run
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # never a timing assertion: the slowest input is reported instead
    derandomize=True,  # the same inputs every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HOSTILE = st.sampled_from(
    [" ", "\t", ",", "(", ")", "'", '"', "=", ":", ".", "\x00", "\u2028", "é", "{", "}"]
)
RUNS = st.builds(lambda c, n: c * n, HOSTILE, st.integers(0, 3000))
TEXT = st.text(max_size=40)
FIELD = st.one_of(TEXT, RUNS, st.integers(-(10**30), 10**30).map(str))
PCI = st.one_of(st.sampled_from(["0000:5d:00", "0000:18:00.0", "00000008:01:00", "5d:00", "zz:zz"]), TEXT)
PREFIX = st.sampled_from(
    [
        "",
        "[ 1234.567890] ",
        "[Fri Aug 30 11:43:09 2024] ",
        "2026-11-29T07:35:00.000000+00:00 node-003 kernel: ",
        "Aug 30 11:43:09 gpu-node-17 kernel: ",
        "<4>6,1234,5678,-;",
        "nvidia-nvswitch3: ",
    ]
)


def xid_line(prefix: str, pci: str, code: str, pid: str, name: str, rest: str) -> str:
    return f"{prefix}NVRM: Xid (PCI:{pci}): {code}, pid={pid}, name={name}, {rest}"


LINES = st.one_of(
    st.builds(xid_line, PREFIX, PCI, FIELD, FIELD, FIELD, FIELD),
    st.builds(lambda p, pci, r: f"{p}SXid (PCI:{pci}): 12028, {r}", PREFIX, PCI, FIELD),
    st.builds(lambda p, pci, r: f"{p}SXid (PCI:{pci}): 12028, Data {r}", PREFIX, PCI, FIELD),
    st.builds(lambda p, pci: f"{p}NVRM: GPU at PCI:{pci}: GPU has fallen off the bus.", PREFIX, PCI),
    st.builds(lambda p, pci: f"{p}NVRM: The NVIDIA GPU {pci}", PREFIX, PCI),
    st.builds(lambda p, r: f"{p}NVRM: {r}", PREFIX, FIELD),
    st.builds(lambda p, n: p + "NVRM: Xid " + "(" * n, PREFIX, st.integers(0, MAX_LINE_CHARS + 100)),
    TEXT,
)


pytestmark = pytest.mark.slow


class Slowest:
    """The slowest single input seen by a property (CPU time), for the report."""

    def __init__(self) -> None:
        self.inputs = 0
        self.worst_s = 0.0

    def time(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.thread_time()  # CPU time: a busy machine descheduling the test is not the parser
        try:
            return fn(*args)
        finally:
            self.worst_s = max(self.worst_s, time.thread_time() - start)


@pytest.fixture
def slowest(record_property: Callable[[str, object], None]) -> Any:
    seen = Slowest()
    yield seen
    record_property("inputs", seen.inputs)
    record_property("slowest_input_ms", round(seen.worst_s * 1000, 3))
    print(f"\n{seen.inputs} inputs, slowest {seen.worst_s * 1000:.2f} ms")


def test_the_kmsg_path_never_raises_and_accounts_for_every_line(slowest: Slowest) -> None:
    parser_alone = KmsgParser()
    processor = KmsgProcessor(gpu_index=lambda node, pci: {"0000:5d:00.0": 3}[pci])  # raises if unknown
    received = datetime(2026, 11, 29, 7, 35, tzinfo=UTC)

    @FUZZ
    @given(st.lists(st.one_of(LINES, st.binary(max_size=64)), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def check(lines: list[str | bytes]) -> None:
        for line in lines:
            slowest.inputs += 1
            data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
            for record in slowest.time(parser_alone.feed, line):
                assert len(record.raw) <= 3 * MAX_LINE_CHARS + 2  # up to three lines of a record
            out = slowest.time(processor.feed, "gpu.kmsg.a.n", "a", "n", data, received)
            for event in out.events:
                assert event.time.tzinfo is not None and event.node == "n"
            for dead in out.dead_letters:
                assert dead.reason and isinstance(dead.payload, bytes)

    check()
    assert slowest.inputs >= 10_000


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)
TIMES = st.one_of(
    st.sampled_from(["2026-11-29T07:35:00", "2026-11-29T07:35:00Z", "2026-11-29T07:35:00+02:00", "", "now"]),
    TEXT,
    st.integers(),
)
EVENT_FIELDS = {
    "event_id": st.one_of(TEXT, st.integers()),
    "kind": st.sampled_from(["xid", "ecc", "hang", "throughput", "frobnicate", ""]),
    "time": TIMES,
    "cluster": TEXT,
    "source": TEXT,
    "node": st.one_of(TEXT, st.none()),
    "gpu": st.one_of(st.integers(-2, 2**40), TEXT, st.none()),
    "xid": st.one_of(st.integers(-5, 2**40), TEXT),
    "job": TEXT,
    "stalled_for_s": st.one_of(st.floats(), TEXT),
    "baseline_step_s": st.floats(),
    "observed_step_s": st.floats(),
    "slowdown": st.floats(),
    "findings": st.lists(TEXT, max_size=3),
    "step": st.one_of(st.integers(-(2**40), 2**40), TEXT),
    "step_time_s": st.floats(),
    "rank": st.integers(-3, 2**20),
}
PAYLOADS = st.one_of(
    st.fixed_dictionaries({}, optional={**EVENT_FIELDS, "extra": JSONISH}).map(
        lambda d: json.dumps(d, default=str).encode()
    ),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
)


def test_the_event_and_heartbeat_contracts_raise_nothing_but_validation_errors(slowest: Slowest) -> None:
    @FUZZ
    @given(st.lists(PAYLOADS, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def check(payloads: list[bytes]) -> None:
        for payload in payloads:
            slowest.inputs += 1
            for decode in (parse_event, decode_heartbeats):
                try:
                    result = slowest.time(decode, payload)
                except ValidationError:
                    continue
                for item in result if isinstance(result, list) else [result]:
                    assert item.time.tzinfo is not None

    check()
    assert slowest.inputs >= 10_000
