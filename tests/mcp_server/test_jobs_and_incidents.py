"""Job tools (list_jobs, describe_job) and incident work (plan_runbook, run_runbook, acknowledge,
resolve) in process, with the audit trail they leave."""

from __future__ import annotations

from mcp import Client

from fleet import FleetTwin
from tests.mcp_server.support import AGENT, VIEWER, MakeStack, Stack, error, held, ok
from tests.mcp_server.test_tools import call

ISOLATE_PARAMS = {"node": "node-013", "gpu": 1}

# -- jobs ----------------------------------------------------------------------------------------------


async def test_list_jobs_lists_every_job_with_its_gang(client: Client) -> None:
    page = await call(client, "list_jobs")
    assert [j["name"] for j in page["jobs"]] == ["train-01", "train-02"]
    assert page["total"] == 2 and page["next_cursor"] is None
    assert page["jobs"][1]["nodes"] == ["node-009", "node-010", "node-011", "node-012"]
    assert page["jobs"][1]["baseline_step_s"] == 1.5


async def test_list_jobs_filters_by_node_and_state_and_pages(client: Client, twin: FleetTwin) -> None:
    assert [j["name"] for j in (await call(client, "list_jobs", node="node-010"))["jobs"]] == ["train-02"]
    assert (await call(client, "list_jobs", node="node-013"))["jobs"] == []
    twin.inject_xid("node-003", 2, 79)
    assert [j["name"] for j in (await call(client, "list_jobs", state="unhealthy"))["jobs"]] == ["train-01"]
    assert [j["name"] for j in (await call(client, "list_jobs", state="running"))["jobs"]] == ["train-02"]
    first = await call(client, "list_jobs", limit=1)
    assert first["next_cursor"] == "1"
    assert [j["name"] for j in (await call(client, "list_jobs", cursor="1"))["jobs"]] == ["train-02"]
    assert "node-999" in error(await client.call_tool("list_jobs", {"node": "node-999"}))


async def test_describe_job_shows_the_gang_health_progress_and_checkpoint(
    client: Client, twin: FleetTwin
) -> None:
    twin.inject_xid("node-003", 2, 79)
    detail = await call(client, "describe_job", job="train-01")
    assert detail["job"]["state"] == "stalled"
    assert [m["node"] for m in detail["gang"]] == [f"node-00{i}" for i in range(1, 9)]
    assert detail["unfit_members"] == ["node-003"]
    assert detail["checkpoint"]["has_checkpoint"] is True
    assert detail["progress"]["baseline_step_s"] == 2.0
    assert "train-99" in error(await client.call_tool("describe_job", {"job": "train-99"}))


# -- plan_runbook, run_runbook ----------------------------------------------------------------------------


async def test_plan_runbook_dry_runs_every_step_and_changes_nothing(client: Client, stack: Stack) -> None:
    plan = await call(client, "plan_runbook", runbook="isolate-gpu", params=ISOLATE_PARAMS)
    assert plan["status"] == "dry_run" and plan["dry_run"] is True
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["inspect-node"]["status"] == "done" and steps["inspect-node"]["mutating"] is False
    assert steps["isolate"]["decision"] == "allow" and steps["isolate"]["arguments"]["dry_run"] is True
    assert not stack.twin.node("node-013").gpus[1].isolated
    assert all(entry.dry_run for entry in stack.audit.entries)


