"""The MCP tools in process: the listing, the shape of every answer, errors, and a fault story."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]  # mcp's own dependency
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, Tool

from contracts.tools import CheckpointStatus, JobForGpu, NodeDetail, NodePage
from events.incident import Incident
from fleet import FleetTwin
from mcp_server.tools.incidents import IncidentList
from tests.mcp_server.support import ALL_TOOLS, DESTRUCTIVE_TOOLS, READ_TOOLS, Stack, error, ok


async def tools_by_name(client: Client) -> dict[str, Tool]:
    listing = await client.list_tools()
    assert listing.next_cursor is None
    return {tool.name: tool for tool in listing.tools}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured answer is checked against its output schema."""
    answer = ok(await client.call_tool(tool, arguments))
    schema = (await tools_by_name(client))[tool].output_schema
    assert schema is not None
    jsonschema.validate(answer, schema)
    return answer


async def all_pages(client: Client, limit: int, **filters: Any) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await call(client, "list_nodes", limit=limit, cursor=cursor, **filters)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def names(page: dict[str, Any]) -> list[str]:
    return [node["name"] for node in page["nodes"]]


# -- the listing ---------------------------------------------------------------------------------


async def test_the_server_lists_exactly_the_cluster_scheduler_and_incident_tools(client: Client) -> None:
    assert set(await tools_by_name(client)) == ALL_TOOLS


async def test_read_tools_are_hinted_read_only_and_not_destructive(client: Client) -> None:
    tools = await tools_by_name(client)
    for name in READ_TOOLS:
        hints = tools[name].annotations
        assert hints is not None, name
        assert hints.read_only_hint is True, name
        assert hints.destructive_hint is False, name


async def test_destructive_tools_are_hinted_destructive_and_not_read_only(client: Client) -> None:
    tools = await tools_by_name(client)
    for name in DESTRUCTIVE_TOOLS:
        hints = tools[name].annotations
        assert hints is not None, name
        assert hints.read_only_hint is False, name
        assert hints.destructive_hint is True, name
    # Isolating twice changes nothing more; restarting twice restarts twice.
    isolate_hints = tools["isolate_gpu"].annotations
    restart_hints = tools["restart_from_checkpoint"].annotations
    assert isolate_hints is not None and isolate_hints.idempotent_hint is True
    assert restart_hints is not None and restart_hints.idempotent_hint is False


async def test_every_tool_has_a_description_and_an_object_output_schema(client: Client) -> None:
    for name, tool in (await tools_by_name(client)).items():
        assert tool.description and len(tool.description) > 20, name
        assert tool.output_schema is not None, name
        assert tool.output_schema.get("type") == "object", name
        assert tool.output_schema.get("properties"), name


async def test_destructive_tools_offer_dry_run_and_an_idempotency_key(client: Client) -> None:
    tools = await tools_by_name(client)
    for name in DESTRUCTIVE_TOOLS:
        properties = tools[name].input_schema["properties"]
        assert {"dry_run", "idempotency_key", "reason"} <= set(properties), name
        assert "reason" in tools[name].input_schema["required"], name


# -- list_nodes ----------------------------------------------------------------------------------


async def test_list_nodes_without_filters_lists_the_whole_fleet(client: Client, twin: FleetTwin) -> None:
    page = await call(client, "list_nodes")
    NodePage.model_validate(page)
    assert page["total"] == 16
    assert names(page) == list(twin.nodes)
    assert page["next_cursor"] is None
    node = page["nodes"][0]
    assert node["name"] == "node-001"
    assert node["gpus_total"] == node["gpus_healthy"] == 8
    assert node["gpus_isolated"] == 0
    assert node["jobs"] == ["train-01"]
    assert "gpus" not in node  # the summary; describe_node has the GPUs


async def test_list_nodes_filters_by_state_spare(client: Client) -> None:
    page = await call(client, "list_nodes", state="spare")
    assert names(page) == ["node-015", "node-016"]
    assert all(node["spare"] and node["jobs"] == [] for node in page["nodes"])


