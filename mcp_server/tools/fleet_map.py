"""The ``fleet_map`` tool: every GPU of the fleet as one cell state, grouped by leaf switch, rack and node.

The heatmap (the console's and the MCP App's) draws from this. It is compact on purpose: a layout (the nodes in
leaf/rack/node order with their GPU counts) sent once, and a string of one state letter per GPU in
layout order, resent whole when anything changes (16 KB at 16,384 GPUs).
"""

from __future__ import annotations

from typing import Literal

from mcp.server import MCPServer
from pydantic import BaseModel, Field

from contracts.tools import GpuView, NodeDetail
from mcp_server.backends.base import ClusterBackend
from mcp_server.deps import ServerDeps
from mcp_server.tools._common import READ_ONLY, readable

CellState = Literal["healthy", "degraded", "isolated", "failed", "repair", "spare"]

CODES: dict[CellState, str] = {
    "healthy": "h",
    "degraded": "d",
    "isolated": "i",
    "failed": "f",
    "repair": "r",
    "spare": "s",
}
LEGEND: dict[str, str] = {
    "h": "healthy",
    "d": "degraded (an Xid seen, health unknown or node not ready)",
    "i": "isolated (taken out of service, hardware answering)",
    "f": "failed (off the bus or in error)",
    "r": "in repair (node cordoned or rebooting)",
    "s": "spare (warm pool)",
}


def cell_state(node: NodeDetail, gpu: GpuView) -> CellState:
    """One GPU's state, the worst that applies: a dead GPU is failed whether or not it is isolated."""
    if gpu.health in ("fallen_off_bus", "error"):
        return "failed"
    if gpu.isolated:
        return "isolated"
    if node.state == "rebooting" or node.cordoned:
        return "repair"
    if gpu.health == "unknown" or node.state != "ready" or gpu.last_xid is not None:
        return "degraded"
    if node.spare:
        return "spare"
    return "healthy"


class MapNode(BaseModel):
    name: str
    rack: str
    leaf: str
    gpus: int


class FleetMap(BaseModel):
    cluster: str
    nodes: list[MapNode] = Field(description="leaf switch, then rack, then node name order")
    states: str = Field(
        description="one letter per GPU in node order: " + ", ".join(f"{k}={v}" for k, v in LEGEND.items())
    )

    def counts(self) -> dict[str, int]:
        return {LEGEND[code].split(" ")[0]: self.states.count(code) for code in LEGEND}

    def cell(self, node: str, gpu: int) -> str:
        """The state letter of one GPU (for tests and tools)."""
        offset = 0
        for n in self.nodes:
            if n.name == node:
                return self.states[offset + gpu]
            offset += n.gpus
        raise KeyError(node)


async def fleet_map_of(backend: ClusterBackend) -> FleetMap:
    nodes = sorted(await backend.list_nodes(), key=lambda n: (n.leaf_switch, n.rack, n.name))
    layout = [MapNode(name=n.name, rack=n.rack, leaf=n.leaf_switch, gpus=len(n.gpus)) for n in nodes]
    states = "".join(CODES[cell_state(n, g)] for n in nodes for g in n.gpus)
    return FleetMap(cluster=backend.cluster, nodes=layout, states=states)


def register(server: MCPServer, deps: ServerDeps) -> None:
    @server.tool(annotations=READ_ONLY)
    async def fleet_map() -> FleetMap:
        """Every GPU's state in one compact answer, for drawing the fleet: `nodes` in leaf switch,
        rack and node order with their GPU counts, and `states`, one letter per GPU in that order
        (h healthy, d degraded, i isolated, f failed, r in repair, s spare). The MCP App of
        `fleet_health` draws it as a heatmap; for reading, prefer fleet_health and list_nodes."""
        return await readable(fleet_map_of(deps.backend))
