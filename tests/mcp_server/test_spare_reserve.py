"""AIOPS_MIN_SPARES=auto: the gate's reserve rule keeps the pool spare_advice sizes from the incident
history, never below the floor; a bad setting stops the start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiops.safety import policy_limits
from aiops.settings import Settings
from mcp_server.gate.policy import PolicyGate
from tests.mcp_server.remediation_rig import build_rig, connected
from tests.mcp_server.support import MemoryIncidents
from tests.mcp_server.test_advice import hardware_incident

SWAP = {
    "job": "train-02",
    "node": "node-010",
    "reason": "Xid 79",
    "idempotency_key": "inc-7/swap-spare/swap",
    "incident_id": "inc-7",
}


async def test_an_auto_reserve_follows_the_advice_and_sends_a_swap_into_it_to_a_person(
    policy_gate: PolicyGate,
) -> None:
    rig = build_rig(policy_gate, min_spares=0, min_spares_auto=True)
    now = rig.twin.now()
    # Many node removals with long repairs: the advice wants more spares than the two the pool has.
    rig.deps.incidents = MemoryIncidents(hardware_incident(i, now, 0.5 + i, 48) for i in range(12))
    async with connected(rig):
        advice = await rig.ok("spare_advice")
        pool = await rig.ok("spare_pool")
        _, asks = await rig.refused("swap_spare", **SWAP)
    assert advice["advised_spares"] > 2
    assert advice["policy_min_spares"] == advice["advised_spares"]
    assert advice["policy_min_spares_basis"].startswith("auto: spare_advice")
    assert pool["minimum"] == advice["advised_spares"] and pool["above_minimum"] == 0
    assert (asks.kind, asks.rule) == ("approval_required", "spare-reserve-needs-approval")


async def test_an_auto_reserve_without_history_is_the_floor_and_says_so(policy_gate: PolicyGate) -> None:
    rig = build_rig(policy_gate, min_spares=0, min_spares_auto=True)
    rig.deps.incidents = MemoryIncidents([])
    async with connected(rig):
        pool = await rig.ok("spare_pool")
        swapped = await rig.ok("swap_spare", **SWAP)
        given = await rig.ok("spare_advice", failures_per_1000_node_days=4, repair_hours=2)
    assert pool["minimum"] == 0
    assert swapped["changed"] and swapped["policy"]["decision"] == "allow"
    assert given["policy_min_spares"] == 0
    assert "the floor 0" in given["policy_min_spares_basis"]


def test_min_spares_auto_becomes_the_policys_auto_reserve_with_its_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOPS_MIN_SPARES", "auto")
    monkeypatch.setenv("AIOPS_MIN_SPARES_FLOOR", "2")
    limits = policy_limits(Settings())
    assert (limits.min_spares_auto, limits.min_spares) == (True, 2)
    monkeypatch.setenv("AIOPS_MIN_SPARES", "3")
    limits = policy_limits(Settings())
    assert (limits.min_spares_auto, limits.min_spares) == (False, 3)


@pytest.mark.parametrize("value", ["lots", "-1", "Auto "])
def test_an_unusable_min_spares_is_an_error_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIOPS_MIN_SPARES", value)
    with pytest.raises(ValidationError, match="min_spares"):
        Settings()