async def test_list_nodes_filters_by_rack(client: Client) -> None:
    page = await call(client, "list_nodes", rack="rack-02")
    assert names(page) == ["node-005", "node-006", "node-007", "node-008"]
    assert page["total"] == 4


async def test_list_nodes_filters_by_leaf_switch(client: Client) -> None:
    page = await call(client, "list_nodes", leaf_switch="leaf-02")
    assert names(page) == [f"node-{i:03d}" for i in range(9, 17)]
    assert {node["leaf_switch"] for node in page["nodes"]} == {"leaf-02"}


async def test_list_nodes_filters_by_label_key_or_key_and_value(client: Client) -> None:
    spares = await call(client, "list_nodes", label="aiops/pool=spare")
    assert names(spares) == ["node-015", "node-016"]
    everyone = await call(client, "list_nodes", label="aiops/pool")
    assert everyone["total"] == 16
    nobody = await call(client, "list_nodes", label="no-such-label")
    assert nobody == {"nodes": [], "total": 0, "next_cursor": None}


async def test_list_nodes_combines_filters(client: Client) -> None:
    page = await call(client, "list_nodes", leaf_switch="leaf-02", rack="rack-04", state="ready")
    assert names(page) == ["node-013", "node-014", "node-015", "node-016"]


async def test_list_nodes_cordoned_and_ready_states_follow_the_cordon(
    client: Client, twin: FleetTwin
) -> None:
    twin.cordon_node("node-007", owner="olga")
    cordoned = await call(client, "list_nodes", state="cordoned")
    assert names(cordoned) == ["node-007"]
    assert cordoned["nodes"][0]["cordon_owner"] == "olga"
    ready = await call(client, "list_nodes", state="ready")
    assert "node-007" not in names(ready)
    assert ready["total"] == 15
    assert (await call(client, "list_nodes", state="not_ready"))["total"] == 0


async def test_list_nodes_pages_through_every_node_once_with_next_cursor(
    client: Client, twin: FleetTwin
) -> None:
    pages = await all_pages(client, limit=5)
    assert [len(page["nodes"]) for page in pages] == [5, 5, 5, 1]
    assert all(page["total"] == 16 for page in pages)
    assert [name for page in pages for name in names(page)] == list(twin.nodes)


async def test_list_nodes_pages_a_filtered_listing(client: Client) -> None:
    pages = await all_pages(client, limit=3, leaf_switch="leaf-02")
    assert [len(page["nodes"]) for page in pages] == [3, 3, 2]
    assert all(page["total"] == 8 for page in pages)
    assert [name for page in pages for name in names(page)] == [f"node-{i:03d}" for i in range(9, 17)]


# -- describe_node, job_for_gpu, checkpoint_status -----------------------------------------------


async def test_describe_node_shows_every_gpu_of_the_node(client: Client, twin: FleetTwin) -> None:
    detail = await call(client, "describe_node", node="node-003")
    NodeDetail.model_validate(detail)
    assert detail["name"] == "node-003"
    assert (detail["rack"], detail["leaf_switch"]) == ("rack-01", "leaf-01")
    assert detail["state"] == "ready"
    assert detail["cordoned"] is False and detail["spare"] is False
    assert detail["jobs"] == ["train-01"]
    gpus = detail["gpus"]
    assert [gpu["index"] for gpu in gpus] == list(range(8))
    assert gpus[2]["pci_bus_id"] == "0000:3a:00.0"
    assert [gpu["uuid"] for gpu in gpus] == [g.uuid for g in twin.node("node-003").gpus]
    assert all(gpu["health"] == "healthy" and gpu["isolated"] is False for gpu in gpus)
    assert all(gpu["last_xid"] is None for gpu in gpus)


async def test_job_for_a_busy_gpu_names_the_job_with_its_checkpoint(client: Client, twin: FleetTwin) -> None:
    answer = await call(client, "job_for_gpu", node="node-010", gpu=4)
    JobForGpu.model_validate(answer)
    assert (answer["node"], answer["gpu"]) == ("node-010", 4)
    job = answer["job"]
    assert job["name"] == "train-02"
    assert job["state"] == "running"
    assert job["nodes"] == ["node-009", "node-010", "node-011", "node-012"]
    assert job["gpus"] == 32
    assert job["step"] == twin.job("train-02").step > 0
    assert job["last_checkpoint_step"] > 0
    assert job["last_checkpoint_at"] is not None
    assert job["restarts"] == 0


