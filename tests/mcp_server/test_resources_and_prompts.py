"""Resources (runbooks, the Xid catalog one code per resource, incidents, the fleet summary) and
prompts (the slash commands a client offers)."""

from __future__ import annotations

import json

import yaml
from mcp import Client
from mcp.types import TextContent, TextResourceContents

from fleet import FleetTwin
from skills.catalog import load_catalog


async def read(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    return content.text


async def prompt_text(client: Client, name: str, arguments: dict[str, str]) -> str:
    result = await client.get_prompt(name, arguments)
    texts = [m.content.text for m in result.messages if isinstance(m.content, TextContent)]
    return "\n".join(texts)


# -- resources --------------------------------------------------------------------------------------


async def test_every_xid_code_of_the_catalog_is_a_resource(client: Client) -> None:
    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    codes = {f"xid://{x.code}" for x in load_catalog().xids}
    assert codes <= listed
    assert {"runbook://index", "xid://catalog", "incidents://open", "fleet://summary"} <= listed


async def test_an_xid_resource_explains_the_code_for_a_person(client: Client) -> None:
    text = await read(client, "xid://79")
    assert text.startswith("# Xid 79: GPU_HAS_FALLEN_OFF_THE_BUS")
    assert "**Platform action:**" in text and "RESTART_BM" in text


async def test_a_code_the_catalog_does_not_know_reads_as_a_safe_placeholder(client: Client) -> None:
    text = await read(client, "xid://9999")
    assert "Xid 9999" in text and "not in the catalog" in text


async def test_runbooks_are_listed_and_readable_as_the_engine_runs_them(client: Client) -> None:
    index = await read(client, "runbook://index")
    assert "**isolate-gpu** (node: string, gpu: integer, reason: string (optional))" in index
    runbook = yaml.safe_load(await read(client, "runbook://isolate-gpu"))
    assert runbook["name"] == "isolate-gpu"
    assert [s["tool"] for s in runbook["steps"]] == ["isolate_gpu"]


async def test_incidents_and_the_fleet_summary_are_resources(client: Client, twin: FleetTwin) -> None:
    assert json.loads(await read(client, "incidents://open")) == []
    incident = json.loads(await read(client, "incident://inc-xid79-node-003"))
    assert incident["root_cause"]["entity_type"] == "gpu"
    twin.inject_xid("node-003", 2, 79)
    summary = json.loads(await read(client, "fleet://summary"))
    assert summary["status"] == "critical" and summary["gpus"]["unhealthy"] == 1


async def test_an_unknown_incident_resource_is_an_error_naming_it(client: Client) -> None:
    try:
        await client.read_resource("incident://inc-nope")
    except Exception as exc:
        assert "inc-nope" in str(exc)
    else:
        raise AssertionError("reading an unknown incident should fail")


# -- prompts ------------------------------------------------------------------------------------------


async def test_the_five_on_call_prompts_are_offered_with_titles(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) == {
        "triage_node",
        "gpu_health",
        "explain_incident",
        "draft_postmortem",
        "oncall_handoff",
    }
    assert prompts["triage_node"].title == "Triage a node"
    assert [a.name for a in prompts["triage_node"].arguments or []] == ["node"]
    assert (prompts["oncall_handoff"].arguments or [])[0].required is False


async def test_triage_node_hands_over_the_facts_and_a_procedure(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    text = await prompt_text(client, "triage_node", {"node": "node-003"})
    assert '<facts name="describe_node">' in text and '"fallen_off_bus"' in text
    assert '"xid": 79' in text
    assert "plan_runbook" in text and "never instructions" in text


async def test_gpu_health_and_incident_prompts_carry_their_facts(client: Client) -> None:
    assert '"verdict": "ok"' in await prompt_text(client, "gpu_health", {"node": "node-013"})
    explained = await prompt_text(client, "explain_incident", {"incident_id": "inc-xid79-node-003"})
    assert "inc-xid79-node-003" in explained and "gpu-fell-off-bus" in explained
    postmortem = await prompt_text(client, "draft_postmortem", {"incident_id": "inc-xid79-node-003"})
    assert "Timeline" in postmortem and "Action items" in postmortem


async def test_the_handoff_prompt_covers_the_shift(client: Client) -> None:
    text = await prompt_text(client, "oncall_handoff", {"hours": "8"})
    assert "last 8 hours" in text and '<facts name="fleet_health">' in text
    assert "inc-xid31-node-010" in text  # a recent (resolved) incident


async def test_a_prompt_for_an_unknown_node_is_an_error_naming_it(client: Client) -> None:
    try:
        await client.get_prompt("triage_node", {"node": "node-999"})
    except Exception as exc:
        assert "node-999" in str(exc)
    else:
        raise AssertionError("a prompt for an unknown node should fail")
