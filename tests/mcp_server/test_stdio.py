"""`aiops mcp` over stdio, as Claude Desktop, Claude Code or the MCP Inspector start it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.mcp_server.support import ALL_TOOLS, error, held, ok

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


async def test_the_stdio_server_acts_as_the_configured_operator(tmp_path: Path) -> None:
    server = aiops_mcp(tmp_path, mcp_principal="oncall-olga", mcp_role="operator")
    async with held(Client(server)) as client:
        outcome = ok(
            await client.call_tool("isolate_gpu", {"node": "node-013", "gpu": 1, "reason": "ECC storm"})
        )
        assert outcome["changed"] is True
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
