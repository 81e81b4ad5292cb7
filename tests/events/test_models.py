import pytest
from pydantic import ValidationError

from events.models import XidEvent, event_key, parse_event, stable_id

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
