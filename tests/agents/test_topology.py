"""Learning the fabric through the list_nodes tool, and choosing the part to blame."""

from __future__ import annotations

from typing import Any

import pytest

from agents.topology import Signal, TopologyCorrelator, load_fabric
from contracts.client import ToolResult
from tests.agents.factories import at, fabric


class PagedNodes:
    """The list_nodes tool's answers, two nodes a page."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes, self.calls = nodes, []

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((tool, dict(arguments)))
        start = int(arguments.get("cursor") or 0)
        page = self.nodes[start : start + 2]
        more = start + 2 < len(self.nodes)
        return ToolResult(
            ok=True, structured={"nodes": page, "next_cursor": str(start + 2) if more else None}
        )

    async def read_only_tools(self) -> set[str]:
        return {"list_nodes"}


async def test_the_fabric_is_learned_page_by_page_through_list_nodes():
    tools = PagedNodes(
        [
            {"name": f"node-{i}", "leaf_switch": f"leaf-{i // 2}", "rack": f"rack-{i}", "labels": {}}
            for i in range(5)
        ]
    )
    learned = await load_fabric(tools)  # type: ignore[arg-type]
    assert len(learned) == 5 and learned.leaf("node-3") == "leaf-1"
    assert [c[1].get("cursor") for c in tools.calls] == [None, "2", "4"]


async def test_a_failing_list_nodes_is_a_readable_error():
    class Broken(PagedNodes):
        async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
            return ToolResult(ok=False, text="permission denied")

    with pytest.raises(RuntimeError, match="list_nodes failed: permission denied"):
        await load_fabric(Broken([]))  # type: ignore[arg-type]


def signal(job: str, nodes: tuple[str, ...], t: float, topo: TopologyCorrelator, klass="network") -> Signal:
    return Signal(
        time=at(t),
        klass=klass,
        nodes=nodes,
        parts=topo.parts_of(nodes, klass),
        summary=job,
        job=job,
        incident_id=f"inc-{job}",
    )


def test_one_job_alone_never_blames_a_part_and_old_signals_expire():
    topo = TopologyCorrelator(fabric(), window_s=60)
    assert topo.observe(signal("a", ("node-040",), 0, topo), lambda p: "shared") is None
    assert topo.observe(signal("a", ("node-041",), 5, topo), lambda p: "shared") is None
    assert topo.observe(signal("b", ("node-042",), 120, topo), lambda p: "shared") is None  # "a" is stale


def test_the_affected_nodes_are_those_under_the_blamed_part():
    topo = TopologyCorrelator(fabric())
    topo.observe(signal("a", ("node-040", "node-010"), 0, topo), lambda p: "shared")
    verdict = topo.observe(signal("b", ("node-041",), 1, topo), lambda p: "shared")
    assert verdict is not None and verdict.part == ("switch", "leaf-02")
    assert verdict.nodes == ("node-040", "node-041") and verdict.folds == ("inc-a",)
