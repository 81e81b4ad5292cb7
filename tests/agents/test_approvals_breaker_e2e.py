"""The circuit breaker, observe-only mode and the spare swap end to end on the embedded platform:
what the agent does, what the incidents say, what the twin and the audit show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from events.incident import Incident
from mcp_server.gate.policy import Principal
from tests.agents.safety_support import as_operator, audit_records, cli, incident_where, running

pytestmark = pytest.mark.slow

OLGA = Principal(id="olga", role="operator", kind="person")


def settled(incident: Incident) -> bool:
    return incident.status in ("mitigated", "escalated", "suppressed")


def by_node(node: str) -> Callable[[Incident], bool]:
    return lambda i: node in i.affected_nodes and settled(i)


async def test_a_fault_with_spares_is_mitigated_by_swapping_one_in_and_waiting_for_the_baseline(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as platform:
        platform.twin.inject_xid("node-003", 3, 79)
        await incident_where(platform, by_node("node-003"), what="the swap to finish")
        done = await incident_where(
            platform, lambda i: any(e.what == "confirmed" for e in i.timeline), what="the job to train again"
        )
        job = platform.twin.job("train-01")

    assert done.status == "mitigated"
    assert [(a.tool, a.decision, a.ok) for a in done.actions] == [
        ("isolate_gpu", "allow", True),
        ("swap_spare", "allow", True),
        ("restart_from_checkpoint", "allow", True),
    ]
    confirmed = next(e for e in done.timeline if e.what == "confirmed")
    assert confirmed.detail == "swap-spare: the job trains again at its baseline step time"
    assert (job.state, "node-003" in job.nodes, len(job.replacements)) == ("running", False, 1)
    assert job.replacements[0].new == "node-015"


@pytest.mark.parametrize("backlog", ["retry", "escalate"])
async def test_the_breaker_holds_an_isolation_until_a_person_resets_it_and_the_backlog_goes_as_they_say(
    tmp_path: Path, backlog: str
) -> None:
    # 16 nodes, threshold 10%: one node taken out (6%) is fine, a second one (12%) trips the breaker.
    async with running(tmp_path, http=True, breaker_threshold_pct=10, min_spares=2) as platform:
        twin = platform.twin
        twin.inject_xid("node-013", 1, 79)
        first = await incident_where(platform, by_node("node-013"), what="the first isolation")
        twin.inject_xid("node-014", 2, 48)
        held = await incident_where(
            platform, lambda i: i.held_by == "breaker", what="the breaker to hold one"
        )
        isolated_while_open = twin.gpu("node-014", 2).isolated
        if backlog == "retry":  # through MCP, as an operator's client would
            async with platform.sessions.session(OLGA) as tools:
                status = await tools.call("safety_status", {})
                reset = await tools.call(
                    "reset_breaker", {"comment": "one bad batch; checked", "backlog": backlog}
                )
            assert status.structured["breaker"]["open"] is True  # type: ignore[index]
            assert reset.ok
        else:  # from a terminal
            shown = await cli(as_operator(platform), "breaker", "status")
            done = await cli(
                as_operator(platform), "breaker", "reset", "-m", "one bad batch", "--backlog", backlog
            )
            assert shown[0] == 0 and "circuit breaker OPEN" in shown[1] and "node-013" in shown[1], shown[1]
            assert done[0] == 0 and "circuit breaker reset by olga" in done[1], done[1]
        after = await incident_where(
            platform,
            lambda i: i.id == held.id and i.held_by is None and settled(i),
            what="the backlog to be handled",
        )
        audit = await audit_records(platform)

    assert first.status == "mitigated"
    assert held.status == "escalated"
    assert "circuit breaker open" in held.timeline[-1].detail
    assert not isolated_while_open
    trail = [(r.principal, r.tool, r.decision) for r in audit]
    assert ("triage-agent", "trip_breaker", "deny") in trail
    assert ("olga", "reset_breaker", "allow") in trail
    if backlog == "retry":
        assert after.status == "mitigated" and after.attempt == 2
        assert twin.gpu("node-014", 2).isolated
        assert [(a.tool, a.ok) for a in after.actions] == [("isolate_gpu", False), ("isolate_gpu", True)]
        assert any(e.what == "breaker reset" and "retrying (attempt 2)" in e.detail for e in after.timeline)
    else:
        assert after.status == "escalated"
        assert not twin.gpu("node-014", 2).isolated
        assert after.timeline[-1].detail == "by olga: the backlog stays with people; nothing is retried"


async def test_observe_only_plans_checks_and_records_but_leaves_the_twin_unchanged(tmp_path: Path) -> None:
    async with running(tmp_path, observe_only=True) as platform:
        twin = platform.twin
        twin.inject_xid("node-003", 3, 79)
        done = await incident_where(platform, by_node("node-003"), what="the observe-only plan")
        audit = await audit_records(platform)
        job = twin.job("train-01")

    assert done.status == "escalated" and done.observe_only
    assert [(a.tool, a.decision, a.ok, a.result["dry_run"]) for a in done.actions] == [
        ("isolate_gpu", "allow", True, True),
        ("swap_spare", "allow", True, True),
        ("restart_from_checkpoint", "allow", True, True),
    ]
    assert [e.what for e in done.timeline if e.what.endswith("would run")] == [
        "isolate_gpu would run",
        "swap_spare would run",
        "restart_from_checkpoint would run",
    ]
    assert "observe-only: nothing changed" in [e.what for e in done.timeline]  # later events may join
    assert not twin.gpu("node-003", 3).isolated
    assert (job.state, job.restarts, job.replacements, "node-003" in job.nodes) == ("stalled", 0, [], True)
    assert [(r.tool, r.decision, r.dry_run) for r in audit] == [
        ("isolate_gpu", "allow", True),
        ("swap_spare", "allow", True),
        ("restart_from_checkpoint", "allow", True),
    ]
