from __future__ import annotations

from fleet import FleetSpec, FleetTwin


def _story(twin: FleetTwin) -> list[str]:
    twin.advance(1234)
    lines = twin.inject_xid("node-003", 2, 79)
    lines += twin.inject_xid("node-010", 5, 13)
    lines += twin.inject_xid("node-010", 5, 45)
    lines += twin.inject_xid("node-013", 1, 74)
    lines += twin.inject_three_line_fall_off("node-011", 0)
    return lines


def test_the_same_seed_gives_the_same_uuids_placement_and_kernel_lines() -> None:
    a, b = FleetTwin(FleetSpec.small(seed=42)), FleetTwin(FleetSpec.small(seed=42))
    uuids_a = [gpu.uuid for node in a.nodes.values() for gpu in node.gpus]
    uuids_b = [gpu.uuid for node in b.nodes.values() for gpu in node.gpus]
    assert uuids_a == uuids_b
    assert {n: j.nodes for n, j in a.jobs.items()} == {n: j.nodes for n, j in b.jobs.items()}
    assert {n: j.pid_base for n, j in a.jobs.items()} == {n: j.pid_base for n, j in b.jobs.items()}
    assert _story(a) == _story(b)
    assert [r.text for r in a.history] == [r.text for r in b.history]


def test_a_different_seed_gives_different_uuids() -> None:
    a, b = FleetTwin(FleetSpec.small(seed=1)), FleetTwin(FleetSpec.small(seed=2))
    assert a.gpu("node-001", 0).uuid != b.gpu("node-001", 0).uuid


def test_the_twin_does_not_touch_the_global_random_state() -> None:
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    _story(FleetTwin(FleetSpec.small(seed=5)))
    assert random.random() == expected
