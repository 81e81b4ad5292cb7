"""Leases in KV ``leases`` on a real nats-server: one holder at a time, free once expired, and a
later owner always has a higher fencing token."""

from __future__ import annotations

from nats.js import JetStreamContext

from events.leases import Leases


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_live_lease_is_refused_to_others_and_an_expired_one_is_taken_with_a_higher_token(
    js: JetStreamContext,
) -> None:
    clock = Clock()
    leases = await Leases.open(js, ttl_s=10)
    leases.clock = clock
    first = await leases.take("incident.inc-1", "agent-a")
    assert first is not None
    assert await leases.take("incident.inc-1", "agent-b") is None
    assert await leases.holder("incident.inc-1") == "agent-a"
    clock.now += 11  # agent-a stopped renewing
    assert await leases.holder("incident.inc-1") is None
    second = await leases.take("incident.inc-1", "agent-b")
    assert second is not None and second > first
    assert not await leases.renew("incident.inc-1", "agent-a")  # it is agent-b's now


async def test_a_renewed_lease_outlives_its_first_ttl_and_a_released_one_is_free_at_once(
    js: JetStreamContext,
) -> None:
    clock = Clock()
    leases = await Leases.open(js, ttl_s=10)
    leases.clock = clock
    assert await leases.take("node.sim-a.node-003", "agent-a/inc-1") is not None
    clock.now += 8
    assert await leases.renew("node.sim-a.node-003", "agent-a/inc-1")
    clock.now += 8
    assert await leases.take("node.sim-a.node-003", "agent-b/inc-2") is None
    await leases.release("node.sim-a.node-003", "agent-a/inc-1")
    assert await leases.take("node.sim-a.node-003", "agent-b/inc-2") is not None
