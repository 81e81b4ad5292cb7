"""The fleet heatmap and incident card as MCP Apps: fleet_health and get_incident link their ui://
resources, the resources are self-contained mcp-app HTML, the server advertises the extension,
and fleet_map gives the app every GPU's state."""

from __future__ import annotations

from mcp import Client

from fleet import FleetTwin
from mcp_server.ui import FLEET_APP, INCIDENT_APP

APP_MIME = "text/html;profile=mcp-app"


async def test_tools_link_their_apps_and_the_apps_are_self_contained(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    fleet = await client.read_resource(FLEET_APP)
    incident = await client.read_resource(INCIDENT_APP)
    capabilities = client.server_capabilities

    assert (tools["fleet_health"].meta or {})["ui"] == {"resourceUri": FLEET_APP}
    assert (tools["get_incident"].meta or {})["ui"] == {"resourceUri": INCIDENT_APP}
    assert tools["list_nodes"].meta is None or "ui" not in tools["list_nodes"].meta
    assert "io.modelcontextprotocol/ui" in (capabilities.extensions or {})
    for read in (fleet, incident):
        [body] = read.contents
        assert body.mime_type == APP_MIME
        html = getattr(body, "text", "")
        assert "ui/initialize" in html and "function draw(" in html  # script inlined
        assert " src=" not in html and "<link" not in html  # nothing fetched: hosts sandbox it


async def test_fleet_map_has_every_gpu_and_a_dead_one_is_failed(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-004", 6, 79)
    answer = await client.call_tool("fleet_map", {})
    fleet = await client.call_tool("fleet_health", {})

    shown = answer.structured_content or {}
    order = [n["name"] for n in shown["nodes"]]
    offset = sum(n["gpus"] for n in shown["nodes"][: order.index("node-004")])
    assert len(shown["states"]) == 128
    assert shown["states"][offset + 6] == "f"
    assert not fleet.is_error  # clients without MCP Apps still get the structured answer
    assert "headline" in (fleet.structured_content or {})
