"""What each ``/gpu`` command does: MCP tool calls under the caller's identity, rendered as a reply.

The runner only talks to a ``ToolClient`` (an MCP session), so chat, the terminal (``aiops slash``)
and tests all take the same path through the policy gate and the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from chatops import blocks as bk
from chatops.blocks import Reply
from chatops.grammar import Command, UsageError, parse, usage
from contracts.client import ToolClient, ToolResult

ACTIVE = ["open", "mitigating", "awaiting_approval", "escalated"]
SEVERITY_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":white_circle:"}

# Commands whose work may take longer than chat's 3-second answer window.
SLOW = frozenset({"triage", "isolate", "runbook", "approve", "reject"})


class SlashRunner:
    def __init__(self, tools: ToolClient, *, caller: str) -> None:
        self.tools = tools
        self.caller = caller
        self._handlers: dict[str, Callable[[Command], Awaitable[Reply]]] = {
            "status": self.status,
            "incidents": self.incidents,
            "incident": self.incident,
            "node": self.node,
            "triage": self.triage,
            "approve": self.approve,
            "reject": self.reject,
            "isolate": self.isolate,
            "runbook": self.runbook,
            "help": self.help,
        }

    async def run_text(self, text: str) -> Reply:
        """Parse and run; a malformed command gets a usage reply, never an exception."""
        try:
            command = parse(text)
        except UsageError as exc:
            return Reply(text=str(exc), blocks=[bk.section(str(exc))], ok=False)
        return await self.run(command)

    async def run(self, command: Command) -> Reply:
        return await self._handlers[command.name](command)

    async def _call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        return await self.tools.call(tool, arguments)

    async def _has(self, tool: str) -> bool:
        return tool in await self.tools.tool_names()

    # -- read ---------------------------------------------------------------------------------

    async def help(self, command: Command) -> Reply:
        text = usage()
        return Reply(text=text, blocks=[bk.section("*`/gpu` commands*"), bk.section(bk.code(text))])

    async def status(self, command: Command) -> Reply:
        if await self._has("fleet_health"):
            health = await self._call("fleet_health", {})
            if not health.ok:
                return _error("fleet_health", health)
            summary = _text_of(health)
            return Reply(text=summary, blocks=[bk.header("Fleet health"), bk.section(summary)])
        nodes = await self._call("list_nodes", {"state": "unhealthy", "limit": 20})
        listed = await self._call("list_incidents", {"status": ACTIVE, "limit": 10})
        if not nodes.ok or not listed.ok:
            return _error("status", nodes if not nodes.ok else listed)
        page, incidents = nodes.structured or {}, (listed.structured or {}).get("incidents", [])
        lines = [
            f"{n['name']}: {n['gpus_healthy']}/{n['gpus_total']} GPUs healthy, {n['gpus_isolated']} isolated"
            + (", cordoned" if n["cordoned"] else "")
            for n in page.get("nodes", [])
        ]
        text = f"{page.get('total', 0)} unhealthy nodes, {len(incidents)} active incidents\n" + "\n".join(
            lines
        )
        return Reply(text=text, blocks=[bk.header("Fleet health"), bk.section(text)])

    async def incidents(self, command: Command) -> Reply:
        everything = "--all" in command.flags
        query: dict[str, Any] = {"limit": 20} if everything else {"status": ACTIVE, "limit": 20}
        listed = await self._call("list_incidents", query)
        if not listed.ok:
            return _error("list_incidents", listed)
        found = (listed.structured or {}).get("incidents", [])
        if not found:
            none = (
                "No incidents."
                if everything
                else "No active incidents (`/gpu incidents --all` for the rest)."
            )
            return Reply(text=none, blocks=[bk.section(f":white_check_mark: {none}")])
        lines = [
            f"{SEVERITY_ICON.get(i['severity'], '')} `{i['id']}` *{i['status']}* {i['title']}"
            + (f" — root cause {i['root_cause']}" if i.get("root_cause") else "")
            for i in found
        ]
        return Reply(
            text="\n".join(lines),
            blocks=[
                bk.header(f"{len(found)} {'recent' if everything else 'active'} incidents"),
                bk.section("\n".join(lines)),
            ],
        )

    async def incident(self, command: Command) -> Reply:
        got = await self._call("get_incident", {"incident_id": command.args["id"]})
        if not got.ok:
            return _error("get_incident", got)
        return render_incident(got.structured or {})

    async def node(self, command: Command) -> Reply:
        got = await self._call("describe_node", {"node": command.args["name"]})
        if not got.ok:
            return _error("describe_node", got)
        return render_node(got.structured or {})

    async def triage(self, command: Command) -> Reply:
        name = command.args["node"]
        got = await self._call("describe_node", {"node": name})
        if not got.ok:
            return _error("describe_node", got)
        node = got.structured or {}
        reply = render_node(node)
        bad = [g for g in node.get("gpus", []) if g["health"] != "healthy" or g["isolated"]]
        findings = []
        for gpu in bad:
            owner = await self._call("job_for_gpu", {"node": name, "gpu": gpu["index"]})
            job = (owner.structured or {}).get("job") if owner.ok else None
            findings.append(
                f"GPU {gpu['index']} {gpu['health']}{' (isolated)' if gpu['isolated'] else ''}"
                + (f", last Xid {gpu['last_xid']}" if gpu.get("last_xid") is not None else "")
                + (f"; job {job['name']} is {job['state']}" if job else "; no job on it")
            )
        listed = await self._call("list_incidents", {"status": ACTIVE, "limit": 100})
        related = [
            i for i in (listed.structured or {}).get("incidents", []) if name in i.get("affected_nodes", [])
        ]
        findings += [f"incident `{i['id']}` {i['status']}: {i['title']}" for i in related]
        verdict = (
            "\n".join(f"• {f}" for f in findings) or "• nothing wrong: every GPU healthy, no active incident"
        )
        reply.blocks.append(bk.section(f"*Triage*\n{verdict}"))
        reply.text += "\nTriage:\n" + verdict
        return reply

    # -- act ----------------------------------------------------------------------------------

    async def isolate(self, command: Command) -> Reply:
        args = {
            "node": command.args["node"],
            "gpu": int(command.args["gpu"]),
            "reason": f"requested in chat by {self.caller}",
        }
        return _outcome("isolate_gpu", await self._call("isolate_gpu", args))

    async def approve(self, command: Command) -> Reply:
        return await self._decide("approve_action", command.args["action"])

    async def reject(self, command: Command) -> Reply:
        return await self._decide("reject_action", command.args["action"])

    async def _decide(self, tool: str, approval_id: str) -> Reply:
        if not await self._has(tool):
            return Reply(text=f"`{tool}` is not available on this server.", ok=False)
        return _outcome(
            tool,
            await self._call(tool, {"approval_id": approval_id, "comment": f"from chat by {self.caller}"}),
        )

    async def runbook(self, command: Command) -> Reply:
        dry = "--dry-run" in command.flags
        tool = "plan_runbook" if dry else "run_runbook"
        if not await self._has(tool):
            return Reply(text=f"`{tool}` is not available on this server.", ok=False)
        params: dict[str, Any] = {k: int(v) if v.isdigit() else v for k, v in command.params.items()}
        args: dict[str, Any] = {"runbook": command.args["name"], "params": params}
        if not dry:
            args["reason"] = f"requested in chat by {self.caller}"
        result = await self._call(tool, args)
        if not result.ok:
            return _error(tool, result)
        return render_run(result.structured or {})


def _text_of(result: ToolResult) -> str:
    data = result.structured if isinstance(result.structured, dict) else {}
    for key in ("headline", "summary"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return result.text


REFUSAL_ICON = {
    "denied": ":no_entry:",
    "read_only": ":no_entry:",
    "breaker_open": ":rotating_light:",
    "approval_required": ":hourglass_flowing_sand:",
    "in_flight": ":hourglass_flowing_sand:",
}


def _error(what: str, result: ToolResult) -> Reply:
    message = result.text.removeprefix(f"Error executing tool {what}: ")
    refusal = result.refusal
    if refusal is None:
        return Reply(text=f"{what} failed: {message}", blocks=[bk.section(f":warning: {message}")], ok=False)
    blocks = [bk.section(f"{REFUSAL_ICON[refusal.kind]} {message}")]
    if refusal.approval_id and refusal.kind == "approval_required":
        blocks.append(bk.context(f"approval {refusal.approval_id}: `/gpu approve {refusal.approval_id}`"))
    elif refusal.rule:
        blocks.append(bk.context(f"policy {refusal.rule}"))
    return Reply(text=f"{what} refused: {message}", blocks=blocks, ok=False)


def _outcome(tool: str, result: ToolResult) -> Reply:
    if not result.ok:
        return _error(tool, result)
    data = result.structured or {}
    detail = data.get("detail") or json.dumps(data)[:1000]
    policy = data.get("policy", {})
    note = f"policy {policy.get('decision')}" if policy else ""
    if data.get("replayed"):
        note += ", answered from an earlier identical request"
    text = f"{tool}: {detail}" + (f" ({note})" if note else "")
    return Reply(
        text=text,
        blocks=[bk.section(f":white_check_mark: {detail}"), bk.context(note or tool)],
        response_type="in_channel",
    )


def render_run(run: dict[str, Any]) -> Reply:
    steps = [
        f"{s.get('phase')} {s.get('id')}: {s.get('tool')} {s.get('status')}"
        + (f" (policy {s['decision']})" if s.get("decision") else "")
        + (f" — {s['error']}" if s.get("error") else "")
        for s in run.get("steps", [])
    ]
    head = f"runbook {run.get('runbook')} {run.get('status')}" + (" (dry run)" if run.get("dry_run") else "")
    text = head + ("\n" + "\n".join(steps) if steps else "")
    return Reply(
        text=text, blocks=[bk.section(f"*{head}*"), bk.section(bk.code("\n".join(steps) or "no steps"))]
    )


def render_node(node: dict[str, Any]) -> Reply:
    gpus = node.get("gpus", [])
    rows = [
        f"{g['index']}  {g['pci_bus_id']}  {g['health']:<15} {'isolated' if g['isolated'] else ''}"
        + (f" last Xid {g['last_xid']}" if g.get("last_xid") is not None else "")
        for g in gpus
    ]
    summary = (
        f"{node.get('name')}: {node.get('state')}, rack {node.get('rack')}, leaf {node.get('leaf_switch')}"
        + (f", cordoned by {node.get('cordon_owner')}" if node.get("cordoned") else "")
        + f"; jobs: {', '.join(node.get('jobs', [])) or 'none'}"
    )
    return Reply(
        text=summary + "\n" + "\n".join(rows),
        blocks=[
            bk.header(f"Node {node.get('name')}"),
            bk.section(summary),
            bk.section(bk.code("\n".join(rows))),
        ],
    )


def render_incident(inc: dict[str, Any]) -> Reply:
    rc = inc.get("root_cause") or {}
    plan = inc.get("plan") or {}
    head = f"{SEVERITY_ICON.get(inc.get('severity', ''), '')} {inc.get('title')} — *{inc.get('status')}*"
    facts = [
        (
            "Root cause",
            f"{rc.get('entity_type')}:{rc.get('entity_id')} ({rc.get('confidence')})" if rc else "unknown",
        ),
        ("Plan", f"{plan.get('planner')}: {plan.get('rationale')}" if plan else "none yet"),
        ("Affected", ", ".join(inc.get("affected_nodes", []) + inc.get("affected_jobs", [])) or "-"),
        ("GPU-hours lost", f"{inc.get('gpu_hours_lost', 0):.2f}"),
    ]
    timeline = "\n".join(
        f"{e['time'][11:19]}  {e['what']}: {e['detail']}" for e in inc.get("timeline", [])[-12:]
    )
    text = head + "\n" + "\n".join(f"{k}: {v}" for k, v in facts) + "\n" + timeline
    blocks = [bk.section(head), bk.fields(facts), bk.section(bk.code(timeline or "no timeline"))]
    for approval in inc.get("pending_approvals", []) or []:
        blocks.append(bk.approval_buttons(str(approval.get("id")), str(approval.get("summary", ""))))
    return Reply(text=text, blocks=blocks)
