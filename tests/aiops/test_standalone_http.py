"""``aiops mcp --http``: the MCP server alone over stateless streamable HTTP, bearer tokens mapped to
principals (from AIOPS_TOKENS and a tokens file), the caller's identity on every audit record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aiops.build import serve_http as serving
from aiops.settings import Settings
from aiops.standalone import HttpServer, build_standalone_http
from mcp_server.gate.audit import MemoryAudit
from mcp_server.identity import load_tokens, parse_principals
from tests.mcp_server.support import INITIALIZE, MCP_HEADERS, ScriptedPerson, error, held, ok

pytestmark = pytest.mark.slow

VIEWER_TOKEN = "viewer-token-0123456789"
OPERATOR_TOKEN = "operator-token-0123456789"
SRE_TOKEN = "sre-token-from-file-0123456789"
ISOLATE = {"node": "node-013", "gpu": 1, "reason": "ECC storm on GPU 1"}


@asynccontextmanager
async def standalone(tmp_path: Path, **overrides: object) -> AsyncIterator[tuple[HttpServer, str]]:
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({SRE_TOKEN: "sam:admin"}))
    settings = Settings(
        http_port=0,
        tokens={VIEWER_TOKEN: "victor:viewer", OPERATOR_TOKEN: "olga:operator"},
        tokens_file=tokens_file,
        **overrides,  # type: ignore[arg-type]
    )
    built = build_standalone_http(settings, run_the_clock=False)
    async with serving(built.server, "127.0.0.1", 0) as url:
        yield built, url


@asynccontextmanager
async def mcp_as(url: str, token: str, person: ScriptedPerson | None = None) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        held(Client(streamable_http_client(url, http_client=http), elicitation_callback=person)) as client,
    ):
        yield client


async def test_no_token_or_a_wrong_one_gets_401(tmp_path: Path) -> None:
    async with standalone(tmp_path) as (_, url), httpx2.AsyncClient(timeout=30) as http:
        assert (await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)).status_code == 401
        wrong = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.post(
            url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": f"Bearer {SRE_TOKEN}"}
        )
        assert right.status_code == 200


async def test_a_viewer_cannot_mutate_and_the_refusal_names_them_in_the_audit(tmp_path: Path) -> None:
    async with standalone(tmp_path) as (built, url), mcp_as(url, VIEWER_TOKEN, ScriptedPerson()) as client:
        assert ok(await client.call_tool("describe_node", {"node": "node-013"}))["name"] == "node-013"
        message = error(await client.call_tool("isolate_gpu", ISOLATE))
        assert "policy denied" in message and "victor" in message
    audit = built.deps.audit
    assert isinstance(audit, MemoryAudit)
    (record,) = audit.entries
    assert (record.principal, record.role, record.tool, record.decision) == (
        "victor",
        "viewer",
        "isolate_gpu",
        "deny",
    )


async def test_an_operator_confirms_over_stateless_http_and_is_on_the_record(tmp_path: Path) -> None:
    person = ScriptedPerson("accept")
    async with standalone(tmp_path) as (built, url), mcp_as(url, OPERATOR_TOKEN, person) as client:
        outcome = ok(await client.call_tool("isolate_gpu", ISOLATE))
        assert outcome["changed"] is True and "(by olga)" in outcome["detail"]
    assert len(person.questions) == 1
    audit = built.deps.audit
    assert isinstance(audit, MemoryAudit)
    assert [(e.principal, e.role, e.decision, e.ok) for e in audit.entries] == [
        ("olga", "operator", "allow", True)
    ]


async def test_a_token_from_the_file_carries_its_role(tmp_path: Path) -> None:
    async with standalone(tmp_path) as (_, url), mcp_as(url, SRE_TOKEN, ScriptedPerson()) as client:
        assert (
            ok(await client.call_tool("isolate_gpu", ISOLATE | {"dry_run": True}))["policy"]["decision"]
            == "allow"
        )


async def test_read_only_over_http(tmp_path: Path) -> None:
    async with standalone(tmp_path, read_only=True) as (_, url), mcp_as(url, SRE_TOKEN) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "fleet_health" in names and "isolate_gpu" not in names


def test_token_entries_are_checked_without_printing_the_token() -> None:
    principals = parse_principals(
        {"a" * 20: "pat:operator", "b" * 20: "bot:agent", "c" * 20: "ci:viewer:service"}
    )
    assert [(p.id, p.role, p.kind) for p in principals.values()] == [
        ("pat", "operator", "person"),
        ("bot", "agent", "agent"),
        ("ci", "viewer", "service"),
    ]
    with pytest.raises(ValueError, match="'pat'") as caught:
        parse_principals({"secret-token-value-xyz": "pat:superuser"})
    assert "secret-token-value-xyz" not in str(caught.value)
    with pytest.raises(ValueError, match="shorter than 16"):
        parse_principals({"short": "pat:viewer"})


def test_a_bad_tokens_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=str(bad)):
        load_tokens({}, bad)