async def test_job_for_an_idle_gpu_is_null(client: Client) -> None:
    for node in ("node-013", "node-016"):  # idle worker, warm spare
        answer = await call(client, "job_for_gpu", node=node, gpu=0)
        assert answer == {"node": node, "gpu": 0, "job": None}


async def test_checkpoint_status_reports_the_last_checkpoint_and_the_work_at_risk(
    client: Client, twin: FleetTwin
) -> None:
    status = await call(client, "checkpoint_status", job="train-01")
    CheckpointStatus.model_validate(status)
    job = twin.job("train-01")
    assert status["job"] == "train-01"
    assert status["state"] == "running"
    assert status["has_checkpoint"] is True
    assert status["last_checkpoint_step"] == job.last_checkpoint_step > 0
    assert status["current_step"] == job.step > status["last_checkpoint_step"]
    assert 0 <= status["checkpoint_age_s"] < status["checkpoint_interval_s"] == 1800.0
    assert status["gpus"] == 64
    assert status["gpu_hours_at_risk"] > 0


# -- mutations: shapes ---------------------------------------------------------------------------


async def test_isolate_gpu_answers_with_the_outcome_and_the_policy(client: Client, twin: FleetTwin) -> None:
    outcome = await call(client, "isolate_gpu", node="node-013", gpu=6, reason="ECC errors climbing")
    assert outcome["action"] == "isolate_gpu"
    assert outcome["target"] == "node-013/gpu6"
    assert outcome["changed"] is True and outcome["dry_run"] is False and outcome["replayed"] is False
    assert outcome["policy"]["decision"] == "allow"
    assert outcome["policy"]["policies"] == ["operational-actions-for-operators-and-agent"]
    assert outcome["data"]["uuid"] == twin.node("node-013").gpus[6].uuid
    assert outcome["data"]["job"] is None
    assert twin.node("node-013").gpus[6].isolated


async def test_isolating_an_isolated_gpu_again_changes_nothing(client: Client) -> None:
    await call(client, "isolate_gpu", node="node-013", gpu=6, reason="ECC errors climbing")
    again = await call(client, "isolate_gpu", node="node-013", gpu=6, reason="ECC errors climbing")
    assert again["changed"] is False
    assert "already isolated" in again["detail"]


async def test_restart_from_checkpoint_rewinds_the_job_to_its_checkpoint(
    client: Client, twin: FleetTwin
) -> None:
    checkpoint = twin.job("train-02").last_checkpoint_step
    outcome = await call(client, "restart_from_checkpoint", job="train-02", reason="NCCL hang")
    assert (outcome["action"], outcome["target"]) == ("restart_from_checkpoint", "train-02")
    assert outcome["changed"] is True
    assert outcome["data"]["state"] == "restarting"
    assert outcome["data"]["resume_step"] == checkpoint
    assert outcome["data"]["lost_steps"] > 0
    assert outcome["data"]["replaced"] is None  # every gang member is fit
    job = twin.job("train-02")
    assert (job.state, job.step, job.restarts) == ("restarting", checkpoint, 1)


# -- incidents -----------------------------------------------------------------------------------


async def test_list_incidents_lists_briefs_newest_first(client: Client) -> None:
    answer = await call(client, "list_incidents")
    IncidentList.model_validate(answer)
    briefs = answer["incidents"]
    assert [b["id"] for b in briefs] == ["inc-xid79-node-003", "inc-xid31-node-010"]
    newest = briefs[0]
    assert newest["root_cause"] == "gpu:node-003/0000:3a:00.0"
    assert newest["status"] == "mitigated"
    assert newest["affected_nodes"] == ["node-003"]
    assert newest["affected_jobs"] == ["train-01"]
    assert newest["events"] == 2
    assert newest["gpu_hours_lost"] == 12.346
    assert briefs[1]["root_cause"] is None


