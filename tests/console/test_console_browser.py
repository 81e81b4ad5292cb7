"""The fleet console in a real browser (Debian's Chromium under Playwright) against `aiops up`'s
platform: a fault turns its GPU red, the incident opens, an operator approves the waiting action
and the run resumes; a viewer cannot approve; a cross-site approve is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import Page

from aiops.platform import Platform
from mcp_server.gate.approvals import ApprovalRequest
from mcp_server.gate.policy import Principal
from tests.agents.safety_support import audit_records
from tests.console.browser import chromium, log_in, need_chromium
from tests.console.support import OPERATOR, VIEWER, console_platform, console_url
from tests.waiting import eventually

pytestmark = pytest.mark.slow

OUT = Path(__file__).resolve().parents[2] / "evals" / "out"
RED = [214, 40, 40]
OLGA = Principal(id="olga", role="operator", kind="person")


async def cell(page: Page, node: str, gpu: int) -> dict[str, object] | None:
    found: dict[str, object] | None = await page.evaluate(
        "([node, gpu]) => window.aiopsConsole && window.aiopsConsole.cell(node, gpu)", [node, gpu]
    )
    return found


async def pixel(page: Page, x: object, y: object) -> list[int]:
    rgba: list[int] = await page.evaluate(
        "([x, y]) => Array.from(document.getElementById('heatmap').getContext('2d').getImageData(x, y, 1, 1).data)",
        [x, y],
    )
    return rgba[:3]


async def post_form(page: Page, path: str, fields: dict[str, str]) -> tuple[int, str]:
    """A POST from the page's own origin with ``fetch`` (what a script on the page could send)."""
    answer: list[object] = await page.evaluate(
        """async ([path, fields]) => {
            const r = await fetch(path, {method: "POST", body: new URLSearchParams(fields), redirect: "manual"});
            return [r.status, await r.text()];
        }""",
        [path, fields],
    )
    return int(str(answer[0])), str(answer[1])


async def test_fault_turns_red_operator_approves_viewer_and_cross_site_cannot(tmp_path: Path) -> None:
    need_chromium()
    async with console_platform(tmp_path) as platform, chromium() as browser:
        base = console_url(platform)
        olga = await log_in(browser, base, OPERATOR)
        await olga.wait_for_function("() => window.aiopsConsole && window.aiopsConsole.cell('node-003', 3)")
        before = await cell(olga, "node-003", 3)

        platform.twin.inject_xid("node-003", 3, 79)
        await olga.wait_for_function(
            "() => window.aiopsConsole.cell('node-003', 3).state === 'f'", timeout=30_000
        )
        after = await cell(olga, "node-003", 3)
        assert after is not None
        red = await pixel(olga, after["x"], after["y"])

        # The agent plans and its action waits for approval (slower on a loaded machine); the
        # incident page is rendered when it opens, so open it once the approval exists.
        async def waiting() -> bool:
            return bool(await platform_approvals(platform))

        await eventually(waiting, within_s=90, what="the incident's action to wait for an approval")
        # The incident appears on the live page (the feed refreshes the lists); open it.
        link = olga.locator("#incidents a").first
        await link.wait_for(timeout=30_000)
        await link.click()
        await olga.wait_for_selector("button.approve", timeout=30_000)
        incident_url = olga.url
        approval = await olga.get_attribute("button.approve", "data-approval")
        assert approval
        await olga.screenshot(path=str(tmp_path / "incident.png"), full_page=True)

        # A viewer sees the incident and the waiting action, but no buttons; a forged POST is refused
        # by the policy gate (the console forwards it as vera's approve_action call).
        vera = await log_in(browser, base, VIEWER)
        await vera.goto(incident_url)
        viewer_buttons = await vera.locator("button.approve").count()
        vera_csrf = await vera.get_attribute("header input[name=csrf]", "value")
        assert vera_csrf
        viewer_status, viewer_body = await post_form(
            vera, f"/console/approvals/{approval}/approve", {"csrf": vera_csrf, "comment": "me too"}
        )

        # Cross-site: the operator's own page without the CSRF token, and a form on another site.
        no_csrf_status, no_csrf_body = await post_form(olga, f"/console/approvals/{approval}/approve", {})
        evil = await olga.context.new_page()
        await evil.route(
            "http://evil.example/**",
            lambda route: route.fulfill(
                content_type="text/html",
                body=(
                    f'<form id=f method=post action="{base}/approvals/{approval}/approve">'
                    '<input name=comment value=pwned></form><script>document.getElementById("f").submit()</script>'
                ),
            ),
        )
        await evil.goto("http://evil.example/")
        await evil.wait_for_url(f"{base}/approvals/**")
        cross_site_text = await evil.inner_text("body")
        still_pending = [a.id for a in await platform_approvals(platform)]

        # The operator approves on the incident page: the run resumes (isolation, then the swap waits).
        await olga.goto(incident_url)
        await olga.fill(f"form[action$='/{approval}/approve'] input[name=comment]", "GPU is gone, go")
        await olga.click(f"button.approve[data-approval='{approval}']")
        await olga.wait_for_url(incident_url)
        flash = await olga.inner_text("p.flash")
        await olga.wait_for_function(
            "() => document.getElementById('timeline').innerText.includes('the run resumes')", timeout=30_000
        )
        await olga.wait_for_function(
            f"() => [...document.querySelectorAll('button.approve')].some(b => b.dataset.approval !== {json.dumps(approval)})",
            timeout=30_000,
        )
        timeline = await olga.inner_text("#timeline")

        await olga.goto(f"{base}/")
        await olga.wait_for_function("() => window.aiopsConsole && window.aiopsConsole.cell('node-003', 3)")
        OUT.mkdir(parents=True, exist_ok=True)
        await olga.screenshot(path=str(OUT / "console.png"), full_page=True)
        audit = await audit_trail(platform)

    assert before is not None and before["state"] == "h"
    assert red == RED
    assert viewer_buttons == 0
    assert viewer_status == 403 and "vera" in viewer_body and "denied" in viewer_body
    assert no_csrf_status == 403 and "CSRF" in no_csrf_body
    assert "cross-site request refused" in cross_site_text
    assert approval in still_pending  # none of the refused attempts decided it
    assert f"approved isolate_gpu on node-003/gpu3 (approval {approval}" in flash
    approved = [line for line in timeline.splitlines() if approval in line and "approved by" in line]
    assert approved and approved[0].endswith(
        f"{approval} approved by olga: GPU is gone, go; the run resumes"
    ), approved
    decided = [(r["principal"], r["tool"], r["decision"]) for r in audit if r["tool"] == "approve_action"]
    assert ("vera", "approve_action", "deny") in decided
    assert ("olga", "approve_action", "allow") in decided


async def platform_approvals(platform: Platform) -> list[ApprovalRequest]:
    async with platform.sessions.session(OLGA) as tools:
        listed = await tools.call("list_approvals", {})
    return [ApprovalRequest.model_validate(a) for a in listed.structured["approvals"]]


async def audit_trail(platform: Platform) -> list[dict[str, object]]:
    return [r.model_dump() for r in await audit_records(platform)]
