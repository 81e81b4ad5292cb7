"""Each GPU's cell state on the heatmap: the worst that applies, a dead GPU failed even when isolated."""

from __future__ import annotations

from fleet import FleetSpec, FleetTwin
from mcp_server.backends.twin.backend import TwinBackend
from mcp_server.tools.fleet_map import fleet_map_of


async def test_cells_follow_the_fleet() -> None:
    twin = FleetTwin(FleetSpec.small())
    backend = TwinBackend(twin)
    fresh = await fleet_map_of(backend)
    twin.inject_xid("node-003", 3, 79)  # off the bus
    twin.isolate_gpu("node-003", 3, "Xid 79")
    twin.inject_xid("node-005", 1, 13)  # an application fault: the GPU answers
    twin.isolate_gpu("node-006", 2, "suspect")
    twin.cordon_node("node-010", "olga")
    after = await fleet_map_of(backend)

    assert len(fresh.states) == 128 and set(fresh.states) == {"h", "s"}
    assert [n.name for n in fresh.nodes][:2] == ["node-001", "node-002"]
    assert fresh.cell("node-015", 0) == "s"
    assert after.cell("node-003", 3) == "f"
    assert after.cell("node-005", 1) == "d"
    assert after.cell("node-006", 2) == "i"
    assert after.cell("node-010", 0) == "r"
    assert after.cell("node-003", 2) == "h"
    assert after.counts()["failed"] == 1