async def test_list_incidents_filters_by_status_and_limits(client: Client) -> None:
    resolved = await call(client, "list_incidents", status=["resolved"])
    assert [b["id"] for b in resolved["incidents"]] == ["inc-xid31-node-010"]
    assert (await call(client, "list_incidents", status=["open", "escalated"]))["incidents"] == []
    assert len((await call(client, "list_incidents", limit=1))["incidents"]) == 1


async def test_get_incident_returns_the_whole_incident(client: Client) -> None:
    answer = await call(client, "get_incident", incident_id="inc-xid79-node-003")
    incident = Incident.model_validate(answer)
    assert incident.root_cause is not None and incident.root_cause.entity_type == "gpu"
    assert incident.plan is not None and incident.plan.actions[0].runbook == "gpu-fell-off-bus"
    assert [a.tool for a in incident.actions] == ["isolate_gpu"]
    assert incident.actions[0].decision == "allow"
    assert [t.what for t in incident.timeline] == ["opened"]
    assert incident.xids == [79]


# -- errors --------------------------------------------------------------------------------------


async def test_an_unknown_node_is_a_tool_error_naming_the_node(client: Client) -> None:
    message = error(await client.call_tool("describe_node", {"node": "node-999"}))
    assert "node-999" in message
    assert "node-001..node-016" in message  # and says which nodes exist


async def test_every_node_taking_tool_names_an_unknown_node(client: Client) -> None:
    for tool, arguments in [
        ("job_for_gpu", {"node": "gpu-box-7", "gpu": 0}),
        ("isolate_gpu", {"node": "gpu-box-7", "gpu": 0, "reason": "Xid 79"}),
    ]:
        assert "gpu-box-7" in error(await client.call_tool(tool, arguments)), tool


async def test_an_unknown_job_is_a_tool_error_naming_the_job(client: Client) -> None:
    for tool, arguments in [
        ("checkpoint_status", {"job": "train-99"}),
        ("restart_from_checkpoint", {"job": "train-99", "reason": "NCCL hang"}),
    ]:
        message = error(await client.call_tool(tool, arguments))
        assert "train-99" in message, tool
        assert "train-01" in message and "train-02" in message, tool


async def test_a_gpu_index_the_node_does_not_have_is_a_tool_error(client: Client, stack: Stack) -> None:
    message = error(await client.call_tool("job_for_gpu", {"node": "node-001", "gpu": 9}))
    assert "GPU 9" in message and "node-001" in message and "0..7" in message
    message = error(await client.call_tool("isolate_gpu", {"node": "node-001", "gpu": 9, "reason": "Xid 79"}))
    assert "no GPU 9" in message and "node-001" in message
    assert not any(g.isolated for g in stack.twin.node("node-001").gpus)


async def test_a_gpu_index_outside_the_schema_range_is_rejected(client: Client) -> None:
    for gpu in (16, -1):
        message = error(await client.call_tool("job_for_gpu", {"node": "node-001", "gpu": gpu}))
        assert "gpu" in message, gpu


async def test_a_missing_required_argument_is_a_tool_error_naming_it(client: Client) -> None:
    message = error(await client.call_tool("describe_node", {}))
    assert "node" in message and "required" in message.lower()
    message = error(await client.call_tool("isolate_gpu", {"node": "node-001", "gpu": 1}))
    assert "reason" in message


async def test_an_argument_of_the_wrong_type_is_a_tool_error(client: Client) -> None:
    message = error(await client.call_tool("job_for_gpu", {"node": "node-001", "gpu": "two"}))
    assert "gpu" in message and "integer" in message
    message = error(await client.call_tool("list_nodes", {"state": "on-fire"}))
    assert "state" in message


async def test_a_bad_cursor_is_a_tool_error(client: Client) -> None:
    message = error(await client.call_tool("list_nodes", {"cursor": "page-two"}))
    assert "page-two" in message and "cursor" in message


async def test_a_negative_cursor_is_a_tool_error(client: Client) -> None:
    assert "'-5'" in error(await client.call_tool("list_nodes", {"cursor": "-5", "limit": 3}))


