from datetime import datetime

import pytest
from pydantic import ValidationError

from events.models import Heartbeat, XidEvent, event_key, parse_event, stable_id

GOOD = {
    "event_id": "e1",
    "kind": "xid",
    "time": "2026-11-29T07:35:00Z",
    "cluster": "sim-a",
    "source": "kmsg",
    "node": "node-003",
    "xid": 79,
    "pci_bus_id": "0000:5d:00.0",
}


def test_a_valid_xid_payload_parses_into_an_xid_event():
    event = parse_event(GOOD)
    assert isinstance(event, XidEvent)
    assert event.xid == 79 and event_key(event) == "node-003"


def test_unknown_extra_fields_are_kept_not_rejected():
    event = parse_event({**GOOD, "rack": "rack-01"})
    assert event.model_dump()["rack"] == "rack-01"


@pytest.mark.parametrize("missing", ["event_id", "time", "cluster", "node", "xid"])
def test_a_missing_required_field_fails_validation(missing):
    payload = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValidationError, match=missing):
        parse_event(payload)


@pytest.mark.parametrize(
    "field,value", [("xid", "seventy-nine"), ("time", "yesterday"), ("gpu", -1), ("kind", "smoke")]
)
def test_a_malformed_field_fails_validation(field, value):
    with pytest.raises(ValidationError):
        parse_event({**GOOD, field: value})


def test_json_bytes_parse_like_dicts():
    assert parse_event(XidEvent.model_validate(GOOD).model_dump_json().encode()).event_id == "e1"


def test_stable_ids_depend_only_on_content():
    assert stable_id("a", "b") == stable_id("a", "b") != stable_id("a", "c")


NAIVE = "2026-11-29T07:35:00"


@pytest.mark.parametrize(
    "kind_fields",
    [
        {"kind": "xid", "node": "node-003", "xid": 79},
        {"kind": "ecc", "node": "node-003", "gpu": 1},
        {"kind": "hang", "job": "train-01", "stalled_for_s": 60},
        {"kind": "throughput", "job": "train-01", "baseline_step_s": 1, "observed_step_s": 2, "slowdown": 2},
    ],
)
def test_every_event_kind_refuses_a_time_without_a_timezone(kind_fields):
    base = {"event_id": "e1", "cluster": "sim-a", "source": "test", **kind_fields}
    with pytest.raises(ValidationError, match="timezone"):
        parse_event({**base, "time": NAIVE})
    assert parse_event({**base, "time": NAIVE + "+02:00"}).time.utcoffset() is not None


def test_a_heartbeat_refuses_a_time_without_a_timezone():
    beat = {"cluster": "sim-a", "job": "j", "rank": 0, "node": "n", "step": 1, "step_time_s": 1.0}
    with pytest.raises(ValidationError, match="timezone"):
        Heartbeat.model_validate({**beat, "time": NAIVE})
    with pytest.raises(ValidationError, match="timezone"):
        Heartbeat(**beat, time=datetime(2026, 11, 29, 7, 35))  # type: ignore[arg-type]
    assert Heartbeat.model_validate({**beat, "time": NAIVE + "Z"}).time.tzinfo is not None
