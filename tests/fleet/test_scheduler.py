from __future__ import annotations

from fleet.scheduler import plan_gang
from fleet.topology import Gpu, Node


def _node(name: str, leaf: str, *, spare: bool = False) -> Node:
    gpus = [Gpu(index=i, uuid=f"GPU-{name}-{i}", pci_bus_id=f"0000:{i:02x}:00.0") for i in range(8)]
    return Node(name=name, rack="rack-01", leaf=leaf, spare=spare, gpus=gpus)


def test_a_spare_on_the_same_leaf_is_preferred_over_a_lower_named_one() -> None:
    nodes = {
        n.name: n
        for n in [_node("a1", "leaf-01"), _node("b1", "leaf-02"), _node("s1", "leaf-01", spare=True)]
    }
    nodes["s2"] = _node("s2", "leaf-02", spare=True)
    nodes["b1"].gpus[0].health = "error"
    plan = plan_gang(["a1", "b1"], nodes, 8)
    assert plan.placeable
    assert [(old, new) for old, new, _ in plan.swaps] == [("b1", "s2")]


def test_an_unfit_spare_is_never_chosen() -> None:
    nodes = {n.name: n for n in [_node("a1", "leaf-01"), _node("s1", "leaf-01", spare=True)]}
    nodes["a1"].gpus[3].health = "fallen_off_bus"
    nodes["s1"].gpus[0].isolated = True
    plan = plan_gang(["a1"], nodes, 8)
    assert not plan.placeable
    assert plan.swaps == []
    assert plan.blocked == ["a1 has 7/8 usable GPUs (GPU 3 fallen_off_bus); no spare node left"]


def test_a_fit_gang_needs_no_swap() -> None:
    nodes = {n.name: n for n in [_node("a1", "leaf-01"), _node("s1", "leaf-01", spare=True)]}
    plan = plan_gang(["a1"], nodes, 8)
    assert plan.placeable and plan.swaps == []
