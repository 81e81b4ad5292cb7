"""The fleet heatmap and an incident card as MCP Apps (SEP-1865, the ``io.modelcontextprotocol/ui``
extension): ``ui://`` resources of type ``text/html;profile=mcp-app`` that ``fleet_health`` and
``get_incident`` link through their ``_meta.ui.resourceUri``. Hosts that support MCP Apps render
them inline (in a sandboxed iframe, so each document is self-contained: its script and style are
inlined); every other client still gets the tools' structured and text answers.

The app speaks the extension's JSON-RPC over ``postMessage``: ``ui/initialize``, then it draws the
tool result the host sends (``ui/notifications/tool-result``); the heatmap asks the host to call
``fleet_map`` for the per-GPU states.
"""

from __future__ import annotations

from importlib import resources

from mcp.server.apps import Apps

FLEET_APP = "ui://gpu-aiops/fleet-heatmap.html"
INCIDENT_APP = "ui://gpu-aiops/incident-card.html"
UI_LINKS = {"fleet_health": FLEET_APP, "get_incident": INCIDENT_APP}
"""Which tool shows which app (``GpuOpsServer.add_tool`` stamps ``_meta.ui.resourceUri``)."""


def asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _document(title: str, view: str) -> str:
    # Inlined: hosts render the resource in a sandbox that cannot fetch from this server.
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>{asset('app.css')}</style></head>"
        f'<body data-view="{view}"><main id="app"><p class="muted">Waiting for the tool result…</p></main>'
        f'<canvas id="heatmap" hidden></canvas><p id="render-time" class="muted"></p>'
        f"<script>{asset('heatmap.js')}\n{asset('app.js')}</script></body></html>"
    )


def ui_meta(tool: str) -> dict[str, object] | None:
    uri = UI_LINKS.get(tool)
    return {"ui": {"resourceUri": uri}} if uri else None


def extension() -> Apps:
    apps = Apps()
    apps.add_html_resource(
        FLEET_APP,
        _document("Fleet heatmap", "fleet"),
        name="fleet-heatmap",
        title="Fleet heatmap",
        description="Every GPU as a cell coloured by state, grouped by leaf switch, rack and node",
        prefers_border=True,
    )
    apps.add_html_resource(
        INCIDENT_APP,
        _document("Incident", "incident"),
        name="incident-card",
        title="Incident card",
        description="One incident: status, root cause, GPU-hours lost, plan, actions and timeline",
        prefers_border=True,
    )
    return apps
