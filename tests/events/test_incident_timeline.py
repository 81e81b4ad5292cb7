"""An incident's timeline never runs backwards and its ``updated_at`` is the latest time on it, on
the clock of the times it is given (no wall-clock default sneaks in beside the twin's time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.incident import Incident

TWIN_T0 = datetime(2026, 11, 29, 7, 18, 33, tzinfo=UTC)  # days before the wall clock of any run


def test_an_incident_made_at_an_event_time_was_last_updated_then_not_at_the_wall_clock() -> None:
    incident = Incident(id="inc-1", cluster="sim-a", kind="xid", opened_at=TWIN_T0)

    assert incident.updated_at == incident.opened_at == TWIN_T0


def test_a_late_event_goes_where_it_happened_and_updated_at_never_moves_back() -> None:
    incident = Incident(id="inc-1", cluster="sim-a", kind="xid", opened_at=TWIN_T0)
    incident.note("event", "first", at=TWIN_T0)
    incident.note("plan", "isolate", at=TWIN_T0 + timedelta(seconds=60))
    incident.note("event joined", "a line shipped late", at=TWIN_T0 + timedelta(seconds=30))

    assert [e.what for e in incident.timeline] == ["event", "event joined", "plan"]
    assert incident.updated_at == TWIN_T0 + timedelta(seconds=60)


def test_entries_at_the_same_time_keep_the_order_they_were_written_in() -> None:
    incident = Incident(id="inc-1", cluster="sim-a", kind="xid", opened_at=TWIN_T0)
    for what in ("plan", "policy: allow", "isolate_gpu done", "escalated"):
        incident.note(what, at=TWIN_T0)

    assert [e.what for e in incident.timeline] == ["plan", "policy: allow", "isolate_gpu done", "escalated"]
