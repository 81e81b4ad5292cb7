"""After an Xid 79 and the isolation that follows, every read tool tells the same truth: the GPU
is dead and out of service, not healthy (issue 16's "state that lies")."""

from __future__ import annotations

from mcp import Client

from fleet import FleetTwin
from tests.mcp_server.support import ok


async def test_a_dead_isolated_gpu_is_neither_healthy_nor_forgotten(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-006", 3, 79)
    twin.isolate_gpu("node-006", 3, "Xid 79")
    health = ok(await client.call_tool("fleet_health", {}))
    status = ok(await client.call_tool("gpu_status", {"node": "node-006", "gpu": 3}))
    xids = ok(await client.call_tool("xid_history", {}))
    offenders = ok(await client.call_tool("top_offenders", {}))
    cells = ok(await client.call_tool("fleet_map", {}))

    assert health["status"] != "healthy" and health["gpus"]["healthy"] == 127
    assert health["headline"].startswith(f"{health['status'].upper()}: 127/128 GPUs healthy, 1 isolated")
    assert status["gpu"]["health"] == "fallen_off_bus" and status["gpu"]["isolated"]
    assert [(o["node"], o["gpu"], o["xid"]) for o in xids["occurrences"]] == [("node-006", 3, 79)]
    assert offenders["offenders"][0]["target"] == "node-006/3"
    assert cells["states"].count("f") == 1 and "i" not in cells["states"]
