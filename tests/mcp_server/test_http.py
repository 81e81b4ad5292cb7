"""The platform's MCP endpoint over streamable HTTP, with bearer tokens mapped to principals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aiops.platform import Platform
from aiops.settings import Settings
from events import subjects
from events.models import AuditRecord
from tests.mcp_server.support import ALL_TOOLS, INITIALIZE, MCP_HEADERS, ScriptedPerson, error, held, ok

pytestmark = pytest.mark.slow

VIEWER_TOKEN = "viewer-token-5f1c"
OPERATOR_TOKEN = "operator-token-9a2e"
TOKENS = {VIEWER_TOKEN: "victor:viewer", OPERATOR_TOKEN: "olga:operator"}
ISOLATE = {"node": "node-003", "gpu": 2, "reason": "Xid 79 fell off the bus"}


@asynccontextmanager
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    """The whole platform (embedded NATS, twin, agent, HTTP MCP) on a free port, its clock still."""
    settings = Settings(http_port=0, tokens=TOKENS, nats_url=None)
    async with Platform(settings, data_dir=tmp_path, run_clock=False) as running:
        yield running


@asynccontextmanager
async def mcp_as(url: str, token: str, person: ScriptedPerson | None = None) -> AsyncIterator[Client]:
    """A client with ``token``; with ``person``, one that can ask its user to confirm (elicitation)."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        held(Client(streamable_http_client(url, http_client=http), elicitation_callback=person)) as client,
    ):
        yield client


async def test_a_request_without_a_valid_bearer_token_is_refused_with_401(tmp_path: Path) -> None:
    async with platform(tmp_path) as running, httpx2.AsyncClient(timeout=30) as http:
        assert running.http_url.startswith("http://127.0.0.1:")
        assert not running.http_url.startswith("http://127.0.0.1:0/")
        anonymous = await http.post(running.http_url, json=INITIALIZE, headers=MCP_HEADERS)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].lower().startswith("bearer")
        forged = await http.post(
            running.http_url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": "Bearer not-a-token"}
        )
        assert forged.status_code == 401
        known = await http.post(
            running.http_url,
            json=INITIALIZE,
            headers=MCP_HEADERS | {"Authorization": f"Bearer {VIEWER_TOKEN}"},
        )
        assert known.status_code == 200


async def test_a_viewer_token_can_read_but_not_isolate(tmp_path: Path) -> None:
    async with platform(tmp_path) as running, mcp_as(running.http_url, VIEWER_TOKEN) as client:
        listing = await client.list_tools()
        assert {tool.name for tool in listing.tools} == ALL_TOOLS
        assert ok(await client.call_tool("describe_node", {"node": "node-003"}))["name"] == "node-003"
        message = error(await client.call_tool("isolate_gpu", ISOLATE))
        assert "policy denied" in message and "role viewer" in message and "victor" in message
        assert not running.twin.node("node-003").gpus[2].isolated
        audited = await running.js.get_last_msg(subjects.STREAM_AUDIT, subjects.audit(running.twin.name))
    assert audited.data is not None
    record = AuditRecord.model_validate_json(audited.data)
    assert (record.principal, record.role, record.tool, record.decision) == (
        "victor",
        "viewer",
        "isolate_gpu",
        "deny",
    )


async def test_an_operator_token_can_isolate_a_gpu_once_the_person_confirms(tmp_path: Path) -> None:
    person = ScriptedPerson("accept")
    async with platform(tmp_path) as running, mcp_as(running.http_url, OPERATOR_TOKEN, person) as client:
        outcome = ok(await client.call_tool("isolate_gpu", ISOLATE))
        assert len(person.questions) == 1 and "olga" in person.questions[0]
        assert outcome["changed"] is True
        assert "(by olga)" in outcome["detail"]
        gpu = running.twin.node("node-003").gpus[2]
        assert gpu.isolated
        audited = await running.js.get_last_msg(subjects.STREAM_AUDIT, subjects.audit(running.twin.name))
    assert audited.data is not None
    record = AuditRecord.model_validate_json(audited.data)
    assert (record.principal, record.role, record.decision, record.ok) == ("olga", "operator", "allow", True)


async def test_two_tokens_on_one_endpoint_act_as_their_own_principals(tmp_path: Path) -> None:
    async with (
        platform(tmp_path) as running,
        mcp_as(running.http_url, VIEWER_TOKEN) as viewer,
        mcp_as(running.http_url, OPERATOR_TOKEN, ScriptedPerson("accept")) as operator,
    ):
        error(await viewer.call_tool("isolate_gpu", ISOLATE))
        ok(await operator.call_tool("isolate_gpu", ISOLATE | {"dry_run": True}))
        error(await viewer.call_tool("restart_from_checkpoint", {"job": "train-01", "reason": "Xid 79"}))
        assert running.twin.job("train-01").restarts == 0


async def test_an_operator_whose_client_cannot_ask_is_refused_a_destructive_action(tmp_path: Path) -> None:
    async with platform(tmp_path) as running, mcp_as(running.http_url, OPERATOR_TOKEN) as client:
        message = error(await client.call_tool("isolate_gpu", ISOLATE))
        assert "cannot ask" in message
        assert not running.twin.node("node-003").gpus[2].isolated
        audited = await running.js.get_last_msg(subjects.STREAM_AUDIT, subjects.audit(running.twin.name))
    assert audited.data is not None
    record = AuditRecord.model_validate_json(audited.data)
    assert (record.principal, record.decision, record.ok) == ("olga", "deny", False)


async def test_a_read_only_endpoint_hides_mutations_even_from_an_operator(tmp_path: Path) -> None:
    settings = Settings(http_port=0, tokens=TOKENS, nats_url=None, read_only=True)
    async with (
        Platform(settings, data_dir=tmp_path, run_clock=False) as running,
        mcp_as(running.http_url, OPERATOR_TOKEN, ScriptedPerson("accept")) as client,
    ):
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "fleet_health" in names and "isolate_gpu" not in names
        assert "isolate_gpu" in error(await client.call_tool("isolate_gpu", ISOLATE))
        assert ok(await client.call_tool("fleet_health", {}))["nodes"]["total"] == 16
        assert not running.twin.node("node-003").gpus[2].isolated