async def test_plan_runbook_shows_a_viewer_what_policy_would_refuse(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        plan = ok(
            await client.call_tool("plan_runbook", {"runbook": "isolate-gpu", "params": ISOLATE_PARAMS})
        )
    assert plan["status"] == "denied"
    isolate = next(s for s in plan["steps"] if s["id"] == "isolate")
    assert isolate["decision"] == "deny" and "role viewer" in isolate["error"]


async def test_plan_runbook_names_an_unknown_runbook_or_parameter(client: Client) -> None:
    assert "no runbook 'fix-it'" in error(
        await client.call_tool("plan_runbook", {"runbook": "fix-it", "params": {}})
    )
    message = error(
        await client.call_tool("plan_runbook", {"runbook": "isolate-gpu", "params": {"node": "node-013"}})
    )
    assert "gpu" in message


async def test_run_runbook_runs_each_step_as_the_caller_and_audits_them(client: Client, stack: Stack) -> None:
    run = await call(
        client,
        "run_runbook",
        runbook="isolate-gpu",
        params=ISOLATE_PARAMS,
        reason="ECC storm",
        idempotency_key="k1",
    )
    assert run["status"] == "succeeded"
    assert run["outcome"]["policy"]["decision"] == "allow" and run["outcome"]["changed"] is True
    assert [s["status"] for s in run["steps"]] == ["done"] * len(run["steps"])
    assert stack.twin.node("node-013").gpus[1].isolated
    audited = [(e.tool, e.principal, e.decision) for e in stack.audit.entries]
    assert ("isolate_gpu", "olga", "allow") in audited and ("run_runbook", "olga", "allow") in audited
    again = await call(
        client,
        "run_runbook",
        runbook="isolate-gpu",
        params=ISOLATE_PARAMS,
        reason="ECC storm",
        idempotency_key="k1",
    )
    assert again["run_id"] == run["run_id"] and again["outcome"]["replayed"] is True
    assert sum(1 for e in stack.audit.entries if e.tool == "isolate_gpu" and not e.dry_run) == 1


async def test_run_runbook_is_refused_to_a_viewer_before_any_step(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        message = error(
            await client.call_tool(
                "run_runbook", {"runbook": "isolate-gpu", "params": ISOLATE_PARAMS, "reason": "ECC storm"}
            )
        )
    assert "policy denied run_runbook" in message
    assert not stack.twin.node("node-013").gpus[1].isolated
    assert [e.tool for e in stack.audit.entries] == ["run_runbook"]


# -- acknowledge, resolve ---------------------------------------------------------------------------------


async def test_acknowledging_an_incident_puts_the_callers_name_on_it_once(
    client: Client, stack: Stack
) -> None:
    first = await call(client, "acknowledge_incident", incident_id="inc-xid79-node-003", note="looking")
    assert first["changed"] is True and first["data"]["acknowledged_by"] == "olga"
    incident = await call(client, "get_incident", incident_id="inc-xid79-node-003")
    assert incident["acknowledged_by"] == "olga"
    assert (
        incident["timeline"][-1]["what"] == "acknowledged" and "looking" in incident["timeline"][-1]["detail"]
    )
    stack.identity.principal = AGENT.model_copy(
        update={"id": "someone-else", "role": "operator", "kind": "person"}
    )
    second = await call(client, "acknowledge_incident", incident_id="inc-xid79-node-003")
    assert second["changed"] is False and "already acknowledged by olga" in second["detail"]
    brief = (await call(client, "list_incidents"))["incidents"][0]
    assert brief["acknowledged_by"] == "olga"


async def test_resolving_an_incident_records_who_and_how(client: Client) -> None:
    outcome = await call(
        client, "resolve_incident", incident_id="inc-xid79-node-003", resolution="GPU replaced under RMA"
    )
    assert outcome["changed"] is True and outcome["data"]["previous_status"] == "mitigated"
    incident = await call(client, "get_incident", incident_id="inc-xid79-node-003")
    assert (incident["status"], incident["resolved_by"], incident["resolution"]) == (
        "resolved",
        "olga",
        "GPU replaced under RMA",
    )
    again = await call(client, "resolve_incident", incident_id="inc-xid79-node-003", resolution="again")
    assert again["changed"] is False


async def test_a_viewer_can_neither_acknowledge_nor_resolve(make_stack: MakeStack) -> None:
    stack = make_stack(VIEWER)
    async with held(Client(stack.server)) as client:
        for tool, arguments in [
            ("acknowledge_incident", {"incident_id": "inc-xid79-node-003"}),
            ("resolve_incident", {"incident_id": "inc-xid79-node-003", "resolution": "fixed it"}),
        ]:
            assert "policy denied" in error(await client.call_tool(tool, arguments)), tool
        incident = ok(await client.call_tool("get_incident", {"incident_id": "inc-xid79-node-003"}))
    assert incident["acknowledged_by"] is None and incident["status"] == "mitigated"


async def test_incident_bookkeeping_names_an_unknown_incident(client: Client) -> None:
    assert "inc-nope" in error(await client.call_tool("acknowledge_incident", {"incident_id": "inc-nope"}))
