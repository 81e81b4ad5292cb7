"""The fleet-heatmap MCP App in a real browser, inside a minimal host: the host renders the ui://
resource in a sandboxed iframe, answers ui/initialize, sends fleet_health's result and relays the
app's tools/call to the real server; the app draws every GPU, the dead one failed."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from fleet import FleetTwin
from mcp_server.ui import FLEET_APP
from tests.console.browser import chromium, need_chromium

pytestmark = pytest.mark.slow

HOST = """<!doctype html><html><body>
<iframe id="app" sandbox="allow-scripts" width="900" height="600"></iframe>
<script>
const frame = document.getElementById("app");
const reply = (message) => frame.contentWindow.postMessage({jsonrpc: "2.0", ...message}, "*");
window.calls = [];
window.addEventListener("message", async (event) => {
  const m = event.data;
  if (!m || m.jsonrpc !== "2.0") return;
  window.calls.push(m.method);
  if (m.method === "ui/initialize") {
    reply({id: m.id, result: {protocolVersion: m.params.protocolVersion, hostInfo: {name: "test-host", version: "0"},
           hostCapabilities: {serverTools: {}}, hostContext: {}}});
  } else if (m.method === "ui/notifications/initialized") {
    reply({method: "ui/notifications/tool-result", params: window.toolResult});
  } else if (m.method === "tools/call") {
    reply({id: m.id, result: await window.callTool(m.params.name, m.params.arguments)});
  }
});
</script></body></html>"""


async def test_the_heatmap_app_draws_the_fleet_in_a_host(client: Client, twin: FleetTwin) -> None:
    need_chromium()
    twin.inject_xid("node-004", 6, 79)
    [resource] = (await client.read_resource(FLEET_APP)).contents
    html = getattr(resource, "text", "")
    health = await client.call_tool("fleet_health", {})

    async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        return {"structuredContent": result.structured_content, "isError": result.is_error}

    async with chromium() as browser:
        page = await browser.new_page()
        await page.expose_function("callTool", call_tool)
        await page.set_content(HOST)
        await page.evaluate(
            "([result, html]) => { window.toolResult = result; document.getElementById('app').srcdoc = html; }",
            [{"structuredContent": health.structured_content}, html],
        )
        frame = page.frame_locator("#app")
        await frame.locator("canvas#heatmap[data-gpus]").wait_for(timeout=30_000)
        app = page.frames[1]
        drawn = await app.evaluate("() => document.getElementById('heatmap').dataset.gpus")
        headline = await app.evaluate("() => document.querySelector('h1').textContent")
        dead = await app.evaluate(
            """() => {
                const cell = window.aiopsApp.cell("node-004", 6);
                const rgba = document.getElementById("heatmap").getContext("2d").getImageData(cell.x, cell.y, 1, 1).data;
                return [cell.state, Array.from(rgba).slice(0, 3)];
            }"""
        )
        calls = await page.evaluate("() => window.calls")

    assert drawn == "128"
    assert headline == (health.structured_content or {})["headline"]
    assert dead == ["f", [214, 40, 40]]
    assert calls[:2] == ["ui/initialize", "ui/notifications/initialized"]
    assert "tools/call" in calls
