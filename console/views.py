"""The console's HTML, rendered on the server from what the MCP tools answer (everything escaped).

Pages carry no inline script or style (the Content-Security-Policy forbids both): behaviour lives
in ``static/console.js``, looks in ``static/console.css``. Forms work without the script.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from console.auth import Session
from mcp_server.tools.fleet_map import LEGEND

STATIC = "/console/static"


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, session: Session | None) -> str:
    who = ""
    if session is not None:
        p = session.principal
        who = (
            f'<span class="who" data-role="{_e(p.role)}">{_e(p.id)} ({_e(p.role)})</span>'
            f'<form method="post" action="/console/logout" class="inline">{csrf_field(session)}'
            '<button type="submit">Log out</button></form>'
        )
    flash = ""
    if session is not None and session.flash:
        flash = "".join(f'<p class="flash">{_e(m)}</p>' for m in session.flash)
        session.flash.clear()
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)} · gpu-aiops</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{STATIC}/console.css">'
        f'<script src="{STATIC}/heatmap.js" defer></script>'
        f'<script src="{STATIC}/console.js" defer></script></head><body>'
        f'<header><a href="/console/" class="brand">gpu-aiops</a>{who}</header>'
        f"<main>{flash}{body}</main></body></html>"
    )


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{_e(session.csrf)}">'


def login_page(csrf: str, error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return page(
        "Log in",
        f"<h1>Log in</h1>{problem}"
        '<form method="post" action="/console/login" class="login">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        '<label>Bearer token <input type="password" name="token" autocomplete="off" required></label>'
        '<button type="submit">Log in</button></form>'
        "<p>The same tokens as the MCP endpoint (AIOPS_TOKENS); viewers see, operators act.</p>",
        None,
    )


def fleet_page(session: Session, fragments: dict[str, str]) -> str:
    legend = "".join(
        f'<li><span class="swatch s-{code}"></span>{_e(text)}</li>' for code, text in LEGEND.items()
    )
    return page(
        "Fleet",
        '<section class="fleet"><h1>Fleet <span id="fleet-counts"></span></h1>'
        '<canvas id="heatmap" width="1200" height="200" aria-label="fleet heatmap"></canvas>'
        '<p id="cell-info" class="muted">Point at a GPU for its state.</p>'
        f'<ul class="legend">{legend}</ul><p id="render-time" class="muted"></p></section>'
        f'<section id="incidents" data-fragment="incidents">{fragments["incidents"]}</section>'
        f'<section id="approvals" data-fragment="approvals">{fragments["approvals"]}</section>'
        f'<section id="breaker" data-fragment="breaker">{fragments["breaker"]}</section>'
        f'<section id="jobs" data-fragment="jobs">{fragments["jobs"]}</section>',
        session,
    )


def incidents_fragment(incidents: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="sev-{_e(i["severity"])}" data-incident="{_e(i["id"])}">'
        f'<td><a href="/console/incidents/{_e(i["id"])}">{_e(i["id"])}</a></td>'
        f"<td>{_e(i['status'])}</td><td>{_e(i['severity'])}</td><td>{_e(i['title'] or i['kind'])}</td>"
        f"<td>{_e(i.get('root_cause') or '—')}</td><td>{i['gpu_hours_lost']:.2f}</td>"
        f"<td>{_e(i['opened_at'])}</td></tr>"
        for i in incidents
    )
    table = (
        "<table><thead><tr><th>Incident</th><th>Status</th><th>Severity</th><th>What</th>"
        f"<th>Root cause</th><th>GPU-h lost</th><th>Opened</th></tr></thead><tbody>{rows}</tbody></table>"
        if incidents
        else '<p class="muted">No incidents.</p>'
    )
    return f"<h2>Incidents (open and recent)</h2>{table}"


def approval_forms(session: Session, approval_id: str, back: str) -> str:
    if not session.can_act:
        return '<span class="muted">viewers cannot decide</span>'
    forms = ""
    for verdict, label in (("approve", "Approve"), ("reject", "Reject")):
        forms += (
            f'<form method="post" action="/console/approvals/{_e(approval_id)}/{verdict}" class="inline">'
            f'{csrf_field(session)}<input type="hidden" name="next" value="{_e(back)}">'
            '<input type="text" name="comment" placeholder="why" maxlength="500">'
            f'<button type="submit" class="{verdict}" data-approval="{_e(approval_id)}">{label}</button></form>'
        )
    return forms


def approvals_fragment(session: Session, approvals: list[dict[str, Any]], back: str = "/console/") -> str:
    if not approvals:
        return '<h2>Approvals</h2><p class="muted">Nothing waits for a person.</p>'
    items = ""
    for a in approvals:
        evidence = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in sorted(a.get("evidence", {}).items()))
        reasons = "".join(f"<li>{_e(r)}</li>" for r in a.get("reasons", []))
        incident = a.get("incident_id")
        link = f' for <a href="/console/incidents/{_e(incident)}">{_e(incident)}</a>' if incident else ""
        items += (
            f'<li class="approval" data-approval="{_e(a["id"])}"><strong>{_e(a["action"])}</strong> on '
            f"{_e(a['target'])}{link}, asked by {_e(a['requested_by'])}; expires {_e(a['expires_at'])}"
            f"<ul class='reasons'>{reasons}</ul><details><summary>evidence</summary><ul>{evidence}</ul>"
            f"<pre>{_e(a.get('arguments'))}</pre></details>{approval_forms(session, a['id'], back)}</li>"
        )
    return f"<h2>Approvals waiting</h2><ul class='approvals'>{items}</ul>"


def breaker_fragment(session: Session, safety: dict[str, Any]) -> str:
    b = safety["breaker"]
    state = "OPEN: isolations stopped" if b["open"] else "closed"
    detail = f"{b['taken_out_pct']}% of nodes taken out in the window (trips above {b['threshold_pct']}%)"
    if b.get("trip_reason"):
        detail += f"; tripped: {b['trip_reason']}"
    reset = ""
    if b["open"] and session.can_act:
        reset = (
            f'<form method="post" action="/console/breaker/reset" class="inline">{csrf_field(session)}'
            '<input type="text" name="comment" placeholder="why it is safe" required maxlength="500">'
            '<button type="submit">Reset breaker</button></form>'
        )
    extra = []
    if safety.get("observe_only"):
        extra.append("observe-only")
    if safety.get("change_freeze"):
        extra.append(f"change freeze ({safety.get('freeze_reason')})")
    flags = f"<p>{_e(', '.join(extra))}</p>" if extra else ""
    return (
        f'<h2>Circuit breaker <span class="breaker-{"open" if b["open"] else "closed"}">{_e(state)}</span></h2>'
        f"<p>{_e(detail)}</p>{flags}{reset}"
    )


def _age(now: datetime, then: str | None) -> str:
    if not then:
        return "none yet"
    seconds = (now - datetime.fromisoformat(then)).total_seconds()
    return f"{seconds / 60:.0f} min"


def jobs_fragment(jobs: list[dict[str, Any]], now: datetime) -> str:
    rows = "".join(
        f"<tr><td>{_e(j['name'])}</td><td>{_e(j['state'])}</td><td>{j['gpus']}</td>"
        f"<td>{(1 / j['step_time_s'] if j['step_time_s'] else 0):.3f}</td><td>{j['step']}</td>"
        f"<td>{_e(_age(now, j.get('last_checkpoint_at')))}</td><td>{j['restarts']}</td>"
        f"<td>{j['gpu_hours_lost']:.2f}</td></tr>"
        for j in jobs
    )
    return (
        "<h2>Jobs</h2><table><thead><tr><th>Job</th><th>State</th><th>GPUs</th><th>Steps/s</th>"
        "<th>Step</th><th>Checkpoint age</th><th>Restarts</th><th>GPU-h lost</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


STAGES = (
    ("outcome", ("resolved", "mitigated", "escalated", "closed", "abandoned")),
    ("policy", ("approv", "denied", "breaker", "policy", "reject")),
    ("action", ("action", "isolat", "swap", "restart", "reset", "cordon", "reboot", "run")),
    ("plan", ("plan",)),
)


def stage_of(what: str) -> str:
    lowered = what.lower()
    for stage, words in STAGES:
        if any(w in lowered for w in words):
            return stage
    return "event"


def incident_page(session: Session, incident: dict[str, Any], approvals: list[dict[str, Any]]) -> str:
    i = incident
    rc = i.get("root_cause")
    root = (
        f"{_e(rc['entity_type'])} {_e(rc['entity_id'])} (confidence {rc['confidence']:.0%})"
        f"<ul>{''.join(f'<li>{_e(x)}</li>' for x in rc.get('evidence', []))}</ul>"
        if rc
        else "not established"
    )
    plan = i.get("plan")
    steps = "".join(
        f"<li>{_e(a['runbook'])} {_e(a.get('params'))}</li>" for a in (plan or {}).get("actions", [])
    )
    back = f"/console/incidents/{i['id']}"
    plan_html = (
        f"<p>{_e(plan['planner'])}: <strong>{_e(plan['disposition'])}</strong> — {_e(plan['rationale'])}</p>"
        f"<ol>{steps}</ol>"
        if plan
        else '<p class="muted">no plan yet</p>'
    )
    actions = "".join(
        f"<tr class='{'ok' if a['ok'] else 'failed'}'><td>{_e(a['time'])}</td><td>{_e(a['tool'])}</td>"
        f"<td>{_e(a.get('decision') or '—')}</td><td>{_e('; '.join(a.get('reasons', [])))}</td>"
        f"<td>{'ok' if a['ok'] else _e(a.get('error') or 'not done')}</td></tr>"
        for a in i.get("actions", [])
    )
    timeline = "".join(
        f'<li class="stage-{stage_of(t["what"])}"><time>{_e(t["time"])}</time> '
        f'<span class="stage">{stage_of(t["what"])}</span> <strong>{_e(t["what"])}</strong> {_e(t.get("detail"))}</li>'
        for t in i.get("timeline", [])
    )
    parked = {ref["id"] for ref in i.get("pending_approvals", [])}
    waiting = [a for a in approvals if a["id"] in parked or a.get("incident_id") == i["id"]]
    body = (
        f'<h1>Incident {_e(i["id"])} <span class="status" id="incident-status">{_e(i["status"])}</span></h1>'
        f"<p>{_e(i.get('title') or i['kind'])} · severity {_e(i['severity'])} · "
        f"GPU-hours lost <strong>{i.get('gpu_hours_lost', 0):.2f}</strong> · opened {_e(i['opened_at'])}</p>"
        f"<p>{_e(i.get('summary'))}</p>"
        f"<h2>Root cause</h2><div>{root}</div><h2>Plan</h2>{plan_html}"
        f"{approvals_fragment(session, waiting, back) if waiting else ''}"
        "<h2>Actions (with the policy's decision)</h2><table><thead><tr><th>Time</th><th>Tool</th>"
        f"<th>Decision</th><th>Reasons</th><th>Result</th></tr></thead><tbody>{actions}</tbody></table>"
        f'<h2>Timeline</h2><ol class="timeline" id="timeline">{timeline}</ol>'
    )
    return page(f"Incident {i['id']}", f'<div data-incident-page="{_e(i["id"])}">{body}</div>', session)


def error_page(status: int, message: str, session: Session | None) -> str:
    return page("Refused", f'<h1>{status}</h1><p class="error" role="alert">{_e(message)}</p>', session)
