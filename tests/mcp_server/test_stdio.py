"""`aiops mcp` over stdio, as Claude Desktop, Claude Code or the MCP Inspector start it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.mcp_server.support import ALL_TOOLS, MUTATING_TOOLS, ScriptedPerson, error, held, ok

pytestmark = pytest.mark.slow


def aiops_mcp(cwd: Path, **settings: str) -> StdioServerParameters:
    """``python -m aiops.cli mcp`` with the whole environment (PATH, HOME, ...) plus ``AIOPS_*``.

    It runs in ``cwd`` so a ``.env`` of the checkout does not change its settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env |= {f"AIOPS_{key.upper()}": value for key, value in settings.items()}
    return StdioServerParameters(command=sys.executable, args=["-m", "aiops.cli", "mcp"], env=env, cwd=cwd)


async def test_the_stdio_server_lists_its_tools_and_describes_a_node(tmp_path: Path) -> None:
    async with held(Client(aiops_mcp(tmp_path))) as client:
        listing = await client.list_tools()
        assert {tool.name for tool in listing.tools} == ALL_TOOLS
        detail = ok(await client.call_tool("describe_node", {"node": "node-003"}))
        assert detail["name"] == "node-003"
        assert [gpu["index"] for gpu in detail["gpus"]] == list(range(8))
        assert detail["jobs"] == ["train-01"]
        assert "node-999" in error(await client.call_tool("describe_node", {"node": "node-999"}))


async def test_the_stdio_server_acts_as_the_configured_operator_once_they_confirm(tmp_path: Path) -> None:
    server = aiops_mcp(tmp_path, mcp_principal="oncall-olga", mcp_role="operator")
    person = ScriptedPerson("accept")
    async with held(Client(server, elicitation_callback=person)) as client:
        outcome = ok(
            await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "ECC storm"})
        )
        assert outcome["changed"] is True
        assert "oncall-olga" in person.questions[0]
        assert "(by oncall-olga)" in outcome["detail"]
        detail = ok(await client.call_tool("describe_node", {"node": "node-013"}))
        assert detail["gpus"][1]["isolated"] is True


async def test_a_viewer_on_stdio_is_denied_a_mutation(tmp_path: Path) -> None:
    server = aiops_mcp(tmp_path, mcp_principal="victor", mcp_role="viewer")
    async with held(Client(server)) as client:
        message = error(
            await client.call_tool("isolate_gpu", {"node": "node-003", "gpu": 2, "reason": "Xid 79"})
        )
        assert "policy denied" in message and "role viewer" in message and "victor" in message
        detail = ok(await client.call_tool("describe_node", {"node": "node-003"}))
        assert detail["gpus"][2]["isolated"] is False


async def test_a_stdio_client_that_cannot_ask_is_refused_a_destructive_action(tmp_path: Path) -> None:
    async with held(Client(aiops_mcp(tmp_path))) as client:
        message = error(
            await client.call_tool("restart_from_checkpoint", {"job": "train-01", "reason": "NCCL hang"})
        )
        assert "cannot ask" in message and "local-operator" in message


async def test_the_read_only_stdio_server_lists_only_read_tools(tmp_path: Path) -> None:
    async with held(Client(aiops_mcp(tmp_path, read_only="true"))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "fleet_health" in names and not names & MUTATING_TOOLS
        assert "isolate_gpu" in error(
            await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "x"})
        )


async def test_resources_prompts_and_telemetry_travel_over_stdio(tmp_path: Path) -> None:
    async with held(Client(aiops_mcp(tmp_path))) as client:
        xid = await client.read_resource("xid://48")
        assert "GPU_ECC_DBE" in str(xid.contents[0])
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "triage_node" in prompts
        health = ok(await client.call_tool("fleet_health", {}))
        assert health["status"] == "healthy" and health["gpus"]["total"] == 128
        # The warm-up sampled the twin as it trained: the series reach back over the last hour.
        metrics = ok(
            await client.call_tool(
                "gpu_metrics", {"node": "node-003", "gpus": [0], "window_minutes": 60, "step_s": 60}
            )
        )
        assert len(metrics["series"][0]["samples"]) > 30
