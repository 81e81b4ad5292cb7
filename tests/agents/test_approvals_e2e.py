"""Approvals end to end on the embedded platform (real nats-server): the agent parks a run that
needs a person, a person approves (the run resumes and acts once) or rejects it (the run is
abandoned), or nobody answers (it expires) — each on the incident's timeline and in the audit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from aiops.settings import FreezeWindowSetting
from events.incident import Incident
from fleet import DEFAULT_EPOCH
from mcp_server.gate.policy import Principal
from tests.agents.safety_support import as_operator, audit_records, cli, incident_where, running

pytestmark = pytest.mark.slow

OLGA = Principal(id="olga", role="operator", kind="person")
FREEZE = [
    FreezeWindowSetting(start=DEFAULT_EPOCH, end=DEFAULT_EPOCH + timedelta(days=30), reason="year-end run")
]


def waiting(incident: Incident) -> bool:
    return incident.status == "awaiting_approval" and bool(incident.pending_approvals)


async def test_a_person_approves_with_the_cli_then_rejects_and_the_run_is_abandoned(tmp_path: Path) -> None:
    async with running(tmp_path, http=True, freeze_windows=FREEZE) as platform:
        twin = platform.twin
        twin.inject_xid("node-003", 3, 79)
        parked = await incident_where(platform, waiting, what="the isolation to wait for approval")
        [first] = parked.pending_approvals
        isolated_before = twin.gpu("node-003", 3).isolated

        env = as_operator(platform)
        listed = await cli(env, "approvals")
        approved = await cli(env, "approve", first.id, "-m", "GPU is gone, go")
        second = await incident_where(
            platform,
            lambda i: waiting(i) and i.pending_approvals[0].id != first.id,
            what="the swap to wait for its own approval",
        )
        [swap] = second.pending_approvals
        async with platform.sessions.session(OLGA) as tools:
            rejected = await tools.call(
                "reject_action", {"approval_id": swap.id, "comment": "keep the spares"}
            )
        done = await incident_where(
            platform, lambda i: i.status == "escalated", what="the incident to escalate"
        )
        audit = await audit_records(platform)

    assert (first.action, first.target, first.step) == ("isolate_gpu", "node-003/gpu3", "isolate")
    assert "a change freeze is on" in first.summary
    assert first.expires_at is not None
    assert not isolated_before
    assert listed[0] == 0 and first.id in listed[1] and "isolate_gpu" in listed[1]
    assert approved[0] == 0, approved[1]
    assert "approved isolate_gpu on node-003/gpu3" in approved[1]
    assert swap.action == "swap_spare"
    assert rejected.ok
    assert twin.gpu("node-003", 3).isolated  # the approved action ran ...
    assert twin.job("train-01").replacements == []  # ... the rejected one did not
    assert done.pending_approvals == []
    assert [(a.tool, a.ok) for a in done.actions] == [("isolate_gpu", True), ("swap_spare", False)]
    notes = [(e.what, e.detail) for e in done.timeline]
    assert ("approved", f"{first.id} approved by olga: GPU is gone, go; the run resumes") in notes
    escalated = [detail for what, detail in notes if what == "escalated to a person"]  # later events may join
    assert len(escalated) == 1
    assert f"approval {swap.id} rejected by olga: keep the spares" in escalated[0]
    assert "the run is abandoned" in escalated[0]
    trail = [(r.principal, r.tool, r.decision, r.ok) for r in audit if not r.replayed]
    assert trail == [
        ("triage-agent", "isolate_gpu", "approval_required", False),
        ("olga", "approve_action", "allow", True),
        ("triage-agent", "isolate_gpu", "allow", True),
        ("triage-agent", "swap_spare", "approval_required", False),
        ("olga", "reject_action", "allow", True),
    ]


async def test_an_unanswered_approval_expires_and_the_run_is_abandoned(tmp_path: Path) -> None:
    async with running(tmp_path, freeze_windows=FREEZE, approval_ttl_s=0.5) as platform:
        platform.twin.inject_xid("node-013", 1, 79)  # an idle node: the plan is the isolation alone
        parked = await incident_where(platform, waiting, what="the isolation to wait for approval")
        done = await incident_where(
            platform, lambda i: i.status == "escalated", what="the approval to expire"
        )
        audit = await audit_records(platform)

    [request] = parked.pending_approvals
    assert done.pending_approvals == []
    assert f"approval {request.id} expired unanswered" in done.timeline[-1].detail
    assert not platform.twin.gpu("node-013", 1).isolated
    [action] = done.actions
    assert (action.tool, action.ok) == ("isolate_gpu", False)
    assert (action.error or "").startswith(f"approval {request.id} expired unanswered at")
    expired = [r for r in audit if r.tool == "expire_approval"]
    assert [(r.decision, r.arguments["approval_id"]) for r in expired] == [("deny", request.id)]