async def test_a_cursor_past_the_end_is_an_empty_last_page(client: Client) -> None:
    page = await call(client, "list_nodes", cursor="100")
    assert page == {"nodes": [], "total": 16, "next_cursor": None}


async def test_an_unknown_incident_is_a_tool_error_naming_it(client: Client) -> None:
    message = error(await client.call_tool("get_incident", {"incident_id": "inc-nope"}))
    assert "inc-nope" in message and "list_incidents" in message


async def test_an_unknown_tool_is_a_protocol_error_naming_it(client: Client) -> None:
    # The spec's protocol error for an unknown tool (invalid params), not an isError result.
    with pytest.raises(MCPError) as raised:
        await client.call_tool("no_such_tool", {})
    assert raised.value.error.code == INVALID_PARAMS and "no_such_tool" in raised.value.error.message


async def test_the_server_keeps_answering_after_errors(client: Client) -> None:
    error(await client.call_tool("describe_node", {"node": "node-999"}))
    error(await client.call_tool("describe_node", {}))
    error(await client.call_tool("list_nodes", {"cursor": "x"}))
    error(await client.call_tool("get_incident", {"incident_id": "inc-nope"}))
    assert (await call(client, "describe_node", node="node-002"))["name"] == "node-002"
    assert set(await tools_by_name(client)) == ALL_TOOLS


# -- a fault, seen and remediated through the tools ----------------------------------------------


async def test_an_xid_79_shows_as_a_gpu_fallen_off_the_bus(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    detail = await call(client, "describe_node", node="node-003")
    gpu = detail["gpus"][2]
    assert gpu["health"] == "fallen_off_bus"
    assert gpu["last_xid"] == 79
    assert gpu["isolated"] is False
    assert detail["gpus_healthy"] == 7
    assert all(g["health"] == "healthy" for g in detail["gpus"] if g["index"] != 2)
    unhealthy = await call(client, "list_nodes", state="unhealthy")
    assert names(unhealthy) == ["node-003"]
    job = (await call(client, "job_for_gpu", node="node-003", gpu=2))["job"]
    assert job["name"] == "train-01"
    assert job["state"] == "stalled"


async def test_isolate_then_restart_takes_the_gpu_out_and_moves_the_job_to_a_spare(
    client: Client, twin: FleetTwin
) -> None:
    twin.inject_xid("node-003", 2, 79)
    checkpoint = twin.job("train-01").last_checkpoint_step

    isolated = await call(client, "isolate_gpu", node="node-003", gpu=2, reason="Xid 79 fell off the bus")
    assert isolated["changed"] is True
    assert isolated["data"]["health"] == "fallen_off_bus"
    assert isolated["data"]["job"] == "train-01"
    gpu = twin.node("node-003").gpus[2]
    assert gpu.isolated and gpu.isolation_reason is not None and "Xid 79" in gpu.isolation_reason
    detail = await call(client, "describe_node", node="node-003")
    assert detail["gpus"][2]["isolated"] is True
    assert detail["gpus_isolated"] == 1

    restarted = await call(client, "restart_from_checkpoint", job="train-01", reason="Xid 79 on node-003")
    assert restarted["changed"] is True
    assert restarted["data"]["state"] == "restarting"
    assert restarted["data"]["resume_step"] == checkpoint
    assert restarted["data"]["replaced"] == "node-003->node-015"  # no spare on leaf-01: the lowest name
    job = twin.job("train-01")
    assert job.state == "restarting"
    assert job.restarts == 1
    assert "node-003" not in job.nodes and "node-015" in job.nodes
    assert twin.node("node-015").spare is False

    # The tools see the new placement.
    assert (await call(client, "job_for_gpu", node="node-003", gpu=0))["job"] is None
    moved = await call(client, "job_for_gpu", node="node-015", gpu=0)
    assert moved["job"]["name"] == "train-01"
    assert names(await call(client, "list_nodes", state="spare")) == ["node-016"]
    status = await call(client, "checkpoint_status", job="train-01")
    assert status["state"] == "restarting"
    assert status["current_step"] == checkpoint
