"""Every record of an incident carries one clock, the backend's: on the embedded platform the twin's.
After an Xid 79 injected into a running platform, the event on GPU_EVENTS, the incident (opened,
updated, its timeline and actions), the runbook runs and the audit records all carry the twin's
time — none the wall clock's — and no timeline runs backwards."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from events import subjects
from events.models import XidEvent
from runbooks.state import RunState
from tests.agents.safety_support import as_operator, audit_records, cli, incident_where, running

pytestmark = pytest.mark.slow


async def test_an_injected_fault_leaves_every_record_on_the_twins_clock(tmp_path: Path) -> None:
    async with running(tmp_path, http=True) as platform:
        began = platform.twin.now()
        injected = await cli(
            as_operator(platform), "inject", "xid", "--node", "node-003", "--gpu", "3", "--xid", "79"
        )
        await incident_where(
            platform,
            lambda i: i.status not in ("open", "mitigating") and bool(i.actions),
            what="the agent to act on the Xid and settle",
        )
        incidents = await platform.store.list_incidents()
        audit = await audit_records(platform)
        sub = await platform.js.pull_subscribe("gpu.events.xid.>", durable=None)
        events = [XidEvent.model_validate(json.loads(m.data)) for m in await sub.fetch(10, timeout=5)]
        kv = await platform.js.key_value(subjects.BUCKET_RUNBOOK_RUNS)
        runs = [RunState.model_validate_json((await kv.get(k)).value or b"") for k in await kv.keys()]
        ended = platform.twin.now()

    def on_the_twin(when: datetime | None) -> bool:
        return when is None or began <= when <= ended

    assert injected[0] == 0, injected[1]
    assert events and all(on_the_twin(e.time) for e in events)
    for incident in incidents:
        times = [entry.time for entry in incident.timeline]
        assert times == sorted(times), f"{incident.id}'s timeline runs backwards"
        assert incident.opened_at <= incident.updated_at
        assert incident.updated_at == max([incident.opened_at, *times])
        assert all(on_the_twin(t) for t in [incident.opened_at, incident.updated_at, *times])
        assert all(on_the_twin(action.time) for action in incident.actions)
    assert runs and all(
        on_the_twin(t)
        for run in runs
        for t in [
            run.created_at,
            run.updated_at,
            *(s.started_at for s in run.steps),
            *(s.finished_at for s in run.steps),
        ]
    )
    assert audit and all(on_the_twin(record.time) for record in audit)
