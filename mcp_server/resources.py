"""MCP resources: what a person (or a model) can read without calling a tool.

- ``runbook://index`` and ``runbook://<name>``: the runbooks, as the engine runs them;
- ``xid://catalog`` and ``xid://<code>``: the Xid catalog, one resource per code (a code the
  catalog does not know reads as a safe placeholder);
- ``incidents://open`` and ``incident://<id>``: what the triage agents are working on;
- ``fleet://summary``: the fleet at a glance (the ``fleet_health`` tool's answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from mcp_server.deps import ServerDeps
from mcp_server.tools.fleet_health import OPEN_STATUSES, fleet_health_of
from mcp_server.tools.incidents import brief
from runbooks.models import Runbook
from skills.catalog import XidInfo, load_catalog

MARKDOWN = "text/markdown"
JSON = "application/json"
YAML = "application/yaml"


def xid_markdown(info: XidInfo) -> str:
    """One Xid code for a person: meaning, NVIDIA's bucket, what the platform does, relations."""
    lines = [
        f"# Xid {info.code}: {info.mnemonic}",
        "",
        info.meaning,
        "",
        f"- **Level:** {info.level.value}",
        f"- **NVIDIA's immediate resolution:** {info.nvidia_bucket.value}",
        f"- **Platform action:** {info.platform_action.value}",
        f"- **Recommended:** {info.recommended_action}",
    ]
    if info.sympathetic is not None:
        s = info.sympathetic
        of = "any other Xid" if s.of == "any" else "Xid " + ", ".join(map(str, s.of))
        where = "on the same GPU" if s.where == "same_gpu" else "at the other end of the NVLink"
        verb = "usually follows" if s.relation == "follows" else "summarises"
        lines.append(f"- **Sympathetic:** {verb} {of} {where}" + (f". {s.note}" if s.note else ""))
    if info.escalate_after is not None:
        rule = info.escalate_after
        lines.append(
            f"- **Escalates:** {rule.count} times within {rule.window_hours:g} h on one {rule.scope} "
            f"-> {rule.then.value}" + (f". {rule.note}" if rule.note else "")
        )
    if not info.known:
        lines.append("\nThis code is not in the catalog: look it up in NVIDIA's Xid documentation.")
    return "\n".join(lines) + "\n"


def runbook_yaml(runbook: Runbook) -> str:
    return yaml.safe_dump(
        runbook.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=False, width=100
    )


def runbook_index(runbooks: list[Runbook]) -> str:
    lines = ["# Runbooks", "", "Run one with `run_runbook` (plan it first with `plan_runbook`).", ""]
    for book in runbooks:
        params = ", ".join(
            f"{name}: {spec.type}" + ("" if spec.required and spec.default is None else " (optional)")
            for name, spec in book.params.items()
        )
        lines.append(f"- **{book.name}** ({params}): {' '.join(book.description.split())}")
    return "\n".join(lines) + "\n"


def register(server: MCPServer, deps: ServerDeps) -> None:
    catalog = load_catalog()
    books = [deps.runbooks.get(name) for name in deps.runbooks.names()]

    @server.resource(
        "runbook://index",
        name="runbooks",
        description="Every runbook with its parameters",
        mime_type=MARKDOWN,
    )
    def runbooks() -> str:
        return runbook_index(books)

    def runbook_reader(book: Runbook) -> Callable[[], str]:
        return lambda: runbook_yaml(book)

    for book in books:
        server.resource(
            f"runbook://{book.name}",
            name=f"runbook {book.name}",
            description=" ".join(book.description.split()),
            mime_type=YAML,
        )(runbook_reader(book))

    @server.resource(
        "xid://catalog",
        name="Xid catalog",
        description="Every Xid code the catalog knows",
        mime_type=MARKDOWN,
    )
    def xid_catalog() -> str:
        lines = ["# Xid catalog", ""]
        lines += [f"- [Xid {x.code}](xid://{x.code}) {x.mnemonic}: {x.meaning}" for x in catalog.xids]
        return "\n".join(lines) + "\n"

    def xid_reader(info: XidInfo) -> Callable[[], str]:
        return lambda: xid_markdown(info)

    for info in catalog.xids:
        server.resource(
            f"xid://{info.code}",
            name=f"Xid {info.code} {info.mnemonic}",
            description=info.meaning,
            mime_type=MARKDOWN,
        )(xid_reader(info))

    @server.resource(
        "xid://{code}",
        name="any Xid",
        description="An Xid code, known to the catalog or not",
        mime_type=MARKDOWN,
    )
    def xid_any(code: str) -> str:
        if not code.isdigit():
            raise ResourceNotFoundError(f"an Xid code is a number, not {code!r}")
        return xid_markdown(catalog.info_or_unknown(int(code)))

    @server.resource(
        "incidents://open",
        name="open incidents",
        description="Incidents still open, mitigating, awaiting approval or escalated",
        mime_type=JSON,
    )
    async def open_incidents() -> str:
        found = await deps.incidents.list_incidents(OPEN_STATUSES, 200)
        return json.dumps([brief(i).model_dump(mode="json") for i in found], indent=1)

    @server.resource(
        "incident://{incident_id}", name="incident", description="One incident in full", mime_type=JSON
    )
    async def incident(incident_id: str) -> str:
        found = await deps.incidents.get_incident(incident_id)
        if found is None:
            raise ResourceNotFoundError(f"no incident {incident_id!r}; incidents://open lists the open ones")
        return found.model_dump_json(indent=1)

    @server.resource(
        "fleet://summary", name="fleet summary", description="The fleet at a glance", mime_type=JSON
    )
    async def summary() -> str:
        return (await fleet_health_of(deps)).model_dump_json(indent=1)
